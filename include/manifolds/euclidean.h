// Euclidean(rows, cols): the whole ambient space R^{rows x cols}.
//
// Every operation is the identity or plain vector arithmetic:
//   P_x(u) = u,  R_x(v) = x + v,  T_{x->y}(v) = v,  <u, v> = sum_i u_i v_i,
//   B(x) = I,  dim = rows * cols.
// Used for biases and batch-norm scale/shift. Weight decay acts as the usual
// L2 penalty: the step descends along g + wd * x.
#pragma once

#include "manifolds/manifold.h"

namespace symopt {

template <typename T>
class Euclidean final : public Manifold<T> {
 public:
  using typename Manifold<T>::View;
  using typename Manifold<T>::ConstView;

  Euclidean(std::int64_t rows, std::int64_t cols) : Manifold<T>(rows, cols) {}

  std::int64_t Dim() const override { return this->AmbientSize(); }
  std::string Name() const override { return "euclidean"; }

 protected:
  void ProjectPointImpl(View x) const override;
  void ProjectImpl(ConstView x, View u) const override;
  RetractReport RetractImpl(View x, ConstView v) const override;
  void InverseRetractImpl(ConstView x, ConstView y, View v) const override;
  void TransportImpl(ConstView x_old, ConstView x_new, View v) const override;
  double DistanceToManifoldImpl(ConstView x) const override;
  void TangentBasisMultiplyImpl(ConstView x,
                                const T* coeffs,
                                View v) const override;
  void TangentBasisTransposeMultiplyImpl(ConstView x,
                                         ConstView u,
                                         T* coeffs) const override;
  RetractReport StepImpl(View x,
                         ConstView g,
                         View m,
                         const StepOptions& options) const override;
};

extern template class Euclidean<float>;
extern template class Euclidean<double>;

}  // namespace symopt
