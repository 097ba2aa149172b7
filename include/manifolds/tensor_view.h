// TensorView: a non-owning view of a row-major rows x cols block of T, in host
// or device memory. Every manifold and optimizer operation takes whole blocks
// through views, so one virtual call is made per block, never per element
// (STYLE M3). A conv weight [out, in, kh, kw] is viewed as out x (in*kh*kw).
//
// Views never own memory: the user's own buffers (raw pointers, Eigen maps,
// framework tensors) are used in place, without a copy.
#pragma once

#include <cstdint>
#include <ostream>
#include <type_traits>

namespace symopt {

enum class Device : std::uint8_t { kCpu = 0, kCuda = 1 };

inline const char* DeviceName(Device d) {
  return d == Device::kCpu ? "cpu" : "cuda";
}

template <typename T>
struct TensorView {
  T* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  Device device = Device::kCpu;

  TensorView() = default;
  TensorView(T* d, std::int64_t r, std::int64_t c, Device dev = Device::kCpu)
      : data(d), rows(r), cols(c), device(dev) {}

  // A view of mutable T converts to a view of const T.
  template <typename U,
            typename = std::enable_if_t<std::is_same_v<const U, T> &&
                                        !std::is_same_v<U, T>>>
  TensorView(const TensorView<U>& other)  // NOLINT(runtime/explicit)
      : data(other.data),
        rows(other.rows),
        cols(other.cols),
        device(other.device) {}

  std::int64_t size() const { return rows * cols; }
  bool empty() const { return data == nullptr || size() == 0; }
  T* row(std::int64_t r) const { return data + r * cols; }
};

template <typename T>
using ConstTensorView = TensorView<const T>;

// "3x4 (cpu)"
template <typename T>
std::ostream& operator<<(std::ostream& os, const TensorView<T>& v) {
  return os << v.rows << "x" << v.cols << " (" << DeviceName(v.device) << ")";
}

}  // namespace symopt
