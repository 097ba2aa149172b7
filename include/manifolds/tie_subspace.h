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
//              Riemannian gradient = per-class SUM of g written to every member:
//              what weight-sharing CNN code computes (gradient w.r.t. theta).
// The two gradients differ by the factor |class k| per class.
//
// Layout: members of each class are kept as contiguous lists (CSR), and the
// constructor recognises structure that needs no index lists at all (classes
// that are contiguous runs; a pattern that repeats row after row). Random
// class ids cost random cache lines; see bench/RESULTS.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "manifolds/manifold.h"

namespace symopt {

// The class of every entry of a rows x cols block (row-major).
struct TiePattern {
  static constexpr std::int32_t kZero = -1;  // entry forced to 0

  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int32_t num_classes = 0;          // K
  std::vector<std::int32_t> class_of;    // rows*cols ids in [0, K) or kZero

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

template <typename T>
class TieSubspace final : public Manifold<T> {
 public:
  using typename Manifold<T>::View;
  using typename Manifold<T>::ConstView;

  // Requires: pattern.IsValid().
  explicit TieSubspace(const TiePattern& pattern,
                       TieMetric metric = TieMetric::kEmbedded);

  std::int64_t Dim() const override;
  std::string Name() const override { return "tie_subspace"; }

  TieMetric metric() const;
  TieLayout layout() const;
  std::int64_t NumClasses() const;
  std::int64_t NumZeros() const;
  // The class ids again (reconstructed from the stored layout).
  TiePattern Pattern() const;

  // Compact coordinates. theta: NumClasses() host values.
  void Expand(const T* theta, View x) const;      // x_i = theta_class(i)
  void Fold(ConstView x, T* theta) const;         // theta_k = mean of class k
  void FoldSum(ConstView g, T* theta) const;      // theta_k = sum of class k
  // ... (implementation-specific members follow in the full header)
};

}  // namespace symopt
