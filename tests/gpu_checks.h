// Helpers of the GPU parity tests (STYLE T5, T7): device buffers between
// poisoned guard zones, and the symmetric relative error. Included only by
// tests/*_gpu_test.cpp (they run with a device; see tests/gpu_main.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "catch.h"
#include "manifolds/device.h"

namespace symopt {
namespace testing {

constexpr std::int64_t kGuard = 1024;  // poisoned elements on either side

// A device copy of a host array, between poisoned guard zones.
template <typename T>
class Guarded {
 public:
  Guarded(const std::vector<T>& host, std::int64_t rows, std::int64_t cols)
      : n_(std::int64_t(host.size())),
        rows_(rows),
        cols_(cols),
        buffer_(n_ + 2 * kGuard) {
    REQUIRE(rows * cols == n_);
    buffer_.FillBytes(0xFF);
    Copy(TensorView<const T>(host.data(), rows, cols), view());
  }
  TensorView<T> view() {
    return TensorView<T>(buffer_.data() + kGuard, rows_, cols_, Device::kCuda);
  }
  TensorView<const T> cview() { return view(); }
  // The data back on the host (the receiving buffer is NaN first) and a
  // check that no byte of the guard zones changed.
  std::vector<T> Host() {
    std::vector<T> all(std::size_t(n_ + 2 * kGuard),
                       std::numeric_limits<T>::quiet_NaN());
    buffer_.CopyToHost(all.data());
    const unsigned char* bytes =
        reinterpret_cast<const unsigned char*>(all.data());
    const std::size_t guard_bytes = std::size_t(kGuard) * sizeof(T);
    const std::size_t tail = std::size_t(kGuard + n_) * sizeof(T);
    bool intact = true;
    for (std::size_t b = 0; b < guard_bytes; ++b) {
      intact = intact && bytes[b] == 0xFF && bytes[tail + b] == 0xFF;
    }
    CHECK(intact);
    return std::vector<T>(all.begin() + kGuard, all.begin() + kGuard + n_);
  }

 private:
  std::int64_t n_, rows_, cols_;
  DeviceBuffer<T> buffer_;
};

// max_i e(a_i, b_i), the symmetric relative error above.
template <typename T>
double MaxSymmetricError(const std::vector<T>& a,
                         const std::vector<T>& b,
                         double floor) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], y = b[i];
    if (std::isnan(x) || std::isnan(y))
      return std::numeric_limits<double>::infinity();
    const double scale = std::max({std::abs(x), std::abs(y), floor});
    worst = std::max(worst, std::abs(x - y) / scale);
  }
  return worst;
}

// The root mean square of v: the data's scale, the floor of comparisons
// where a result may cancel to ~0 while its operands are O(1) (a tie class
// value x + v, a projection), so that an ulp of the operands is not divided
// by a tiny result.
template <typename T>
double Rms(const std::vector<T>& v) {
  double s = 0;
  for (const T e : v) s += double(e) * double(e);
  return std::max(std::sqrt(s / double(std::max<std::size_t>(v.size(), 1))),
                  1e-30);
}

}  // namespace testing
}  // namespace symopt
