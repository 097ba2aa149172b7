// StateBuffer<T>: an owned array of optimizer state (a momentum buffer, a
// snapshot of a parameter) on a given device: host memory for Device::kCpu,
// device memory (DeviceBuffer, plain cudaMalloc) for Device::kCuda.
//
// This is the one place where the optimizers decide where their state lives
// and how it is copied (STYLE M4/M5): RiemannianSgd keeps every parameter's
// momentum buffer as a StateBuffer on that parameter's device, and the bold
// driver snapshots values and buffers into StateBuffers on the same device,
// so a rollback is a device-to-device copy and never leaves the GPU.
//
// Layout: size() values, contiguous, viewed as rows x cols row-major blocks.
// Copies between a StateBuffer and a view on any pair of devices go through
// Copy (manifolds/device.h): a copy to the host waits for its data, a copy
// within the GPU is enqueued on the default stream (ordered with the
// manifold kernels, which run there too).
//
// Errors: making a kCuda buffer in a build without CUDA throws
// NotCompiledError, and without a device Error (DeviceBuffer's behaviour);
// shape mismatches throw InvalidArgument naming both shapes.
#pragma once

#include <cstdint>
#include <vector>

#include "manifolds/device.h"

namespace symopt {

template <typename T>
class StateBuffer {
 public:
  StateBuffer() = default;
  // size values on `device`, all zero.
  // Requires: size >= 0.
  StateBuffer(std::int64_t size, Device device) : device_(device) {
    SYMOPT_CHECK(size >= 0, "StateBuffer size must be >= 0, got " << size);
    if (device_ == Device::kCpu) {
      host_.assign(std::size_t(size), T(0));
    } else {
      dev_ = DeviceBuffer<T>(size);
      dev_.FillBytes(0);
    }
    size_ = size;
  }
  StateBuffer(StateBuffer&&) noexcept = default;
  StateBuffer& operator=(StateBuffer&&) noexcept = default;
  StateBuffer(const StateBuffer&) = delete;
  StateBuffer& operator=(const StateBuffer&) = delete;

  std::int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  Device device() const { return device_; }
  T* data() { return device_ == Device::kCpu ? host_.data() : dev_.data(); }
  const T* data() const {
    return device_ == Device::kCpu ? host_.data() : dev_.data();
  }

  // A view of the buffer as rows x cols on its device.
  // Requires: rows * cols == size().
  TensorView<T> View(std::int64_t rows, std::int64_t cols) {
    CheckShape(rows, cols);
    return TensorView<T>(data(), rows, cols, device_);
  }
  TensorView<const T> View(std::int64_t rows, std::int64_t cols) const {
    CheckShape(rows, cols);
    return TensorView<const T>(data(), rows, cols, device_);
  }

  // this <- src (any device). Requires: src.size() == size().
  void CopyFrom(TensorView<const T> src) {
    SYMOPT_CHECK(src.size() == size_,
                 "StateBuffer of " << size_ << " values cannot take " << src);
    if (size_ > 0) Copy(src, View(src.rows, src.cols));
  }
  // dst <- this (any device). Requires: dst.size() == size().
  void CopyTo(TensorView<T> dst) const {
    SYMOPT_CHECK(dst.size() == size_,
                 "StateBuffer of " << size_ << " values cannot fill " << dst);
    if (size_ > 0) Copy(View(dst.rows, dst.cols), dst);
  }
  // The values in host memory (a download for a device buffer).
  std::vector<T> ToHost() const {
    std::vector<T> host(static_cast<std::size_t>(size_));
    if (size_ > 0) {
      Copy(View(1, size_), TensorView<T>(host.data(), 1, size_));
    }
    return host;
  }
  // this <- host values. Requires: host.size() == size().
  void FromHost(const std::vector<T>& host) {
    SYMOPT_CHECK(std::int64_t(host.size()) == size_,
                 "StateBuffer of " << size_ << " values cannot take "
                                   << host.size() << " host values");
    CopyFrom(TensorView<const T>(host.data(), 1, size_));
  }

 private:
  void CheckShape(std::int64_t rows, std::int64_t cols) const {
    SYMOPT_CHECK(rows >= 0 && cols >= 0 && rows * cols == size_,
                 "StateBuffer of " << size_ << " values viewed as " << rows
                                   << "x" << cols);
  }

  Device device_ = Device::kCpu;
  std::int64_t size_ = 0;
  std::vector<T> host_;
  DeviceBuffer<T> dev_;
};

}  // namespace symopt
