#include "manifolds/euclidean.h"

#include "backend/step_ops.h"
#include "blas1.h"

namespace symopt {

template <typename T>
void Euclidean<T>::ProjectPointImpl(View /*x*/) const {}

template <typename T>
void Euclidean<T>::ProjectImpl(ConstView /*x*/, View /*u*/) const {}

template <typename T>
RetractReport Euclidean<T>::RetractImpl(View x, ConstView v) const {
  cpu::Axpby(T(1), v.data, T(1), x.data, x.size());
  return {};
}

template <typename T>
void Euclidean<T>::InverseRetractImpl(ConstView x, ConstView y, View v) const {
  for (std::int64_t i = 0; i < v.size(); ++i) v.data[i] = y.data[i] - x.data[i];
}

template <typename T>
void Euclidean<T>::TransportImpl(ConstView, ConstView, View) const {}

template <typename T>
double Euclidean<T>::DistanceToManifoldImpl(ConstView /*x*/) const {
  return 0.0;
}

template <typename T>
void Euclidean<T>::TangentBasisMultiplyImpl(ConstView /*x*/,
                                            const T* coeffs,
                                            View v) const {
  cpu::Copy(coeffs, v.data, v.size());
}

template <typename T>
void Euclidean<T>::TangentBasisTransposeMultiplyImpl(ConstView /*x*/,
                                                     ConstView u,
                                                     T* coeffs) const {
  cpu::Copy(u.data, coeffs, u.size());
}

// One pass: read x, g, m once; write x, m once. With momentum this is exactly
// the "read three arrays, write two" loop the benchmarks use as the floor.
// The per-element maths is EuclideanOps (backend/step_ops.h), shared with the
// CUDA kernel; the branch on the options is hoisted out of each loop.
template <typename T>
RetractReport Euclidean<T>::StepImpl(View x,
                                     ConstView g,
                                     View m,
                                     const StepOptions& o) const {
  const std::int64_t n = x.size();
  const T lr = T(o.lr), beta = T(o.momentum), wd = T(o.weight_decay);
  T* __restrict xs = x.data;
  const T* __restrict gs = g.data;
  T* __restrict ms = o.momentum > 0.0 ? m.data : nullptr;
  if (ms == nullptr) {
    for (std::int64_t i = 0; i < n; ++i) {
      EuclideanOps::Step(xs, gs, ms, lr, beta, wd, false, false, i);
    }
  } else if (o.nesterov) {
    for (std::int64_t i = 0; i < n; ++i) {
      EuclideanOps::Step(xs, gs, ms, lr, beta, wd, true, true, i);
    }
  } else {
    for (std::int64_t i = 0; i < n; ++i) {
      EuclideanOps::Step(xs, gs, ms, lr, beta, wd, true, false, i);
    }
  }
  return {};
}

template class Euclidean<float>;
template class Euclidean<double>;

}  // namespace symopt
