// The constraint engine: the exact subspace E of a linear layer's weights
// allowed by invariances, equivariances and a support (DESIGN.md section 4).
//
// A layer L_w : X -> Y with X = R^{n_in}, Y = R^{n_out} (index spaces of any
// shape) has weights W in R^{n_out x n_in}, row-major: W_{j,i} sits at
// j * n_in + i (paper 000, eq. 2). Every constraint is one linear equation
//   A W = W B                                                          (*)
// with A acting on Y and B on X:
//   invariance      W = W T          A = I, B = T       (paper 000, eq. 8)
//   equivariance    T W = W T        A = B = T          (paper 000, eq. 16)
//   representation  rho_out(g) W = W rho_in(g)          (paper 004)
// and the support L (admissible layers: masks, local windows, cross-shaped or
// skew 3x3 stencils) is a coordinate subspace with projector Pi_L (zero the
// entries outside L). The engine returns
//   E = L  intersect  { W : A_k W = W B_k for every constraint k }
// exactly:
//  * When A has a gather form and B a scatter form (transform.h), entry (j, i)
//    of (*) reads W_{g(j), i} = W_{j, s(i)} (a side with index -1 is 0): a tie
//    or a zero. All such constraints and the support go through union-find
//    over the n_out * n_in entries plus one "zero" node: near-linear time and
//    exact. With only invariances (A = I) the pattern is the same in every row
//    and the union-find runs over X alone (SolveOptions::factor_rows).
//  * Every other constraint (averaging maps, dense maps) is solved on the
//    quotient left by the ties: w = P theta (P the class indicator, columns
//    scaled to unit norm), the stacked (A_k kron I - I kron B_k^T) P is
//    reduced by Householder QR and its nullspace read from a BDCSVD with the
//    relative rank tolerance of SolveOptions. The orthonormal basis is then
//    tested for being a tie pattern after all (TiePatternFromBasis) and, if it
//    is, reported as ties.
//
// Projectors: Solution::ProjectE is Pi_E (a scatter-mean for ties, B B^T
// otherwise); Support::Project is Pi_L; FiniteGroup::Twirl (group.h) is Pi_G.
// Compatibility (paper 004, Definition 3.2): L and F = Fix(constraints) are
// compatible when Pi_L Pi_F = Pi_F Pi_L; then Pi_E = Pi_L Pi_F (Lemma 3.3).
// CheckCompatibility measures ||Pi_L Pi_F - Pi_F Pi_L||_2 exactly: for a tie
// pattern F the commutator is block diagonal over F's classes and a class of
// m entries with s of them in L contributes sqrt(s (m - s)) / m; otherwise it
// is formed densely. E = L intersect F is computed the same way whether or not
// the two are compatible.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "manifolds/linear_subspace.h"
#include "manifolds/tie_subspace.h"
#include "symmetry/group.h"
#include "symmetry/transform.h"

namespace symopt {

// One equation A W = W B.
struct LayerConstraint {
  Transform out;     // A, on Y
  Transform in;      // B, on X
  std::string kind;  // "invariance", "equivariance", "representation"
};

// Admissible layers L: a set of entries of W (a coordinate subspace).
class Support {
 public:
  // Every entry admissible.
  Support(const Shape& out_shape, const Shape& in_shape);
  // mask: n_out * n_in bytes, nonzero = admissible.
  static Support FromMask(const Shape& out_shape,
                          const Shape& in_shape,
                          std::vector<std::uint8_t> mask);
  // The same n_in-byte mask in every row (e.g. a filter's support when the
  // layer is a filter bank).
  static Support FromInputMask(const Shape& out_shape,
                               const Shape& in_shape,
                               const std::vector<std::uint8_t>& in_mask);
  // A local window: (j, i) is admissible iff the offsets
  //   d_t = i[axis_pairs[t].second] - j[axis_pairs[t].first]
  // (reduced modulo the input axis length when wrap) form one of `offsets`
  // (each a vector of axis_pairs.size() values). Axes not named are free.
  // Requires: paired axes have equal lengths.
  static Support Local(const Shape& out_shape,
                       const Shape& in_shape,
                       const std::vector<std::pair<int, int>>& axis_pairs,
                       const std::vector<std::vector<std::int64_t>>& offsets,
                       bool wrap);

  const Shape& out_shape() const { return out_shape_; }
  const Shape& in_shape() const { return in_shape_; }
  bool IsFull() const { return full_; }
  // True if every row has the same mask (FromInputMask or Full).
  bool IsRowPeriodic() const { return row_periodic_; }
  bool Admissible(std::int64_t entry) const;
  std::int64_t NumAdmissible() const;
  // out = Pi_L w (entries outside L set to 0). May alias.
  void Project(const double* w, double* out) const;

 private:
  Shape out_shape_;
  Shape in_shape_;
  bool full_ = true;
  bool row_periodic_ = true;
  std::vector<std::uint8_t> mask_;  // empty (full), n_in (periodic) or N
};

// Offsets of the named 3x3 stencils around the centre, as (row, col) pairs:
// cross = centre and its 4 neighbours; skew = the Z-shaped
// {(-1,-1), (-1,0), (0,0), (1,0), (1,1)}, symmetric under the half turn but
// not under the quarter turn (paper 004, Figure 2 uses a cross and a skew
// support to contrast compatible and incompatible supports).
std::vector<std::vector<std::int64_t>> CrossStencil3x3();
std::vector<std::vector<std::int64_t>> SkewStencil3x3();
// A k x k filter mask (row-major k*k bytes) with the stencil placed at the
// centre. Requires: k odd, the stencil fits.
std::vector<std::uint8_t> StencilMask(
    std::int64_t k, const std::vector<std::vector<std::int64_t>>& offsets);

class ConstraintProblem {
 public:
  ConstraintProblem(Shape out_shape, Shape in_shape);

  // W = W T. Requires: t.shape() == in_shape.
  void AddInvariance(const Transform& t);
  // T W = W T. Requires: out_shape == in_shape == t.shape().
  void AddEquivariance(const Transform& t);
  // rho_out W = W rho_in. Requires: shapes match out_shape / in_shape.
  void AddRepresentation(const Transform& rho_out, const Transform& rho_in);
  // rho_out(g) W = W rho_in(g) for every generator g of the group.
  void AddGroup(const FiniteGroup& group);
  // Requires: support shapes equal the problem's.
  void SetSupport(Support support);
  void ClearSupport();

  const Shape& out_shape() const { return out_shape_; }
  const Shape& in_shape() const { return in_shape_; }
  std::int64_t rows() const { return out_shape_.size(); }
  std::int64_t cols() const { return in_shape_.size(); }
  std::int64_t ambient_size() const { return rows() * cols(); }
  const std::vector<LayerConstraint>& constraints() const {
    return constraints_;
  }
  const Support& support() const { return support_; }

 private:
  Shape out_shape_;
  Shape in_shape_;
  std::vector<LayerConstraint> constraints_;
  Support support_;
};

struct SolveOptions {
  // Solve invariance-only problems over X and repeat the pattern per row.
  bool factor_rows = true;
  // Singular values <= rank_tolerance * max(1, sigma_max) count as zero.
  double rank_tolerance = 1e-10;
  // Entries of an orthonormal basis closer than this are taken as equal when
  // looking for a tie pattern (the result is then verified).
  double tie_tolerance = 1e-8;
  // The nullspace path refuses problems whose quotient has more unknowns.
  std::int64_t max_dense_unknowns = 4096;
  // ... or whose stacked constraint matrix would have more entries.
  std::int64_t max_dense_entries = 50'000'000;
};

enum class SolveMethod {
  kUnionFind,          // ties over all n_out * n_in entries
  kUnionFindFactored,  // ties over X, repeated per row (invariance only)
  kNullspace,          // numerical nullspace on the tie quotient
};
const char* SolveMethodName(SolveMethod method);

struct Solution {
  std::int64_t rows = 0;  // n_out
  std::int64_t cols = 0;  // n_in
  std::int64_t dim = 0;   // dim E
  bool is_tie = false;
  // When is_tie: the class of every entry (kZero for forced zeros), classes
  // numbered in order of first occurrence, and the size of each class.
  TiePattern ties;
  std::vector<std::int32_t> class_size;
  // When the pattern repeats row after row (invariance-only problems solved
  // with factor_rows): row j's classes are j * row_num_classes +
  // row_class_of[i] (kZero stays kZero). Empty otherwise. ProjectE and
  // Expand then run row by row over the pattern of one row.
  std::vector<std::int32_t> row_class_of;
  std::int32_t row_num_classes = 0;
  // When !is_tie: an orthonormal basis of E, (rows*cols) x dim.
  Eigen::MatrixXd basis;
  std::int64_t num_zero = 0;  // entries equal to 0 for every W in E
  SolveMethod method = SolveMethod::kUnionFind;
  std::int64_t num_tie_constraints = 0;      // constraints solved by union-find
  std::int64_t num_general_constraints = 0;  // constraints solved numerically

  std::int64_t ambient_size() const { return rows * cols; }
  // out = Pi_E w (rows*cols values); w and out may be the same array. For
  // ties this is TieSubspace<double>::ProjectInPlace (the scatter-mean), on a
  // TieSubspace built from the pattern at each call (O(cols) when
  // row_class_of is set, O(rows*cols) otherwise): to project many times,
  // build MakeManifold<T>(*this) once.
  // Requires: the tie fields form a valid pattern (as Solve returns them);
  // otherwise InvalidArgument names the bad entry and out is untouched.
  void ProjectE(const double* w, double* out) const;
  // w = the member of E with coordinates theta (dim values): for ties
  // w_a = theta_class(a) (TieSubspace<double>::Expand), otherwise
  // w = basis * theta.
  void Expand(const double* theta, double* w) const;
};

// Requires: the problem is well formed (checked when it was built); the
// nullspace path, when needed, is within the SolveOptions size limits
// (otherwise InvalidArgument says by how much).
Solution Solve(const ConstraintProblem& problem,
               const SolveOptions& options = SolveOptions());

// The manifold of E for the optimizers: a TieSubspace<T> (with `metric`) when
// solution.is_tie, otherwise a LinearSubspace<T> holding solution.basis.
// Ensures: Dim() == solution.dim and its projection is solution.ProjectE.
template <typename T>
std::unique_ptr<Manifold<T>> MakeManifold(
    const Solution& solution, TieMetric metric = TieMetric::kEmbedded);

// If the column space of `basis` (n x d, orthonormal columns, n = rows*cols)
// is a tie subspace, returns true and fills *pattern: entries whose basis rows
// vanish are zeros, entries with equal rows share a class, and the classes are
// verified to be exactly d with pairwise orthogonal rows. Otherwise false.
bool TiePatternFromBasis(const Eigen::MatrixXd& basis,
                         std::int64_t rows,
                         std::int64_t cols,
                         double tolerance,
                         TiePattern* pattern);

struct CompatibilityReport {
  bool compatible = false;
  double residual = 0.0;     // ||Pi_L Pi_F - Pi_F Pi_L||_2
  std::int64_t dim_fix = 0;  // dim F (constraints without the support)
  std::int64_t dim_e = 0;    // dim E = dim (L intersect F)
  std::int64_t dim_support = 0;
};

// Pi_L against Pi_F, F the solution of the problem without its support. A
// residual <= tolerance counts as compatible.
CompatibilityReport CheckCompatibility(
    const ConstraintProblem& problem,
    const SolveOptions& options = SolveOptions(),
    double tolerance = 1e-9);

}  // namespace symopt
