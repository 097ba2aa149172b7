// Host BLAS-1 primitives on contiguous arrays (private to the library).
// Dot products and norms accumulate in double whatever T is, so float
// parameters keep unit norms to ~1e-7 however long the rows are.
#pragma once

#include <cmath>
#include <cstdint>

namespace symopt {
namespace cpu {

template <typename T>
inline double Dot(const T* a, const T* b, std::int64_t n) {
  double s = 0.0;
  for (std::int64_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

template <typename T>
inline double SquaredNorm(const T* a, std::int64_t n) {
  return Dot(a, a, n);
}

// y <- alpha * x + beta * y
template <typename T>
inline void Axpby(T alpha, const T* x, T beta, T* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = alpha * x[i] + beta * y[i];
}

template <typename T>
inline void Scale(T alpha, T* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

template <typename T>
inline void Copy(const T* x, T* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = x[i];
}

template <typename T>
inline void Fill(T value, T* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) x[i] = value;
}

// Index of the first non-finite entry, or -1 when all are finite.
template <typename T>
inline std::int64_t FirstNonFinite(const T* x, std::int64_t n) {
  // Vectorisable screen first (a sum of x*0 is NaN iff some x is NaN or Inf),
  // then a scalar search only when something was found.
  T acc = T(0);
  for (std::int64_t i = 0; i < n; ++i) acc += x[i] * T(0);
  if (acc == T(0)) return -1;
  for (std::int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return i;
  }
  return -1;
}

}  // namespace cpu
}  // namespace symopt
