// TieSubspace: the linear subspace of tied and zeroed weights
//
//   E = { w in R^{rows x cols} : w_a = w_b whenever class(a) = class(b),
//                                w_z = 0 for every z marked zero }.
//
// This is what invariance/equivariance under permutations (and partial
// permutations such as shifts without wrap-around) produces: the constraint
// engine (include/symmetry/) derives the class of every entry and hands it
// over as a TiePattern. The orthogonal projector Pi_E is a scatter-mean (every
// entry becomes the mean of its class; zeros become 0): O(N), no matrix.
//
// Points, tangent vectors and gradients all live in E; T_x E = E, the
// retraction is x + v and transport is the identity. dim E = K, the number of
// classes (the free parameters). Compact coordinates theta in R^K: Expand
// writes x_i = theta_class(i); Fold reads theta_k = mean of class k.
//
// Two metrics, an explicit choice because it changes training (DESIGN.md s.2):
//   kEmbedded  <u, v> = sum_i u_i v_i; Riemannian gradient = Pi_E g (per-class
//              mean). The gradient flow of Nordenfors et al. (004).
//   kShared    <u, v> = sum_k theta(u)_k theta(v)_k (each class counted once);
//              Riemannian gradient = per-class SUM of g written to every
//              member: what weight-sharing CNN code computes (gradient w.r.t.
//              theta).
// The two gradients differ by the factor |class k| per class. Weight decay is
// the Euclidean L2 penalty wd/2 ||x||_F^2 in both (the step descends along
// rgrad(g + wd x)), so under kShared a class is decayed |class k| times as
// strongly as under kEmbedded, exactly as in weight-sharing code.
//
// Tangent basis (TangentBasisMultiply / TangentBasisTransposeMultiply) is
// orthonormal in the metric in use:
//   kEmbedded: b_k = 1_{class k} / sqrt(n_k), coefficients c_k = sum/sqrt(n_k)
//   kShared:   b_k = 1_{class k}, coefficients c_k = mean = theta_k
// Under kShared the coefficient map is the metric adjoint
// B^+ = (B^T B)^{-1} B^T (= Fold), not the Frobenius transpose B^T
// (= FoldSum). A Ceres adapter that builds MinusJacobian as the transpose of
// PlusJacobian, or computes RightMultiplyByPlusJacobian (a Frobenius product
// a B) through TangentBasisTransposeMultiply, is right only for kEmbedded;
// for kShared it must use Fold for Minus/MinusJacobian and FoldSum for a B
// (docs/tie_subspace.md).
//
// Guarantee: every operation that writes a point, tangent vector or momentum
// computes ONE value per class (pairs as a/2 + b/2 in T, the correctly rounded
// mean; larger classes accumulate in double) and stores it in every member, so
// tied entries stay bitwise equal however many steps are taken, and zeroed
// entries stay exactly 0.
//
// Layout (speed comes from memory layout, DESIGN.md s.2): the constructor
// derives from the class ids alone how to store them:
//   kContiguous   every class is a run of consecutive entries: only the run
//                 offsets are stored (zero entries form their own runs);
//   kRowPeriodic  every class lies within one row and row r has the same
//                 partition as row 0 (and the same zeros), e.g. mirror pairs in
//                 every row of a flip-invariant layer: only row 0's member
//                 lists are stored (plus the id of each class when ids are not
//                 simply row 0's shifted by r * classes_per_row);
//   kGeneral      member lists of every class (CSR).
// Member lists are grouped by class size, so pairs, triples, ... run loops of a
// fixed trip count; pairs whose members advance together (mirror pairs) are
// stored as runs of such pairs, whose loops vectorise; in kRowPeriodic, pairs
// forming a short block repeated along the row (mirror pairs inside every
// 6-wide segment) run as pair blocks, whose loops read no member list per
// class. Loops run on OpenMP
// threads over classes/rows for blocks of 64K entries or more. Random class ids
// cost random cache lines; see bench/tie_bench.cpp.
//
// Requires of every pattern: rows * cols < 2^31.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "manifolds/manifold.h"

namespace symopt {

// The class of every entry of a rows x cols block (row-major).
struct TiePattern {
  static constexpr std::int32_t kZero = -1;  // entry forced to 0

  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int32_t num_classes = 0;        // K
  std::vector<std::int32_t> class_of;  // rows*cols ids in [0, K) or kZero

  // True if sizes agree, every id is in range and every class has a member;
  // otherwise false and *error names the first bad entry.
  bool IsValid(std::string* error) const;
};

enum class TieMetric { kEmbedded, kShared };

// How the classes are stored (chosen by the constructor, reported for tests
// and benchmarks).
enum class TieLayout {
  kContiguous,   // every class is a run of consecutive entries: offsets only
  kRowPeriodic,  // the pattern of row 0 repeats in every row (ids shifted)
  kGeneral,      // CSR member lists
};

const char* TieLayoutName(TieLayout layout);

// The per-class maths shared by the CPU loops and the CUDA kernels
// (src/backend/step_ops.h, private to the library).
enum class TieMode : int;
struct TieStepScalars;

template <typename T>
class TieSubspace final : public Manifold<T> {
 public:
  using typename Manifold<T>::View;
  using typename Manifold<T>::ConstView;

  // Requires: pattern.IsValid() (else InvalidArgument naming the first bad
  // entry), rows * cols < 2^31.
  explicit TieSubspace(const TiePattern& pattern,
                       TieMetric metric = TieMetric::kEmbedded);

  std::int64_t Dim() const override { return num_classes_; }
  std::string Name() const override { return "tie_subspace"; }

  TieMetric metric() const { return metric_; }
  TieLayout layout() const { return layout_; }
  std::int64_t NumClasses() const { return num_classes_; }
  std::int64_t NumZeros() const { return num_zeros_; }
  // Classes per row in the kRowPeriodic layout; 0 otherwise.
  std::int64_t ClassesPerRow() const {
    return layout_ == TieLayout::kRowPeriodic ? row_classes_ : 0;
  }
  // Pairs per block of the pair-block loops (kRowPeriodic rows that repeat a
  // short block of pairs, e.g. mirror pairs inside 6-wide segments); 0 when
  // they are not used.
  std::int64_t PairBlockPairs() const { return pair_block_k_; }
  // Bytes of index storage held (offsets, member lists, id maps).
  std::int64_t IndexBytes() const;
  // The class ids again (reconstructed from the stored layout).
  TiePattern Pattern() const;

  // Compact coordinates. theta: NumClasses() host values; x, g: host views of
  // this manifold's shape. theta and the view must not overlap.
  // Expand: x_i = theta_class(i), zeros 0 (x in E on exit).
  void Expand(const T* theta, View x) const;
  // Fold: theta_k = mean of x over class k (Fold(Expand(theta)) = theta).
  void Fold(ConstView x, T* theta) const;
  // FoldSum: theta_k = sum of g over class k: the gradient w.r.t. theta of
  // f(Expand(theta)) when g is the gradient w.r.t. x.
  void FoldSum(ConstView g, T* theta) const;

  // Pi_E applied in place (the same as ProjectPoint / Project). Host view.
  void ProjectInPlace(View u) const;

 protected:
  void ProjectPointImpl(View x) const override;
  void ProjectImpl(ConstView x, View u) const override;
  void EgradToRgradImpl(ConstView x, View g) const override;
  RetractReport RetractImpl(View x, ConstView v) const override;
  void InverseRetractImpl(ConstView x, ConstView y, View v) const override;
  void TransportImpl(ConstView x_old, ConstView x_new, View v) const override;
  double InnerImpl(ConstView x, ConstView u, ConstView v) const override;
  double DistanceToManifoldImpl(ConstView x) const override;
  void RandomPointImpl(View x, std::uint64_t seed) const override;
  void TangentBasisMultiplyImpl(ConstView x,
                                const T* coeffs,
                                View v) const override;
  void TangentBasisTransposeMultiplyImpl(ConstView x,
                                         ConstView u,
                                         T* coeffs) const override;
  // One pass per class: r = mean (kEmbedded) or sum (kShared) of g + wd x over
  // the members, m = beta m + r, x = mean(x) - lr d, written to every member.
  RetractReport StepImpl(View x,
                         ConstView g,
                         View m,
                         const StepOptions& options) const override;

 private:
  // Classes of one size, stored as num_classes x size member indices.
  struct Group {
    std::int32_t size;
    std::int64_t first_class;  // position in class_ids_
    std::int64_t num_classes;
    std::int64_t first_member;  // position in members_
  };
  void BuildGroups(const std::int32_t* local_ids,
                   std::int64_t n,
                   std::int64_t num_local);
  // Visits every class: per_class(id, members) with members.size() and
  // members[j] (flat indices, ascending within a class), then every group of
  // zeroed entries: per_zero(members). With kReduce both return a double and
  // the sum of all returns is returned; otherwise they return nothing. Runs on
  // OpenMP threads for large blocks, so the callbacks may only write entries
  // of the class or group they are given. Member-list layouts prefetch the
  // members of classes ahead in the arrays listed in `prefetch`.
  template <bool kReduce, typename PerClass, typename PerZero>
  double Visit(PerClass&& per_class,
               PerZero&& per_zero,
               std::initializer_list<const T*> prefetch = {}) const;
  // One Visit running TieOps::Class<kMode> (the per-class maths shared with
  // the CUDA kernels) on every class and clearing the zeros: p0 written, p1
  // read, p2 the momentum buffer of a step (null without momentum).
  template <TieMode kMode>
  void RunPass(T* p0, const T* p1, T* p2, const TieStepScalars& s) const;

  TieMetric metric_;
  TieLayout layout_;
  std::int64_t num_classes_ = 0;
  std::int64_t num_zeros_ = 0;
  // kContiguous: blocks of `count` consecutive runs of `length` entries, the
  // i-th of class first_id + i (or `count` = 1 run of zeros when first_id is
  // kZero); they cover all entries in order.
  struct RunBlock {
    std::int64_t start;
    std::int64_t length;
    std::int64_t count;
    std::int32_t first_id;
  };
  std::vector<RunBlock> blocks_;
  // kRowPeriodic (indices are columns of row 0) and kGeneral (flat indices):
  // grouped member lists, the class id at each class position, and zeros.
  std::vector<Group> groups_;
  std::vector<std::int32_t> members_;
  std::vector<std::int32_t> class_ids_;
  std::vector<std::int32_t> zero_members_;
  // kRowPeriodic: classes per row; id_map_[r * row_classes_ + c] is the id of
  // class position c in row r, empty when it is class_ids_[c] + r*row_classes_.
  std::int64_t row_classes_ = 0;
  std::vector<std::int32_t> id_map_;
  // Pairs whose members advance in lock step (class position first_class + c
  // has members first0 + c and first1 + step1 * c, step1 = +1 or -1: mirror
  // pairs, pairs at a fixed distance). When the size-2 group splits into long
  // such runs they replace its lists in the loops, which then vectorise.
  struct PairRun {
    std::int64_t first_class;
    std::int64_t count;
    std::int32_t first0;
    std::int32_t first1;
    std::int32_t step1;
  };
  void BuildPairRuns();
  std::vector<PairRun> pair_runs_;
  // kRowPeriodic, when the size-2 group does not form long pair runs but is a
  // short block of pair_block_k_ pairs repeated every pair_block_period_
  // columns (class position first_class + s * k + q has the members of
  // position first_class + q shifted by s * period; e.g. mirror pairs (w, 5-w)
  // inside every 6-wide segment of a row): the loops then read the 2k member
  // offsets once and run with a compile-time pair count. 0 when unused.
  void BuildPairBlocks();
  std::int32_t pair_block_k_ = 0;
  std::int32_t pair_block_period_ = 0;
};

extern template class TieSubspace<float>;
extern template class TieSubspace<double>;

}  // namespace symopt
