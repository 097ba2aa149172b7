// Finite groups acting on a linear layer Y <- X by permutations.
//
// A group G acts on the layer space W in R^{n_out x n_in} through two
// permutation representations, rho_out on Y and rho_in on X (paper 004):
//   g . W = rho_out(g)^{-1} W rho_in(g).
// Invariance (paper 000, w = w T) is the case rho_out = identity; equivariance
// with the same T on both sides (T w = w T) is rho_out = rho_in. The twirl
//   Pi_G(W) = (1/|G|) sum_g rho_out(g)^{-1} W rho_in(g)
// is the orthogonal projector onto Fix(G) = { W : rho_out(g) W = W rho_in(g)
// for all g } (the representations are orthogonal). With gather forms
// (rho(g) x)_k = x_{sigma_g(k)} this reads
//   Pi_G(W)_{j,i} = (1/|G|) sum_g W_{sigma_g(j), tau_g(i)},
// an average over the orbit of (j, i).
//
// FiniteGroup::Generate closes a set of generators under composition (breadth-
// first, with a size limit) and checks the declared kind:
//   cyclic of order n    |G| = n and some element has order n;
//   dihedral D_n         |G| = 2n, some r has order n and every element
//                        outside <r> is an involution (this characterises
//                        D_n: s r s = r^{-1} follows from (s r)^2 = 1);
//   any (order n)        |G| = n (n = 0: no check).
// Elements are stored as gather permutations of n_out + n_in points, so memory
// is |G| * (n_out + n_in) 32-bit integers.
//
// Named generating sets (all derived from Transform index maps):
//   CyclicShiftGroup(shape, axis)   Z_m, shift by one with wrap;
//   FlipGroup(shape, axes)          (Z_2)^k, one flip per axis;
//   C4Group(shape, a, b)            quarter turns of the (a, b) plane;
//   D4Group(shape, a, b)            quarter turn and a flip of axis b;
//   P4FilterGroup(shape, r, a, b)   Cohen & Welling's action on P4 filters:
//                                   quarter turn of (a, b) and cyclic shift of
//                                   the rotation axis r.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "symmetry/transform.h"

namespace symopt {

struct GroupKind {
  enum class Type { kAny, kCyclic, kDihedral };
  Type type = Type::kAny;
  std::int64_t n = 0;  // cyclic: order n; dihedral: order 2n; any: order n

  static GroupKind Any(std::int64_t order = 0) { return {Type::kAny, order}; }
  static GroupKind Cyclic(std::int64_t n) { return {Type::kCyclic, n}; }
  static GroupKind Dihedral(std::int64_t n) { return {Type::kDihedral, n}; }
  std::int64_t Order() const { return type == Type::kDihedral ? 2 * n : n; }
  std::string ToString() const;  // "cyclic of order 4", "dihedral D4 (order 8)"
};

// Generators of a group acting on one index space, with their declared kind.
struct GeneratorSet {
  std::vector<Transform> generators;
  GroupKind kind;
};

GeneratorSet CyclicShiftGroup(const Shape& shape, int axis);
GeneratorSet FlipGroup(const Shape& shape, const std::vector<int>& axes);
GeneratorSet C4Group(const Shape& shape, int axis_a, int axis_b);
GeneratorSet D4Group(const Shape& shape, int axis_a, int axis_b);
GeneratorSet P4FilterGroup(const Shape& shape,
                           int rotation_axis,
                           int axis_a,
                           int axis_b);

// How one generator acts on the output space (rho_out) and the input space
// (rho_in) of a layer.
struct LayerGenerator {
  Transform out;
  Transform in;
};

// rho_out = identity on out_shape, rho_in = the set's generators.
std::vector<LayerGenerator> InvarianceAction(const Shape& out_shape,
                                             const GeneratorSet& in);
// rho_out = rho_in = the set's generators (Y and X are the same space).
std::vector<LayerGenerator> EquivarianceAction(const GeneratorSet& set);
// Generator k acts by out.generators[k] on Y and in.generators[k] on X.
// Requires: equal numbers of generators.
std::vector<LayerGenerator> RepresentationAction(const GeneratorSet& out,
                                                 const GeneratorSet& in);

class FiniteGroup {
 public:
  // Closes the generators under composition and checks the declared kind.
  // Requires (else InvalidArgument naming the generator or the mismatch):
  //   at least one generator; all outs share one shape, all ins another;
  //   every transform is a permutation; the closure has at most max_order
  //   elements; the closure is a group of the declared kind.
  static FiniteGroup Generate(std::vector<LayerGenerator> generators,
                              GroupKind declared,
                              std::int64_t max_order = 4096);

  std::int64_t order() const { return order_; }
  const Shape& out_shape() const { return out_shape_; }
  const Shape& in_shape() const { return in_shape_; }
  const std::vector<LayerGenerator>& generators() const { return generators_; }
  GroupKind kind() const { return kind_; }

  // Gather forms of rho_out(g_e) (n_out entries) and rho_in(g_e) (n_in
  // entries) for element e in [0, order()); element 0 is the identity.
  const std::int32_t* OutPermutation(std::int64_t e) const;
  const std::int32_t* InPermutation(std::int64_t e) const;
  // The order of element e (lcm of its cycle lengths).
  std::int64_t ElementOrder(std::int64_t e) const;
  // True if the generators commute pairwise.
  bool IsAbelian() const;

  // out = Pi_G(w), the literal group average above. w and out are row-major
  // n_out x n_in and must not alias. O(|G| n_out n_in).
  void Twirl(const double* w, double* out) const;

 private:
  FiniteGroup() = default;

  Shape out_shape_;
  Shape in_shape_;
  std::vector<LayerGenerator> generators_;
  GroupKind kind_;
  std::int64_t order_ = 0;
  std::int64_t width_ = 0;              // n_out + n_in
  std::vector<std::int32_t> elements_;  // order_ x width_
};

}  // namespace symopt
