#include "manifolds/euclidean.h"

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
template <typename T>
RetractReport Euclidean<T>::StepImpl(View x,
                                     ConstView g,
                                     View m,
                                     const StepOptions& o) const {
  const std::int64_t n = x.size();
  const T lr = T(o.lr), beta = T(o.momentum), wd = T(o.weight_decay);
  T* __restrict xs = x.data;
  const T* __restrict gs = g.data;
  if (o.momentum == 0.0) {
    for (std::int64_t i = 0; i < n; ++i) xs[i] -= lr * (gs[i] + wd * xs[i]);
    return {};
  }
  T* __restrict ms = m.data;
  if (o.nesterov) {
    for (std::int64_t i = 0; i < n; ++i) {
      const T r = gs[i] + wd * xs[i];
      const T mi = beta * ms[i] + r;
      ms[i] = mi;
      xs[i] -= lr * (r + beta * mi);
    }
  } else {
    for (std::int64_t i = 0; i < n; ++i) {
      const T mi = beta * ms[i] + (gs[i] + wd * xs[i]);
      ms[i] = mi;
      xs[i] -= lr * mi;
    }
  }
  return {};
}

template class Euclidean<float>;
template class Euclidean<double>;

}  // namespace symopt
