#include <algorithm>
#include <numeric>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>

#include "manifolds/check.h"
#include "symmetry/group.h"

namespace symopt {

std::string GroupKind::ToString() const {
  std::ostringstream os;
  switch (type) {
    case Type::kCyclic:
      os << "cyclic of order " << n;
      break;
    case Type::kDihedral:
      os << "dihedral D" << n << " (order " << 2 * n << ")";
      break;
    case Type::kAny:
      if (n > 0) {
        os << "a group of order " << n;
      } else {
        os << "a finite group";
      }
      break;
  }
  return os.str();
}

GeneratorSet CyclicShiftGroup(const Shape& shape, int axis) {
  Transform t = Transform::Shift(shape, axis, 1, /*wrap=*/true);
  return {{std::move(t)}, GroupKind::Cyclic(shape.dim(axis))};
}

GeneratorSet FlipGroup(const Shape& shape, const std::vector<int>& axes) {
  SYMOPT_CHECK(!axes.empty(), "flip group: no axes given");
  // A shape has fewer than 2^31 entries, so at most 30 of its axes have
  // length >= 2 (a flip of a length-1 axis is the identity). This also keeps
  // the order 2^k below computable.
  SYMOPT_CHECK(axes.size() <= 30,
               "flip group: " << axes.size()
                              << " axes given; at most 30 can be flipped "
                                 "non-trivially");
  GeneratorSet set;
  for (int a : axes) set.generators.push_back(Transform::Flip(shape, a));
  std::vector<int> sorted = axes;
  std::sort(sorted.begin(), sorted.end());
  SYMOPT_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(),
               "flip group: an axis is named twice");
  // Flips of distinct axes commute: (Z_2)^k. One flip is C_2, two are the
  // Klein group D_2; more are reported by order only.
  if (axes.size() == 1) {
    set.kind = GroupKind::Cyclic(2);
  } else if (axes.size() == 2) {
    set.kind = GroupKind::Dihedral(2);
  } else {
    set.kind = GroupKind::Any(std::int64_t{1} << axes.size());
  }
  return set;
}

GeneratorSet C4Group(const Shape& shape, int axis_a, int axis_b) {
  return {{Transform::Rotate90(shape, axis_a, axis_b, 1)},
          GroupKind::Cyclic(4)};
}

GeneratorSet D4Group(const Shape& shape, int axis_a, int axis_b) {
  return {{Transform::Rotate90(shape, axis_a, axis_b, 1),
           Transform::Flip(shape, axis_b)},
          GroupKind::Dihedral(4)};
}

GeneratorSet P4FilterGroup(const Shape& shape,
                           int rotation_axis,
                           int axis_a,
                           int axis_b) {
  return {{Transform::P4Filter(shape, rotation_axis, axis_a, axis_b)},
          GroupKind::Cyclic(4)};
}

std::vector<LayerGenerator> InvarianceAction(const Shape& out_shape,
                                             const GeneratorSet& in) {
  std::vector<LayerGenerator> gens;
  const Transform id = Transform::Identity(out_shape);
  for (const Transform& t : in.generators) gens.push_back({id, t});
  return gens;
}

std::vector<LayerGenerator> EquivarianceAction(const GeneratorSet& set) {
  std::vector<LayerGenerator> gens;
  for (const Transform& t : set.generators) gens.push_back({t, t});
  return gens;
}

std::vector<LayerGenerator> RepresentationAction(const GeneratorSet& out,
                                                 const GeneratorSet& in) {
  SYMOPT_CHECK(
      out.generators.size() == in.generators.size(),
      "representation: " << out.generators.size() << " output generators but "
                         << in.generators.size() << " input generators");
  std::vector<LayerGenerator> gens;
  for (std::size_t k = 0; k < in.generators.size(); ++k) {
    gens.push_back({out.generators[k], in.generators[k]});
  }
  return gens;
}

namespace {

struct PermHash {
  std::size_t operator()(const std::vector<std::int32_t>& p) const {
    std::size_t h = 1469598103934665603ull;
    for (std::int32_t v : p)
      h = (h ^ static_cast<std::uint32_t>(v)) * 1099511628211ull;
    return h;
  }
};

std::int64_t CycleLcm(const std::int32_t* perm, std::int64_t n) {
  std::vector<bool> seen(n, false);
  std::int64_t l = 1;
  for (std::int64_t s = 0; s < n; ++s) {
    if (seen[s]) continue;
    std::int64_t len = 0;
    for (std::int64_t k = s; !seen[k]; k = perm[k]) {
      seen[k] = true;
      ++len;
    }
    l = std::lcm(l, len);
  }
  return l;
}

}  // namespace

FiniteGroup FiniteGroup::Generate(std::vector<LayerGenerator> generators,
                                  GroupKind declared,
                                  std::int64_t max_order) {
  SYMOPT_CHECK(!generators.empty(), "group: no generators");
  // The order 2n of a dihedral group overflows for n >= 2^62; no group that
  // fits in memory comes near 2^31 elements.
  SYMOPT_CHECK(
      declared.n >= 0 && declared.n <= (std::int64_t{1} << 31),
      "group: the declared n = " << declared.n << " is outside [0, 2^31]");
  FiniteGroup g;
  g.out_shape_ = generators[0].out.shape();
  g.in_shape_ = generators[0].in.shape();
  const std::int64_t n_out = g.out_shape_.size();
  const std::int64_t n_in = g.in_shape_.size();
  g.width_ = n_out + n_in;
  std::vector<std::vector<std::int32_t>> gens;
  for (std::size_t k = 0; k < generators.size(); ++k) {
    const LayerGenerator& lg = generators[k];
    SYMOPT_CHECK(lg.out.shape() == g.out_shape_ && lg.in.shape() == g.in_shape_,
                 "group: generator "
                     << k << " acts on " << lg.out.shape().ToString() << " <- "
                     << lg.in.shape().ToString() << ", generator 0 on "
                     << g.out_shape_.ToString() << " <- "
                     << g.in_shape_.ToString());
    for (const Transform* t : {&lg.out, &lg.in}) {
      SYMOPT_CHECK(t->IsPermutation(),
                   "group: generator "
                       << k << " ('" << t->name()
                       << "') is not a permutation (a shift without "
                          "wrap or a non-index map is not invertible "
                          "by an index map); use it as a plain "
                          "constraint instead of a group generator");
    }
    std::vector<std::int32_t> p(g.width_);
    std::copy(lg.out.gather().begin(), lg.out.gather().end(), p.begin());
    for (std::int64_t i = 0; i < n_in; ++i) {
      p[n_out + i] = lg.in.gather()[i] + static_cast<std::int32_t>(n_out);
    }
    gens.push_back(std::move(p));
  }
  // Breadth-first closure: every element times every generator.
  std::vector<std::int32_t> id(g.width_);
  std::iota(id.begin(), id.end(), 0);
  std::unordered_map<std::vector<std::int32_t>, std::int64_t, PermHash> index;
  std::vector<std::vector<std::int32_t>> elements{id};
  index.emplace(id, 0);
  for (std::size_t e = 0; e < elements.size(); ++e) {
    for (const auto& gen : gens) {
      // (P_gen P_e x)_k = (P_e x)_{gen[k]} = x_{e[gen[k]]}.
      std::vector<std::int32_t> c(g.width_);
      for (std::int64_t k = 0; k < g.width_; ++k) c[k] = elements[e][gen[k]];
      if (index.count(c)) continue;
      SYMOPT_CHECK(static_cast<std::int64_t>(elements.size()) < max_order,
                   "group: the generators do not close within " << max_order
                                                                << " elements");
      index.emplace(c, static_cast<std::int64_t>(elements.size()));
      elements.push_back(std::move(c));
    }
  }
  g.order_ = static_cast<std::int64_t>(elements.size());
  g.elements_.reserve(g.order_ * g.width_);
  for (const auto& e : elements)
    g.elements_.insert(g.elements_.end(), e.begin(), e.end());
  g.generators_ = std::move(generators);

  // Check the declared kind.
  const std::int64_t want = declared.Order();
  SYMOPT_CHECK(want == 0 || want == g.order_,
               "group: declared " << declared.ToString()
                                  << ", but the generators "
                                  << "generate a group of order " << g.order_);
  if (declared.type == GroupKind::Type::kCyclic) {
    bool found = false;
    for (std::int64_t e = 0; e < g.order_ && !found; ++e) {
      found = g.ElementOrder(e) == declared.n;
    }
    SYMOPT_CHECK(found,
                 "group: declared " << declared.ToString()
                                    << ", but no element has order "
                                    << declared.n);
  } else if (declared.type == GroupKind::Type::kDihedral) {
    bool found = false;
    for (std::int64_t r = 0; r < g.order_ && !found; ++r) {
      if (g.ElementOrder(r) != declared.n) continue;
      // Mark the powers of r, then every other element must be an involution.
      std::vector<bool> in_r(g.order_, false);
      std::vector<std::int32_t> p = id;
      for (std::int64_t t = 0; t < declared.n; ++t) {
        in_r[index.at(p)] = true;
        std::vector<std::int32_t> q(g.width_);
        for (std::int64_t k = 0; k < g.width_; ++k) q[k] = p[elements[r][k]];
        p = std::move(q);
      }
      bool ok = true;
      for (std::int64_t e = 0; e < g.order_ && ok; ++e) {
        if (!in_r[e] && g.ElementOrder(e) != 2) ok = false;
      }
      found = ok;
    }
    SYMOPT_CHECK(found,
                 "group: declared " << declared.ToString()
                                    << ", but the group of order " << g.order_
                                    << " generated is not dihedral");
  }
  g.kind_ = declared.type == GroupKind::Type::kAny ? GroupKind::Any(g.order_)
                                                   : declared;
  return g;
}

const std::int32_t* FiniteGroup::OutPermutation(std::int64_t e) const {
  SYMOPT_CHECK(e >= 0 && e < order_, "group element " << e << " out of range");
  return elements_.data() + e * width_;
}

const std::int32_t* FiniteGroup::InPermutation(std::int64_t e) const {
  return OutPermutation(e) + out_shape_.size();
}

std::int64_t FiniteGroup::ElementOrder(std::int64_t e) const {
  // The in-part indices are offset by n_out; the concatenation is still a
  // permutation of width_ points.
  return CycleLcm(OutPermutation(e), width_);
}

bool FiniteGroup::IsAbelian() const {
  auto commute = [](const Transform& p, const Transform& q) {
    const auto& gp = p.gather();
    const auto& gq = q.gather();
    for (std::size_t k = 0; k < gp.size(); ++k) {
      if (gq[gp[k]] != gp[gq[k]]) return false;
    }
    return true;
  };
  for (std::size_t a = 0; a < generators_.size(); ++a) {
    for (std::size_t b = a + 1; b < generators_.size(); ++b) {
      if (!commute(generators_[a].out, generators_[b].out) ||
          !commute(generators_[a].in, generators_[b].in)) {
        return false;
      }
    }
  }
  return true;
}

void FiniteGroup::Twirl(const double* w, double* out) const {
  const std::int64_t rows = out_shape_.size();
  const std::int64_t cols = in_shape_.size();
  std::fill(out, out + rows * cols, 0.0);
  for (std::int64_t e = 0; e < order_; ++e) {
    const std::int32_t* sigma = OutPermutation(e);
    const std::int32_t* tau = InPermutation(e);
    for (std::int64_t j = 0; j < rows; ++j) {
      const double* src_row = w + static_cast<std::int64_t>(sigma[j]) * cols;
      double* dst = out + j * cols;
      for (std::int64_t i = 0; i < cols; ++i) dst[i] += src_row[tau[i] - rows];
    }
  }
  const double inv = 1.0 / static_cast<double>(order_);
  for (std::int64_t k = 0; k < rows * cols; ++k) out[k] *= inv;
}

}  // namespace symopt
