#include <algorithm>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <utility>

#include "symmetry/spec.h"

#if __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define SYMOPT_HAVE_JSON 1
#else
#define SYMOPT_HAVE_JSON 0
#endif

namespace symopt {

#if SYMOPT_HAVE_JSON

namespace {

using Json = nlohmann::json;

// Library messages start with "file.cpp:line: "; a spec user needs only the
// text after it.
std::string StripLocation(const std::string& message) {
  const std::size_t cpp = message.find(".cpp:");
  if (cpp == std::string::npos) return message;
  const std::size_t colon = message.find(": ", cpp + 5);
  return colon == std::string::npos ? message : message.substr(colon + 2);
}

class Parser {
 public:
  explicit Parser(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void Fail(const std::string& path,
                         const std::string& what) const {
    throw SpecError(source_ + ": " + path + ": " + what);
  }

  // Runs f; turns a library InvalidArgument into a SpecError at `path`.
  template <typename F>
  auto At(const std::string& path, F f) const -> decltype(f()) {
    try {
      return f();
    } catch (const SpecError&) {
      throw;
    } catch (const InvalidArgument& e) {
      Fail(path, StripLocation(e.what()));
    }
  }

  const Json& Member(const Json& obj,
                     const std::string& path,
                     const char* key) const {
    if (!obj.is_object()) Fail(path, "expected an object");
    auto it = obj.find(key);
    if (it == obj.end()) Fail(path, std::string("missing \"") + key + "\"");
    return *it;
  }

  std::int64_t Int(const Json& v, const std::string& path) const {
    if (!v.is_number_integer())
      Fail(path, "expected an integer, got " + v.dump());
    return v.get<std::int64_t>();
  }

  double Number(const Json& v, const std::string& path) const {
    if (!v.is_number()) Fail(path, "expected a number, got " + v.dump());
    return v.get<double>();
  }

  bool Bool(const Json& v, const std::string& path) const {
    if (!v.is_boolean()) Fail(path, "expected true or false, got " + v.dump());
    return v.get<bool>();
  }

  std::string String(const Json& v, const std::string& path) const {
    if (!v.is_string()) Fail(path, "expected a string, got " + v.dump());
    return v.get<std::string>();
  }

  std::vector<std::int64_t> IntList(const Json& v,
                                    const std::string& path) const {
    if (!v.is_array()) Fail(path, "expected an array of integers");
    std::vector<std::int64_t> out;
    for (std::size_t k = 0; k < v.size(); ++k) {
      out.push_back(Int(v[k], path + "[" + std::to_string(k) + "]"));
    }
    return out;
  }

  // Nested arrays of numbers, flattened row-major.
  void Flatten(const Json& v,
               const std::string& path,
               std::vector<double>* out) const {
    if (v.is_array()) {
      for (std::size_t k = 0; k < v.size(); ++k) {
        Flatten(v[k], path + "[" + std::to_string(k) + "]", out);
      }
    } else {
      out->push_back(Number(v, path));
    }
  }

  Shape ParseShape(const Json& v, const std::string& path) const {
    const std::vector<std::int64_t> dims = IntList(v, path);
    if (dims.empty()) Fail(path, "a shape needs at least one axis");
    return At(path, [&] { return Shape(dims); });
  }

  int Axis(const Json& obj,
           const std::string& path,
           const char* key,
           const Shape& shape) const {
    const std::string p = path + "." + key;
    const std::int64_t a = Int(Member(obj, path, key), p);
    if (a < 0 || a >= shape.rank()) {
      Fail(p,
           "axis " + std::to_string(a) + " is out of range for shape " +
               shape.ToString() + " (rank " + std::to_string(shape.rank()) +
               ")");
    }
    return static_cast<int>(a);
  }

  std::pair<int, int> AxisPair(const Json& obj,
                               const std::string& path,
                               const Shape& shape) const {
    const std::string p = path + ".axes";
    const std::vector<std::int64_t> axes =
        IntList(Member(obj, path, "axes"), p);
    if (axes.size() != 2)
      Fail(p, "expected two axes, got " + std::to_string(axes.size()));
    for (std::int64_t a : axes) {
      if (a < 0 || a >= shape.rank()) {
        Fail(p,
             "axis " + std::to_string(a) + " is out of range for shape " +
                 shape.ToString() + " (rank " + std::to_string(shape.rank()) +
                 ")");
      }
    }
    return {static_cast<int>(axes[0]), static_cast<int>(axes[1])};
  }

  Transform ParseTransform(const Json& t,
                           const std::string& path,
                           const Shape& shape) const {
    const std::string type = String(Member(t, path, "type"), path + ".type");
    auto opt_int = [&](const char* key, std::int64_t def) {
      auto it = t.find(key);
      return it == t.end() ? def : Int(*it, path + "." + key);
    };
    auto opt_bool = [&](const char* key, bool def) {
      auto it = t.find(key);
      return it == t.end() ? def : Bool(*it, path + "." + key);
    };
    if (type == "identity") return Transform::Identity(shape);
    if (type == "shift") {
      const int axis = Axis(t, path, "axis", shape);
      const std::int64_t amount = opt_int("amount", 1);
      const bool wrap = opt_bool("wrap", true);
      return At(path,
                [&] { return Transform::Shift(shape, axis, amount, wrap); });
    }
    if (type == "flip") {
      const int axis = Axis(t, path, "axis", shape);
      return At(path, [&] { return Transform::Flip(shape, axis); });
    }
    if (type == "rotate90" || type == "transpose") {
      const std::pair<int, int> axes = AxisPair(t, path, shape);
      const int a = axes.first, b = axes.second;
      if (shape.dim(a) != shape.dim(b)) {
        Fail(path + ".axes",
             type + " needs two axes of equal length, got axis " +
                 std::to_string(a) + " (" + std::to_string(shape.dim(a)) +
                 ") and axis " + std::to_string(b) + " (" +
                 std::to_string(shape.dim(b)) + ") of shape " +
                 shape.ToString());
      }
      if (type == "transpose")
        return At(path, [&] { return Transform::Transpose(shape, a, b); });
      const std::int64_t times = opt_int("times", 1);
      return At(path, [&] {
        return Transform::Rotate90(shape, a, b, static_cast<int>(times));
      });
    }
    if (type == "p4_filter") {
      const int r = Axis(t, path, "rotation_axis", shape);
      const std::pair<int, int> axes = AxisPair(t, path, shape);
      const int a = axes.first, b = axes.second;
      return At(path, [&] { return Transform::P4Filter(shape, r, a, b); });
    }
    if (type == "permutation" || type == "partial_permutation") {
      const std::vector<std::int64_t> g =
          IntList(Member(t, path, "gather"), path + ".gather");
      // Checked here, before the narrowing to int32 could wrap an index
      // into range.
      for (std::size_t k = 0; k < g.size(); ++k) {
        if (g[k] < -1 || g[k] >= shape.size()) {
          Fail(path + ".gather[" + std::to_string(k) + "]",
               "index " + std::to_string(g[k]) +
                   " is out of range: expected -1 or an index in [0, " +
                   std::to_string(shape.size()) + ")");
        }
      }
      std::vector<std::int32_t> src(g.begin(), g.end());
      Transform tr = At(path + ".gather", [&] {
        return Transform::FromGather(shape, src, type);
      });
      if (type == "permutation" && !tr.IsPermutation()) {
        Fail(path + ".gather",
             "not a permutation (an index is missing, repeated or -1)");
      }
      return tr;
    }
    if (type == "downscale") {
      const int axis = Axis(t, path, "axis", shape);
      const std::int64_t factor =
          Int(Member(t, path, "factor"), path + ".factor");
      auto it = t.find("scale");
      const double scale =
          it == t.end()
              ? 1.0 / static_cast<double>(std::max<std::int64_t>(factor, 1))
              : Number(*it, path + ".scale");
      return At(path, [&] {
        return Transform::DownScale(shape, axis, factor, scale);
      });
    }
    if (type == "block_average") {
      const int axis = Axis(t, path, "axis", shape);
      const std::int64_t factor =
          Int(Member(t, path, "factor"), path + ".factor");
      return At(path,
                [&] { return Transform::BlockAverage(shape, axis, factor); });
    }
    if (type == "matrix") {
      const std::int64_t n = shape.size();
      if (t.contains("dense")) {
        std::vector<double> flat;
        Flatten(t["dense"], path + ".dense", &flat);
        if (static_cast<std::int64_t>(flat.size()) != n * n) {
          Fail(path + ".dense",
               "has " + std::to_string(flat.size()) + " entries, expected " +
                   std::to_string(n) + " x " + std::to_string(n) +
                   " for shape " + shape.ToString());
        }
        const Eigen::MatrixXd m =
            Eigen::Map<const Eigen::Matrix<double,
                                           Eigen::Dynamic,
                                           Eigen::Dynamic,
                                           Eigen::RowMajor>>(flat.data(), n, n);
        return At(path,
                  [&] { return Transform::FromDense(shape, m, "matrix"); });
      }
      const Json& entries = Member(t, path, "entries");
      if (!entries.is_array())
        Fail(path + ".entries", "expected [[row, col, value], ...]");
      std::vector<Eigen::Triplet<double, int>> triplets;
      for (std::size_t k = 0; k < entries.size(); ++k) {
        const std::string p = path + ".entries[" + std::to_string(k) + "]";
        const Json& e = entries[k];
        if (!e.is_array() || e.size() != 3)
          Fail(p, "expected [row, col, value]");
        const std::int64_t r = Int(e[0], p + "[0]"), c = Int(e[1], p + "[1]");
        if (r < 0 || r >= n || c < 0 || c >= n) {
          Fail(p,
               "index (" + std::to_string(r) + ", " + std::to_string(c) +
                   ") out of range for a " + std::to_string(n) + " x " +
                   std::to_string(n) + " matrix");
        }
        triplets.emplace_back(
            static_cast<int>(r), static_cast<int>(c), Number(e[2], p + "[2]"));
      }
      SparseMatrixD m(n, n);
      m.setFromTriplets(triplets.begin(), triplets.end());
      return At(path, [&] { return Transform(shape, std::move(m), "matrix"); });
    }
    Fail(path + ".type",
         "unknown transformation \"" + type +
             "\" (known: identity, shift, flip, rotate90, transpose, "
             "p4_filter, permutation, "
             "partial_permutation, downscale, block_average, matrix)");
  }

  GeneratorSet NamedGroup(const Json& g,
                          const std::string& path,
                          const Shape& shape) const {
    const std::string name = String(Member(g, path, "name"), path + ".name");
    if (name == "cyclic_shift") {
      const int axis = Axis(g, path, "axis", shape);
      return At(path, [&] { return CyclicShiftGroup(shape, axis); });
    }
    if (name == "flips") {
      const std::vector<std::int64_t> axes =
          IntList(Member(g, path, "axes"), path + ".axes");
      std::vector<int> a;
      for (std::int64_t v : axes) {
        if (v < 0 || v >= shape.rank()) {
          Fail(path + ".axes",
               "axis " + std::to_string(v) + " is out of range for shape " +
                   shape.ToString());
        }
        a.push_back(static_cast<int>(v));
      }
      return At(path, [&] { return FlipGroup(shape, a); });
    }
    if (name == "C4" || name == "D4") {
      const std::pair<int, int> axes = AxisPair(g, path, shape);
      const int a = axes.first, b = axes.second;
      return At(path + ".axes", [&] {
        return name == "C4" ? C4Group(shape, a, b) : D4Group(shape, a, b);
      });
    }
    if (name == "p4_filter") {
      const int r = Axis(g, path, "rotation_axis", shape);
      const std::pair<int, int> axes = AxisPair(g, path, shape);
      const int a = axes.first, b = axes.second;
      return At(path, [&] { return P4FilterGroup(shape, r, a, b); });
    }
    Fail(path + ".name",
         "unknown group \"" + name +
             "\" (known: cyclic_shift, flips, C4, D4, p4_filter)");
  }

  GroupKind DeclaredKind(const Json& g, const std::string& path) const {
    const std::string kind = String(Member(g, path, "kind"), path + ".kind");
    auto order = [&](const char* key) {
      const std::int64_t n = Int(Member(g, path, key), path + "." + key);
      if (n < 1) Fail(path + "." + key, "must be >= 1");
      return n;
    };
    if (kind == "cyclic") return GroupKind::Cyclic(order("order"));
    if (kind == "dihedral") return GroupKind::Dihedral(order("n"));
    if (kind == "any") {
      return g.contains("order") ? GroupKind::Any(order("order"))
                                 : GroupKind::Any();
    }
    Fail(path + ".kind",
         "unknown group kind \"" + kind + "\" (known: cyclic, dihedral, any)");
  }

  std::vector<std::vector<std::int64_t>> NamedStencil(
      const Json& s, const std::string& path) const {
    const std::string name = String(Member(s, path, "name"), path + ".name");
    if (name == "cross3") return CrossStencil3x3();
    if (name == "skew3") return SkewStencil3x3();
    Fail(path + ".name",
         "unknown stencil \"" + name + "\" (known: cross3, skew3)");
  }

  Support ParseSupport(const Json& s,
                       const std::string& path,
                       const Shape& out,
                       const Shape& in) const {
    const std::string type = String(Member(s, path, "type"), path + ".type");
    auto bytes = [&](const Json& v, const std::string& p, std::int64_t want) {
      std::vector<double> flat;
      Flatten(v, p, &flat);
      if (static_cast<std::int64_t>(flat.size()) != want) {
        Fail(p,
             "has " + std::to_string(flat.size()) + " entries, expected " +
                 std::to_string(want));
      }
      std::vector<std::uint8_t> mask(flat.size());
      for (std::size_t k = 0; k < flat.size(); ++k) mask[k] = flat[k] != 0.0;
      return mask;
    };
    if (type == "mask") {
      return Support::FromMask(
          out,
          in,
          bytes(
              Member(s, path, "mask"), path + ".mask", out.size() * in.size()));
    }
    if (type == "input_mask") {
      return Support::FromInputMask(
          out, in, bytes(Member(s, path, "mask"), path + ".mask", in.size()));
    }
    if (type == "window" || type == "stencil") {
      const Json& axes = Member(s, path, "axes");
      if (!axes.is_array() || axes.empty())
        Fail(path + ".axes", "expected [[out_axis, in_axis], ...]");
      std::vector<std::pair<int, int>> pairs;
      for (std::size_t k = 0; k < axes.size(); ++k) {
        const std::string p = path + ".axes[" + std::to_string(k) + "]";
        const std::vector<std::int64_t> ab = IntList(axes[k], p);
        if (ab.size() != 2) Fail(p, "expected [out_axis, in_axis]");
        if (ab[0] < 0 || ab[0] >= out.rank()) {
          Fail(p,
               "output axis " + std::to_string(ab[0]) +
                   " is out of range for " + out.ToString());
        }
        if (ab[1] < 0 || ab[1] >= in.rank()) {
          Fail(p,
               "input axis " + std::to_string(ab[1]) + " is out of range for " +
                   in.ToString());
        }
        pairs.emplace_back(static_cast<int>(ab[0]), static_cast<int>(ab[1]));
      }
      std::vector<std::vector<std::int64_t>> offsets;
      if (type == "stencil") {
        offsets = NamedStencil(s, path);
        if (pairs.size() != 2)
          Fail(path + ".axes", "a 3x3 stencil needs two axis pairs");
      } else {
        const Json& off = Member(s, path, "offsets");
        if (!off.is_array())
          Fail(path + ".offsets", "expected an array of offsets");
        for (std::size_t k = 0; k < off.size(); ++k) {
          const std::string p = path + ".offsets[" + std::to_string(k) + "]";
          offsets.push_back(off[k].is_array()
                                ? IntList(off[k], p)
                                : std::vector<std::int64_t>{Int(off[k], p)});
        }
      }
      bool wrap = false;
      if (s.contains("wrap")) wrap = Bool(s["wrap"], path + ".wrap");
      return At(path,
                [&] { return Support::Local(out, in, pairs, offsets, wrap); });
    }
    if (type == "filter_stencil") {
      // A named 3x3 stencil on two k x k input axes (k odd), centred; other
      // input axes are free.
      const std::pair<int, int> axes = AxisPair(s, path, in);
      const int a = axes.first, b = axes.second;
      if (in.dim(a) != in.dim(b) || in.dim(a) % 2 == 0) {
        Fail(path + ".axes",
             "a filter stencil needs two equal odd axes, got " +
                 std::to_string(in.dim(a)) + " and " +
                 std::to_string(in.dim(b)));
      }
      const std::vector<std::vector<std::int64_t>> offsets =
          NamedStencil(s, path);
      const std::int64_t k = in.dim(a);
      const std::vector<std::uint8_t> filter =
          At(path, [&] { return StencilMask(k, offsets); });
      std::vector<std::uint8_t> mask(in.size());
      for (std::int64_t i = 0; i < in.size(); ++i) {
        const std::vector<std::int64_t> idx = in.Unflatten(i);
        mask[i] = filter[idx[a] * k + idx[b]];
      }
      return Support::FromInputMask(out, in, mask);
    }
    Fail(path + ".type",
         "unknown support \"" + type +
             "\" (known: mask, input_mask, window, stencil, filter_stencil)");
  }

  SolveSpec Parse(const std::string& text) const {
    Json root;
    try {
      root = Json::parse(text);
    } catch (const Json::parse_error& e) {
      throw SpecError(source_ + ": invalid JSON: " + e.what());
    }
    if (!root.is_object()) Fail("(top level)", "expected an object");
    for (auto it = root.begin(); it != root.end(); ++it) {
      static const char* known[] = {"input",
                                    "output",
                                    "constraint",
                                    "transforms",
                                    "group",
                                    "support",
                                    "comment"};
      if (std::find(std::begin(known), std::end(known), it.key()) ==
          std::end(known)) {
        Fail(
            it.key(),
            "unknown key (known: input, output, constraint, transforms, group, "
            "support, comment)");
      }
    }
    SolveSpec spec;
    spec.source = source_;
    const Shape in = ParseShape(Member(root, "(top level)", "input"), "input");
    const Shape out =
        ParseShape(Member(root, "(top level)", "output"), "output");
    spec.constraint =
        String(Member(root, "(top level)", "constraint"), "constraint");
    const std::string& kind = spec.constraint;
    if (kind != "invariance" && kind != "equivariance" &&
        kind != "representation") {
      Fail("constraint",
           "unknown constraint \"" + kind +
               "\" (known: invariance, equivariance, representation)");
    }
    if (kind == "equivariance" && out != in) {
      Fail("output",
           "equivariance T W = W T needs equal shapes, got output " +
               out.ToString() + " and input " + in.ToString());
    }
    spec.problem =
        At("(top level)", [&] { return ConstraintProblem(out, in); });

    // The layer generators: (rho_out, rho_in) per transform.
    std::vector<LayerGenerator> gens;
    const Transform out_id = Transform::Identity(out);
    auto add = [&](const Transform& t_out, const Transform& t_in) {
      gens.push_back({t_out, t_in});
    };
    if (root.contains("transforms")) {
      const Json& ts = root["transforms"];
      if (!ts.is_array()) Fail("transforms", "expected an array");
      for (std::size_t k = 0; k < ts.size(); ++k) {
        const std::string p = "transforms[" + std::to_string(k) + "]";
        if (kind == "representation") {
          const Transform t_out =
              ParseTransform(Member(ts[k], p, "out"), p + ".out", out);
          const Transform t_in =
              ParseTransform(Member(ts[k], p, "in"), p + ".in", in);
          add(t_out, t_in);
        } else {
          const Transform t = ParseTransform(ts[k], p, in);
          add(kind == "invariance" ? out_id : t, t);
        }
      }
    }
    GroupKind declared = GroupKind::Any();
    if (root.contains("group")) {
      const Json& g = root["group"];
      if (!g.is_object()) Fail("group", "expected an object");
      spec.has_group = true;
      if (g.contains("name")) {
        if (kind == "representation") {
          Fail("group.name",
               "a named group acts on one space; for \"representation\" list "
               "{\"out\", \"in\"} transforms and declare the kind");
        }
        const GeneratorSet set = NamedGroup(g, "group", in);
        for (const Transform& t : set.generators)
          add(kind == "invariance" ? out_id : t, t);
        declared = set.kind;
      } else {
        declared = DeclaredKind(g, "group");
      }
    }
    if (gens.empty())
      Fail("transforms", "no transformations given (and no named group)");
    if (spec.has_group) {
      std::int64_t max_order = 4096;
      if (root["group"].contains("max_order")) {
        max_order = Int(root["group"]["max_order"], "group.max_order");
      }
      const FiniteGroup group = At("group", [&] {
        return FiniteGroup::Generate(gens, declared, max_order);
      });
      spec.group_kind = group.kind();
      spec.group_order = group.order();
      spec.problem.AddGroup(group);
    } else {
      for (const LayerGenerator& g : gens) {
        if (kind == "invariance") {
          spec.problem.AddInvariance(g.in);
        } else if (kind == "equivariance") {
          spec.problem.AddEquivariance(g.in);
        } else {
          spec.problem.AddRepresentation(g.out, g.in);
        }
      }
    }
    if (root.contains("support")) {
      spec.problem.SetSupport(
          ParseSupport(root["support"], "support", out, in));
      spec.has_support = true;
    }
    return spec;
  }

 private:
  std::string source_;
};

}  // namespace

SolveSpec ParseSolveSpec(const std::string& text, const std::string& source) {
  return Parser(source).Parse(text);
}

SolveSpec LoadSolveSpec(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw FileError(path + ": cannot open the spec file");
  std::ostringstream os;
  os << file.rdbuf();
  if (file.bad()) throw FileError(path + ": read error");
  return ParseSolveSpec(os.str(), path);
}

std::string RunSolveSpec(const SolveSpec& spec,
                         const SolveSpecOptions& options,
                         const SolveOptions& solve_options) {
  const ConstraintProblem& p = spec.problem;
  const Solution s = Solve(p, solve_options);
  CompatibilityReport compat;
  if (spec.has_support) compat = CheckCompatibility(p, solve_options);
  if (options.json) {
    Json j;
    j["source"] = spec.source;
    j["output_shape"] = p.out_shape().dims();
    j["input_shape"] = p.in_shape().dims();
    j["constraint"] = spec.constraint;
    j["num_constraints"] = p.constraints().size();
    j["ambient_size"] = p.ambient_size();
    j["dim"] = s.dim;
    j["is_tie"] = s.is_tie;
    j["num_zero"] = s.num_zero;
    j["method"] = SolveMethodName(s.method);
    if (spec.has_group) {
      j["group"] = {{"order", spec.group_order},
                    {"kind", spec.group_kind.ToString()}};
    }
    if (spec.has_support) {
      j["compatibility"] = {{"compatible", compat.compatible},
                            {"residual", compat.residual},
                            {"dim_fix", compat.dim_fix},
                            {"dim_support", compat.dim_support},
                            {"dim_e", compat.dim_e}};
    }
    if (options.classes) {
      if (s.is_tie) {
        j["classes"] = s.ties.class_of;
      } else {
        j["classes"] = nullptr;
      }
    }
    return j.dump() + "\n";
  }
  std::ostringstream os;
  os << "spec:            " << spec.source << "\n"
     << "layer:           " << p.out_shape().ToString() << " <- "
     << p.in_shape().ToString() << "\n"
     << "constraint:      " << spec.constraint << " (" << p.constraints().size()
     << (p.constraints().size() == 1 ? " equation" : " equations") << ")\n";
  if (spec.has_group) {
    os << "group:           " << spec.group_kind.ToString() << ", "
       << spec.group_order << " elements\n";
  }
  os << "ambient size:    " << p.ambient_size() << "\n"
     << "dim E:           " << s.dim << "\n"
     << "tie pattern:     " << (s.is_tie ? "yes" : "no") << " ("
     << SolveMethodName(s.method)
     << (s.is_tie && s.method == SolveMethod::kNullspace
             ? ", basis recognised as ties"
             : "")
     << ")\n"
     << "zeroed entries:  " << s.num_zero << "\n";
  if (spec.has_support) {
    os << "support:         " << compat.dim_support << " admissible entries\n"
       << "compatibility:   "
       << (compat.compatible ? "compatible" : "NOT compatible")
       << " (||Pi_L Pi_F - Pi_F Pi_L||_2 = " << std::setprecision(6)
       << compat.residual << "; dim Fix = " << compat.dim_fix
       << ", dim E = L cap Fix = " << compat.dim_e << ")\n";
  }
  if (options.classes) {
    if (!s.is_tie) {
      os << "classes:         none (E is not a tie pattern)\n";
    } else {
      os << "classes (row-major, -1 = zero):\n";
      for (std::int64_t r = 0; r < s.rows; ++r) {
        for (std::int64_t c = 0; c < s.cols; ++c) {
          os << (c ? " " : "") << s.ties.class_of[r * s.cols + c];
        }
        os << "\n";
      }
    }
  }
  return os.str();
}

#else  // !SYMOPT_HAVE_JSON

SolveSpec ParseSolveSpec(const std::string&, const std::string&) {
  throw NotCompiledError(
      "symopt was built without nlohmann/json: specs cannot be parsed");
}
SolveSpec LoadSolveSpec(const std::string&) {
  throw NotCompiledError(
      "symopt was built without nlohmann/json: specs cannot be parsed");
}
std::string RunSolveSpec(const SolveSpec&,
                         const SolveSpecOptions&,
                         const SolveOptions&) {
  throw NotCompiledError(
      "symopt was built without nlohmann/json: specs cannot be parsed");
}

#endif

}  // namespace symopt
