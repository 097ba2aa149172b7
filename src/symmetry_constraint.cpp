#include <Eigen/QR>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <utility>

#include "manifolds/check.h"
#include "symmetry/constraint.h"

namespace symopt {

// ---- Support
// ---------------------------------------------------------------------

Support::Support(const Shape& out_shape, const Shape& in_shape)
    : out_shape_(out_shape), in_shape_(in_shape) {}

Support Support::FromMask(const Shape& out_shape,
                          const Shape& in_shape,
                          std::vector<std::uint8_t> mask) {
  const std::int64_t n = out_shape.size() * in_shape.size();
  SYMOPT_CHECK(static_cast<std::int64_t>(mask.size()) == n,
               "support mask has " << mask.size() << " entries, the layer "
                                   << out_shape.ToString() << " <- "
                                   << in_shape.ToString() << " has " << n);
  Support s(out_shape, in_shape);
  s.full_ = std::all_of(
      mask.begin(), mask.end(), [](std::uint8_t v) { return v != 0; });
  s.row_periodic_ = s.full_;
  if (!s.full_) s.mask_ = std::move(mask);
  return s;
}

Support Support::FromInputMask(const Shape& out_shape,
                               const Shape& in_shape,
                               const std::vector<std::uint8_t>& in_mask) {
  SYMOPT_CHECK(static_cast<std::int64_t>(in_mask.size()) == in_shape.size(),
               "input support mask has "
                   << in_mask.size() << " entries, the input "
                   << in_shape.ToString() << " has " << in_shape.size());
  Support s(out_shape, in_shape);
  s.full_ = std::all_of(
      in_mask.begin(), in_mask.end(), [](std::uint8_t v) { return v != 0; });
  if (!s.full_) s.mask_ = in_mask;
  return s;
}

Support Support::Local(const Shape& out_shape,
                       const Shape& in_shape,
                       const std::vector<std::pair<int, int>>& axis_pairs,
                       const std::vector<std::vector<std::int64_t>>& offsets,
                       bool wrap) {
  SYMOPT_CHECK(!axis_pairs.empty(), "local support: no axis pairs given");
  for (const auto& [oa, ia] : axis_pairs) {
    SYMOPT_CHECK(oa >= 0 && oa < out_shape.rank(),
                 "local support: output axis " << oa << " out of range for "
                                               << out_shape.ToString());
    SYMOPT_CHECK(ia >= 0 && ia < in_shape.rank(),
                 "local support: input axis " << ia << " out of range for "
                                              << in_shape.ToString());
    SYMOPT_CHECK(out_shape.dim(oa) == in_shape.dim(ia),
                 "local support: output axis "
                     << oa << " (" << out_shape.dim(oa) << ") and input axis "
                     << ia << " (" << in_shape.dim(ia) << ") differ in length");
  }
  for (std::size_t t = 0; t < offsets.size(); ++t) {
    SYMOPT_CHECK(offsets[t].size() == axis_pairs.size(),
                 "local support: offset " << t << " has " << offsets[t].size()
                                          << " components, expected "
                                          << axis_pairs.size());
  }
  const std::int64_t rows = out_shape.size(), cols = in_shape.size();
  std::vector<std::uint8_t> mask(rows * cols, 0);
  std::vector<std::int64_t> d(axis_pairs.size());
  for (std::int64_t j = 0; j < rows; ++j) {
    const std::vector<std::int64_t> jo = out_shape.Unflatten(j);
    for (std::int64_t i = 0; i < cols; ++i) {
      const std::vector<std::int64_t> ii = in_shape.Unflatten(i);
      for (std::size_t t = 0; t < axis_pairs.size(); ++t) {
        const std::int64_t m = in_shape.dim(axis_pairs[t].second);
        d[t] = ii[axis_pairs[t].second] - jo[axis_pairs[t].first];
        if (wrap) d[t] = ((d[t] % m) + m) % m;
      }
      for (const auto& off : offsets) {
        bool match = true;
        for (std::size_t t = 0; t < d.size() && match; ++t) {
          std::int64_t o = off[t];
          if (wrap) {
            const std::int64_t m = in_shape.dim(axis_pairs[t].second);
            o = ((o % m) + m) % m;
          }
          match = o == d[t];
        }
        if (match) {
          mask[j * cols + i] = 1;
          break;
        }
      }
    }
  }
  return FromMask(out_shape, in_shape, std::move(mask));
}

bool Support::Admissible(std::int64_t entry) const {
  if (full_) return true;
  if (row_periodic_) return mask_[entry % in_shape_.size()] != 0;
  return mask_[entry] != 0;
}

std::int64_t Support::NumAdmissible() const {
  const std::int64_t n = out_shape_.size() * in_shape_.size();
  if (full_) return n;
  const std::int64_t ones = std::count_if(
      mask_.begin(), mask_.end(), [](std::uint8_t v) { return v != 0; });
  return row_periodic_ ? ones * out_shape_.size() : ones;
}

void Support::Project(const double* w, double* out) const {
  const std::int64_t n = out_shape_.size() * in_shape_.size();
  for (std::int64_t k = 0; k < n; ++k) out[k] = Admissible(k) ? w[k] : 0.0;
}

std::vector<std::vector<std::int64_t>> CrossStencil3x3() {
  return {{-1, 0}, {0, -1}, {0, 0}, {0, 1}, {1, 0}};
}

std::vector<std::vector<std::int64_t>> SkewStencil3x3() {
  return {{-1, -1}, {-1, 0}, {0, 0}, {1, 0}, {1, 1}};
}

std::vector<std::uint8_t> StencilMask(
    std::int64_t k, const std::vector<std::vector<std::int64_t>>& offsets) {
  SYMOPT_CHECK(k >= 1 && k % 2 == 1,
               "stencil mask: filter side " << k << " is not odd");
  std::vector<std::uint8_t> mask(k * k, 0);
  const std::int64_t c = k / 2;
  for (std::size_t t = 0; t < offsets.size(); ++t) {
    SYMOPT_CHECK(offsets[t].size() == 2,
                 "stencil mask: offset " << t << " is not a pair");
    const std::int64_t r = c + offsets[t][0], q = c + offsets[t][1];
    SYMOPT_CHECK(r >= 0 && r < k && q >= 0 && q < k,
                 "stencil mask: offset "
                     << t << " (" << offsets[t][0] << ", " << offsets[t][1]
                     << ") falls outside a " << k << " x " << k << " filter");
    mask[r * k + q] = 1;
  }
  return mask;
}

// ---- ConstraintProblem
// -------------------------------------------------------------

ConstraintProblem::ConstraintProblem(Shape out_shape, Shape in_shape)
    : out_shape_(std::move(out_shape)),
      in_shape_(std::move(in_shape)),
      support_(out_shape_, in_shape_) {
  SYMOPT_CHECK(out_shape_.size() * in_shape_.size() <
                   std::numeric_limits<std::int32_t>::max(),
               "layer " << out_shape_.ToString() << " <- "
                        << in_shape_.ToString()
                        << " has 2^31 - 1 or more weights");
}

void ConstraintProblem::AddInvariance(const Transform& t) {
  SYMOPT_CHECK(t.shape() == in_shape_,
               "invariance: transform '"
                   << t.name() << "' acts on " << t.shape().ToString()
                   << ", the layer input is " << in_shape_.ToString());
  constraints_.push_back({Transform::Identity(out_shape_), t, "invariance"});
}

void ConstraintProblem::AddEquivariance(const Transform& t) {
  SYMOPT_CHECK(
      out_shape_ == in_shape_,
      "equivariance T W = W T needs equal input and output shapes, got "
          << out_shape_.ToString() << " <- " << in_shape_.ToString());
  SYMOPT_CHECK(t.shape() == in_shape_,
               "equivariance: transform '"
                   << t.name() << "' acts on " << t.shape().ToString()
                   << ", the layer is " << in_shape_.ToString());
  constraints_.push_back({t, t, "equivariance"});
}

void ConstraintProblem::AddRepresentation(const Transform& rho_out,
                                          const Transform& rho_in) {
  SYMOPT_CHECK(rho_out.shape() == out_shape_,
               "representation: output transform '"
                   << rho_out.name() << "' acts on "
                   << rho_out.shape().ToString() << ", the layer output is "
                   << out_shape_.ToString());
  SYMOPT_CHECK(rho_in.shape() == in_shape_,
               "representation: input transform '"
                   << rho_in.name() << "' acts on " << rho_in.shape().ToString()
                   << ", the layer input is " << in_shape_.ToString());
  constraints_.push_back({rho_out, rho_in, "representation"});
}

void ConstraintProblem::AddGroup(const FiniteGroup& group) {
  SYMOPT_CHECK(group.out_shape() == out_shape_ && group.in_shape() == in_shape_,
               "group acts on " << group.out_shape().ToString() << " <- "
                                << group.in_shape().ToString()
                                << ", the layer is " << out_shape_.ToString()
                                << " <- " << in_shape_.ToString());
  for (const LayerGenerator& g : group.generators()) {
    constraints_.push_back(
        {g.out, g.in, g.out.IsIdentity() ? "invariance" : "representation"});
  }
}

void ConstraintProblem::SetSupport(Support support) {
  SYMOPT_CHECK(
      support.out_shape() == out_shape_ && support.in_shape() == in_shape_,
      "support is for " << support.out_shape().ToString() << " <- "
                        << support.in_shape().ToString() << ", the layer is "
                        << out_shape_.ToString() << " <- "
                        << in_shape_.ToString());
  support_ = std::move(support);
}

void ConstraintProblem::ClearSupport() {
  support_ = Support(out_shape_, in_shape_);
}

// ---- Solver
// ----------------------------------------------------------------------------

const char* SolveMethodName(SolveMethod method) {
  switch (method) {
    case SolveMethod::kUnionFind:
      return "union-find";
    case SolveMethod::kUnionFindFactored:
      return "union-find (per input, repeated per row)";
    case SolveMethod::kNullspace:
      return "nullspace";
  }
  return "?";
}

namespace {

bool IsTieConstraint(const LayerConstraint& c) {
  return (c.out.IsIdentity() || c.out.HasGather()) && c.in.HasScatter();
}

// Union-find over n + 1 nodes (node n = "zero"), stored in one int32 array
// that becomes the class ids. Roots are the smallest member of their set
// (link the larger root under the smaller), so parent[x] <= x always.
class UnionFind {
 public:
  explicit UnionFind(std::vector<std::int32_t>* parent, std::int64_t n)
      : p_(parent), n_(n) {
    p_->resize(n + 1);
    std::iota(p_->begin(), p_->end(), 0);
    data_ = p_->data();
  }
  std::int32_t zero() const { return static_cast<std::int32_t>(n_); }

  std::int32_t Find(std::int32_t x) {
    while (data_[x] != x) {  // path halving
      data_[x] = data_[data_[x]];
      x = data_[x];
    }
    return x;
  }
  void Union(std::int32_t a, std::int32_t b) {
    a = Find(a);
    b = Find(b);
    if (a == b) return;
    if (a < b) {
      data_[b] = a;
    } else {
      data_[a] = b;
    }
  }

  // Turns the parent array into class ids in [0, K) by first occurrence,
  // kZero for the set of the zero node; drops the zero node. Returns K.
  std::int32_t Label() {
    // parent[x] <= x, so one forward pass leaves every entry at its root.
    for (std::int64_t x = 0; x <= n_; ++x) data_[x] = data_[data_[x]];
    const std::int32_t zero_root = data_[n_];
    std::int32_t next = 0;
    for (std::int64_t x = 0; x < n_; ++x) {
      if (data_[x] == x) {
        data_[x] = x == zero_root ? TiePattern::kZero : next++;
      } else {
        data_[x] = data_[data_[x]];  // the root (< x) already holds its label
      }
    }
    p_->pop_back();
    return next;
  }

 private:
  std::vector<std::int32_t>* p_;
  std::int32_t* data_ = nullptr;
  std::int64_t n_;
};

// Ties from every tie-type constraint and the support, over all entries.
std::int32_t SolveTies(const ConstraintProblem& problem,
                       std::vector<std::int32_t>* class_of) {
  const std::int64_t rows = problem.rows(), cols = problem.cols();
  UnionFind uf(class_of, rows * cols);
  const std::int32_t z = uf.zero();
  for (const LayerConstraint& c : problem.constraints()) {
    if (!IsTieConstraint(c)) continue;
    const bool out_id = c.out.IsIdentity();
    const std::int32_t* g = out_id ? nullptr : c.out.gather().data();
    const std::int32_t* s = c.in.scatter().data();
    // Entry (j, i) of A W = W B: W_{g(j), i} = W_{j, s(i)}.
    for (std::int64_t j = 0; j < rows; ++j) {
      const std::int64_t gj = out_id ? j : g[j];
      const std::int64_t left_row = gj * cols;
      const std::int64_t right_row = j * cols;
      for (std::int64_t i = 0; i < cols; ++i) {
        const std::int32_t left =
            gj < 0 ? z : static_cast<std::int32_t>(left_row + i);
        const std::int32_t right =
            s[i] < 0 ? z : static_cast<std::int32_t>(right_row + s[i]);
        if (left != right) uf.Union(left, right);
      }
    }
  }
  const Support& support = problem.support();
  if (!support.IsFull()) {
    for (std::int64_t k = 0; k < rows * cols; ++k) {
      if (!support.Admissible(k)) uf.Union(static_cast<std::int32_t>(k), z);
    }
  }
  return uf.Label();
}

void FinishTies(Solution* sol) {
  sol->is_tie = true;
  sol->ties.rows = sol->rows;
  sol->ties.cols = sol->cols;
  sol->dim = sol->ties.num_classes;
  sol->class_size.assign(sol->ties.num_classes, 0);
  sol->num_zero = 0;
  for (std::int32_t c : sol->ties.class_of) {
    if (c == TiePattern::kZero) {
      ++sol->num_zero;
    } else {
      ++sol->class_size[c];
    }
  }
  sol->basis.resize(0, 0);
}

// Nullspace of the general constraints on the quotient left by the ties.
void SolveNullspace(const ConstraintProblem& problem,
                    const SolveOptions& options,
                    Solution* sol) {
  const std::int64_t rows = problem.rows(), cols = problem.cols(),
                     n = rows * cols;
  const std::int64_t k_classes = sol->ties.num_classes;
  const std::vector<std::int32_t>& cls = sol->ties.class_of;
  std::vector<const LayerConstraint*> general;
  for (const LayerConstraint& c : problem.constraints()) {
    if (!IsTieConstraint(c)) general.push_back(&c);
  }
  SYMOPT_CHECK(k_classes <= options.max_dense_unknowns,
               "the constraints need the dense nullspace path on "
                   << k_classes
                   << " unknowns (after ties), above max_dense_unknowns = "
                   << options.max_dense_unknowns);
  const std::int64_t m = static_cast<std::int64_t>(general.size()) * n;
  SYMOPT_CHECK(
      m * std::max<std::int64_t>(k_classes, 1) <= options.max_dense_entries,
      "the stacked constraint matrix would be "
          << m << " x " << k_classes
          << ", above max_dense_entries = " << options.max_dense_entries);
  std::vector<double> inv_sqrt(k_classes);
  for (std::int64_t c = 0; c < k_classes; ++c) {
    inv_sqrt[c] = 1.0 / std::sqrt(static_cast<double>(sol->class_size[c]));
  }
  // C P~ with P~ the unit-norm class indicators; row r = k * n + j * cols + i
  // holds (A_k W - W B_k)_{j,i}.
  Eigen::MatrixXd c_mat = Eigen::MatrixXd::Zero(m, k_classes);
  for (std::size_t k = 0; k < general.size(); ++k) {
    const SparseMatrixD& a = general[k]->out.matrix();
    const SparseMatrixD bt =
        general[k]->in.matrix().transpose();  // row i of B^T = column i of B
    for (std::int64_t j = 0; j < rows; ++j) {
      for (std::int64_t i = 0; i < cols; ++i) {
        const std::int64_t r = static_cast<std::int64_t>(k) * n + j * cols + i;
        for (SparseMatrixD::InnerIterator it(a, static_cast<int>(j)); it;
             ++it) {
          const std::int32_t c = cls[it.col() * cols + i];
          if (c >= 0) c_mat(r, c) += it.value() * inv_sqrt[c];
        }
        for (SparseMatrixD::InnerIterator it(bt, static_cast<int>(i)); it;
             ++it) {
          const std::int32_t c = cls[j * cols + it.col()];
          if (c >= 0) c_mat(r, c) -= it.value() * inv_sqrt[c];
        }
      }
    }
  }
  Eigen::MatrixXd q;  // nullspace of C P~, orthonormal columns
  if (k_classes > 0) {
    Eigen::MatrixXd reduced;
    if (m >= k_classes) {
      // Householder QR first: the SVD then runs on a k x k triangle.
      Eigen::HouseholderQR<Eigen::MatrixXd> qr(c_mat);
      reduced = qr.matrixQR().topRows(k_classes).triangularView<Eigen::Upper>();
    } else {
      reduced = c_mat;
    }
    Eigen::BDCSVD<Eigen::MatrixXd> svd(reduced, Eigen::ComputeFullV);
    const Eigen::VectorXd& s = svd.singularValues();
    const double sigma_max = s.size() > 0 ? s(0) : 0.0;
    const double threshold = options.rank_tolerance * std::max(1.0, sigma_max);
    std::int64_t rank = 0;
    for (Eigen::Index t = 0; t < s.size(); ++t) {
      if (s(t) > threshold) ++rank;
    }
    q = svd.matrixV().rightCols(k_classes - rank);
  }
  const std::int64_t d = q.cols();
  Eigen::MatrixXd basis = Eigen::MatrixXd::Zero(n, d);
  for (std::int64_t a = 0; a < n; ++a) {
    const std::int32_t c = cls[a];
    if (c >= 0) basis.row(a) = q.row(c) * inv_sqrt[c];
  }
  sol->method = SolveMethod::kNullspace;
  TiePattern pattern;
  if (TiePatternFromBasis(basis, rows, cols, options.tie_tolerance, &pattern)) {
    sol->ties = std::move(pattern);
    FinishTies(sol);
    return;
  }
  sol->is_tie = false;
  sol->ties = TiePattern();
  sol->class_size.clear();
  sol->dim = d;
  sol->num_zero = 0;
  for (std::int64_t a = 0; a < n; ++a) {
    if (basis.row(a).norm() <= options.tie_tolerance) ++sol->num_zero;
  }
  sol->basis = std::move(basis);
}

Solution SolveFactored(const ConstraintProblem& problem,
                       const SolveOptions& options) {
  // Invariance only: W = W T_k constrains each row independently and the
  // same way, so E = R^{rows} (x) E_in with E_in solved over X.
  const std::int64_t rows = problem.rows(), cols = problem.cols();
  ConstraintProblem in_problem(Shape({1}), problem.in_shape());
  for (const LayerConstraint& c : problem.constraints())
    in_problem.AddInvariance(c.in);
  if (!problem.support().IsFull()) {
    std::vector<std::uint8_t> in_mask(cols);
    for (std::int64_t i = 0; i < cols; ++i)
      in_mask[i] = problem.support().Admissible(i);
    in_problem.SetSupport(
        Support::FromInputMask(Shape({1}), problem.in_shape(), in_mask));
  }
  Solution in_sol = Solve(in_problem, options);
  Solution sol;
  sol.rows = rows;
  sol.cols = cols;
  sol.num_tie_constraints = in_sol.num_tie_constraints;
  sol.num_general_constraints = in_sol.num_general_constraints;
  sol.method = in_sol.method == SolveMethod::kNullspace
                   ? SolveMethod::kNullspace
                   : SolveMethod::kUnionFindFactored;
  if (in_sol.is_tie) {
    const std::int64_t k_in = in_sol.ties.num_classes;
    SYMOPT_CHECK(k_in * rows < std::numeric_limits<std::int32_t>::max(),
                 "too many classes for 32-bit ids");
    sol.is_tie = true;
    sol.ties.rows = rows;
    sol.ties.cols = cols;
    sol.ties.num_classes = static_cast<std::int32_t>(k_in * rows);
    sol.ties.class_of.resize(rows * cols);
    const std::int32_t* c_in = in_sol.ties.class_of.data();
    std::int32_t* out = sol.ties.class_of.data();
    for (std::int64_t j = 0; j < rows; ++j) {
      const std::int32_t base = static_cast<std::int32_t>(j * k_in);
      std::int32_t* row = out + j * cols;
      for (std::int64_t i = 0; i < cols; ++i) {
        row[i] = c_in[i] < 0 ? TiePattern::kZero : base + c_in[i];
      }
    }
    sol.class_size.resize(sol.ties.num_classes);
    for (std::int64_t j = 0; j < rows; ++j) {
      std::copy(in_sol.class_size.begin(),
                in_sol.class_size.end(),
                sol.class_size.begin() + j * k_in);
    }
    sol.dim = sol.ties.num_classes;
    sol.num_zero = in_sol.num_zero * rows;
    sol.row_class_of = std::move(in_sol.ties.class_of);
    sol.row_num_classes = static_cast<std::int32_t>(k_in);
    return sol;
  }
  const std::int64_t d_in = in_sol.dim;
  SYMOPT_CHECK(rows * cols * rows * d_in <= options.max_dense_entries,
               "the basis of E would be " << rows * cols << " x " << rows * d_in
                                          << ", above max_dense_entries = "
                                          << options.max_dense_entries);
  sol.is_tie = false;
  sol.dim = rows * d_in;
  sol.num_zero = in_sol.num_zero * rows;
  sol.basis = Eigen::MatrixXd::Zero(rows * cols, rows * d_in);
  for (std::int64_t j = 0; j < rows; ++j) {
    // NOLINTNEXTLINE(readability-suspicious-call-argument): a cols x d_in block
    sol.basis.block(j * cols, j * d_in, cols, d_in) = in_sol.basis;
  }
  return sol;
}

}  // namespace

Solution Solve(const ConstraintProblem& problem, const SolveOptions& options) {
  bool invariance_only = true;
  std::int64_t num_tie = 0;
  for (const LayerConstraint& c : problem.constraints()) {
    if (!c.out.IsIdentity()) invariance_only = false;
    if (IsTieConstraint(c)) ++num_tie;
  }
  if (options.factor_rows && invariance_only && problem.rows() > 1 &&
      problem.support().IsRowPeriodic()) {
    return SolveFactored(problem, options);
  }
  Solution sol;
  sol.rows = problem.rows();
  sol.cols = problem.cols();
  sol.num_tie_constraints = num_tie;
  sol.num_general_constraints =
      static_cast<std::int64_t>(problem.constraints().size()) - num_tie;
  sol.method = SolveMethod::kUnionFind;
  sol.ties.num_classes = SolveTies(problem, &sol.ties.class_of);
  FinishTies(&sol);
  if (sol.num_general_constraints > 0) SolveNullspace(problem, options, &sol);
  return sol;
}

namespace {

// Calls f(tie, first_row, first_class) for the TieSubspace<double> pieces of
// a tie solution: one per row, over the pattern of one row (built in
// O(cols)), when the pattern repeats row after row; else one over the whole
// pattern. Piece `tie` covers rows [first_row, first_row + tie.rows()) and
// classes [first_class, first_class + tie.NumClasses()).
template <typename F>
void ForEachTiePiece(const Solution& s, F&& f) {
  if (!s.row_class_of.empty()) {
    const TieSubspace<double> row(
        TiePattern{1, s.cols, s.row_num_classes, s.row_class_of});
    for (std::int64_t j = 0; j < s.rows; ++j) {
      f(row, j, j * std::int64_t(s.row_num_classes));
    }
  } else {
    f(TieSubspace<double>(s.ties), 0, 0);
  }
}

}  // namespace

void Solution::ProjectE(const double* w, double* out) const {
  const std::int64_t n = ambient_size();
  if (is_tie) {
    // TieSubspace's scatter-mean, in place on out (written only once the
    // TieSubspace is built, so an invalid pattern leaves out untouched).
    ForEachTiePiece(
        *this,
        [&](const TieSubspace<double>& tie,
            std::int64_t first_row,
            std::int64_t /*first_class*/) {
          const std::int64_t begin = first_row * cols;
          const std::int64_t end = begin + tie.AmbientSize();
          if (out != w) std::copy(w + begin, w + end, out + begin);
          tie.ProjectInPlace(TensorView<double>(out + begin, tie.rows(), cols));
        });
    return;
  }
  Eigen::Map<const Eigen::VectorXd> wv(w, n);
  const Eigen::VectorXd theta = basis.transpose() * wv;
  Eigen::Map<Eigen::VectorXd>(out, n) = basis * theta;
}

void Solution::Expand(const double* theta, double* w) const {
  const std::int64_t n = ambient_size();
  if (is_tie) {
    ForEachTiePiece(*this,
                    [&](const TieSubspace<double>& tie,
                        std::int64_t first_row,
                        std::int64_t first_class) {
                      tie.Expand(theta + first_class,
                                 TensorView<double>(
                                     w + first_row * cols, tie.rows(), cols));
                    });
    return;
  }
  Eigen::Map<Eigen::VectorXd>(w, n) =
      basis * Eigen::Map<const Eigen::VectorXd>(theta, dim);
}

template <typename T>
std::unique_ptr<Manifold<T>> MakeManifold(const Solution& solution,
                                          TieMetric metric) {
  if (solution.is_tie)
    return std::make_unique<TieSubspace<T>>(solution.ties, metric);
  const std::int64_t n = solution.ambient_size(), d = solution.dim;
  SYMOPT_CHECK(solution.basis.rows() == n && solution.basis.cols() == d,
               "solution basis is " << solution.basis.rows() << " x "
                                    << solution.basis.cols() << ", expected "
                                    << n << " x " << d);
  std::vector<double> row_major(n * d);
  Eigen::Map<
      Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
      row_major.data(), n, d) = solution.basis;
  return std::make_unique<LinearSubspace<T>>(
      solution.rows, solution.cols, d, row_major);
}

template std::unique_ptr<Manifold<float>> MakeManifold<float>(const Solution&,
                                                              TieMetric);
template std::unique_ptr<Manifold<double>> MakeManifold<double>(const Solution&,
                                                                TieMetric);

bool TiePatternFromBasis(const Eigen::MatrixXd& basis,
                         std::int64_t rows,
                         std::int64_t cols,
                         double tolerance,
                         TiePattern* pattern) {
  const std::int64_t n = rows * cols;
  SYMOPT_CHECK(basis.rows() == n,
               "basis has " << basis.rows() << " rows, expected " << n);
  const std::int64_t d = basis.cols();
  std::vector<std::int32_t> cls(n, TiePattern::kZero);
  // Sort the non-zero rows by a random projection, then group equal rows
  // inside runs of (nearly) equal keys.
  std::mt19937_64 rng(12345);
  std::normal_distribution<double> normal;
  Eigen::VectorXd z(d);
  for (std::int64_t t = 0; t < d; ++t) z(t) = normal(rng);
  const Eigen::VectorXd key = basis * z;
  std::vector<std::int64_t> order;
  for (std::int64_t a = 0; a < n; ++a) {
    if (basis.row(a).norm() > tolerance) order.push_back(a);
  }
  std::sort(order.begin(), order.end(), [&](std::int64_t x, std::int64_t y) {
    return key(x) < key(y) || (key(x) == key(y) && x < y);
  });
  // Rows equal to `tolerance` (max norm) have keys within tolerance * sqrt(d)
  // |z|.
  const double key_tol =
      tolerance * (std::sqrt(static_cast<double>(d)) * z.norm() + 1.0);
  std::vector<std::int64_t> reps;  // a representative row per provisional class
  std::size_t start = 0;
  while (start < order.size()) {
    std::size_t end = start + 1;
    while (end < order.size() &&
           key(order[end]) - key(order[end - 1]) <= key_tol)
      ++end;
    const std::size_t first_rep = reps.size();
    for (std::size_t t = start; t < end; ++t) {
      const std::int64_t a = order[t];
      bool placed = false;
      for (std::size_t r = first_rep; r < reps.size() && !placed; ++r) {
        if ((basis.row(a) - basis.row(reps[r])).lpNorm<Eigen::Infinity>() <=
            tolerance) {
          cls[a] = static_cast<std::int32_t>(r);
          placed = true;
        }
      }
      if (!placed) {
        cls[a] = static_cast<std::int32_t>(reps.size());
        reps.push_back(a);
      }
    }
    start = end;
  }
  if (static_cast<std::int64_t>(reps.size()) != d) return false;
  // Verify: the class rows scaled by sqrt(|class|) must be orthonormal.
  std::vector<std::int64_t> size(d, 0);
  for (std::int32_t c : cls) {
    if (c >= 0) ++size[c];
  }
  Eigen::MatrixXd m(d, d);
  for (std::int64_t c = 0; c < d; ++c) {
    m.row(c) = basis.row(reps[c]) * std::sqrt(static_cast<double>(size[c]));
  }
  const double err = (m * m.transpose() - Eigen::MatrixXd::Identity(d, d))
                         .lpNorm<Eigen::Infinity>();
  if (err > std::sqrt(tolerance)) return false;
  // Renumber classes by first occurrence.
  std::vector<std::int32_t> relabel(d, -1);
  std::int32_t next = 0;
  for (std::int64_t a = 0; a < n; ++a) {
    if (cls[a] < 0) continue;
    if (relabel[cls[a]] < 0) relabel[cls[a]] = next++;
    cls[a] = relabel[cls[a]];
  }
  pattern->rows = rows;
  pattern->cols = cols;
  pattern->num_classes = static_cast<std::int32_t>(d);
  pattern->class_of = std::move(cls);
  return true;
}

CompatibilityReport CheckCompatibility(const ConstraintProblem& problem,
                                       const SolveOptions& options,
                                       double tolerance) {
  ConstraintProblem free_problem = problem;
  free_problem.ClearSupport();
  const Solution fix = Solve(free_problem, options);
  const Support& support = problem.support();
  CompatibilityReport report;
  report.dim_fix = fix.dim;
  report.dim_e = Solve(problem, options).dim;
  report.dim_support = support.NumAdmissible();
  const std::int64_t n = problem.ambient_size();
  if (fix.is_tie) {
    // Block diagonal over the classes of F: sqrt(s (m - s)) / m per class.
    std::vector<std::int64_t> inside(fix.ties.num_classes, 0);
    for (std::int64_t a = 0; a < n; ++a) {
      const std::int32_t c = fix.ties.class_of[a];
      if (c >= 0 && support.Admissible(a)) ++inside[c];
    }
    double worst = 0.0;
    for (std::int32_t c = 0; c < fix.ties.num_classes; ++c) {
      const double m = fix.class_size[c], s = static_cast<double>(inside[c]);
      worst = std::max(worst, std::sqrt(s * (m - s)) / m);
    }
    report.residual = worst;
  } else {
    SYMOPT_CHECK(n <= options.max_dense_unknowns,
                 "compatibility of a non-tie subspace is measured densely; "
                     << n << " weights exceed max_dense_unknowns = "
                     << options.max_dense_unknowns);
    const Eigen::MatrixXd pf = fix.basis * fix.basis.transpose();
    Eigen::VectorXd l(n);
    for (std::int64_t a = 0; a < n; ++a)
      l(a) = support.Admissible(a) ? 1.0 : 0.0;
    const Eigen::MatrixXd comm = l.asDiagonal() * pf - pf * l.asDiagonal();
    report.residual =
        Eigen::JacobiSVD<Eigen::MatrixXd>(comm).singularValues()(0);
  }
  report.compatible = report.residual <= tolerance;
  return report;
}

}  // namespace symopt
