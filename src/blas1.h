// Host BLAS-1 primitives on contiguous arrays (private to the library).
// Dot products and norms accumulate in double whatever T is, so float
// parameters keep unit norms to ~1e-7 however long the rows are.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace symopt {
namespace cpu {

// Eight independent partial sums (a fixed order, so the result is
// deterministic): one running sum would be bound by the adder's latency
// (~4 cycles an entry; it made RiemannianSgd::GradientNorm cost 3x a step),
// eight are bound by its throughput and vectorise without -ffast-math.
template <typename T>
inline double Dot(const T* a, const T* b, std::int64_t n) {
  double s[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) s[k] += double(a[i + k]) * double(b[i + k]);
  }
  double tail = 0.0;
  for (; i < n; ++i) tail += double(a[i]) * double(b[i]);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) +
         tail;
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

// Index of the first NaN/Inf entry of x, or -1 when all are finite. The
// optimizers run this on every gradient before every step, so the first pass
// tests the exponent bits with integer operations (an OR-reduction the
// compiler vectorises; a floating-point reduction would not be reordered
// without -ffast-math); only when it finds something does a scalar pass
// locate the entry.
template <typename T>
inline std::int64_t FirstNonFinite(const T* x, std::int64_t n) {
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr Bits kExponent =
      sizeof(T) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
  // Four independent accumulators over blocks of 16 entries, so the OR
  // chain does not bound the vectorised loop (one accumulator ran at about
  // half the cache bandwidth).
  Bits acc[4] = {0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int k = 0; k < 16; ++k) {
      Bits b;
      std::memcpy(&b, x + i + k, sizeof(T));
      acc[k % 4] |= Bits((b & kExponent) == kExponent);
    }
  }
  Bits found = (acc[0] | acc[1]) | (acc[2] | acc[3]);
  for (; i < n; ++i) {
    Bits b;
    std::memcpy(&b, x + i, sizeof(T));
    found |= Bits((b & kExponent) == kExponent);
  }
  if (found == 0) return -1;
  for (std::int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return i;
  }
  return -1;
}

}  // namespace cpu
}  // namespace symopt
