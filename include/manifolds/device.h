// Device memory, streams and timing for the CUDA backend, usable from plain
// C++ (this header includes no CUDA header and compiles in every build).
//
// A TensorView's `device` says where its data lives; the same manifold and
// optimizer code runs on either (the dispatch point, src/backend/dispatch.cpp,
// routes a Device::kCuda view to the CUDA kernels). This header supplies what
// a caller needs to put data there:
//
//   DeviceBuffer<T>   RAII device allocation (plain cudaMalloc; no managed
//                     memory); View() gives a Device::kCuda TensorView.
//   Stream            RAII non-blocking CUDA stream.
//   Copy(src, dst)    explicit copy between views on any pair of devices.
//   DeviceTimer       CUDA-event timing of work on a stream (benchmarks).
//   FirstNonFinite    NaN/Inf screen of a view on either device.
//
// Build and run-time behaviour: in a build without CUDA (SYMOPT_WITH_CUDA
// off) every operation that needs the GPU throws NotCompiledError; in a CUDA
// build on a machine without a device it throws Error naming the cause
// ("no CUDA-capable device is detected"). CudaDeviceCount() never throws, so
// callers can test first. Memory is allocated on the current device
// (device 0 unless the caller selected another with the CUDA runtime).
//
// Streams: a null Stream* means the legacy default stream; the manifold
// operations on Device::kCuda views run there and return after their work is
// enqueued, except where they return a value computed on the device (a
// RetractReport, a screen result), which waits for it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "manifolds/check.h"
#include "manifolds/tensor_view.h"

namespace symopt {

// True when this build includes the CUDA backend.
bool CudaCompiled();
// Number of usable CUDA devices: 0 without CUDA, driver or device. Never
// throws.
int CudaDeviceCount();
// Throws NotCompiledError (no CUDA in this build) or Error (no device), with
// `what` in the message, unless a device can be used.
void RequireCudaDevice(const std::string& what);

// A CUDA stream (created non-blocking). Move-only.
class Stream {
 public:
  // Requires: a usable device (see RequireCudaDevice).
  Stream();
  ~Stream();
  Stream(Stream&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Waits until all work enqueued on the stream is done.
  void Synchronize() const;
  // The cudaStream_t, as an opaque pointer.
  void* handle() const { return handle_; }

 private:
  void* handle_ = nullptr;
};

// Waits for all work on the current device.
void DeviceSynchronize();

namespace internal {
// Untyped device memory primitives behind DeviceBuffer and Copy (defined in
// src/backend/device.cpp; NotCompiledError without CUDA).
void* DeviceAllocate(std::size_t bytes);
void DeviceFree(void* d_p) noexcept;
void CopyBytes(void* dst,
               Device dst_device,
               const void* src,
               Device src_device,
               std::size_t bytes,
               const Stream* stream);
void DeviceMemset(void* d_p, int byte, std::size_t bytes, const Stream* stream);
void SynchronizeStream(const Stream* stream);
}  // namespace internal

// An owned, uninitialised array of `size` T in device memory. Move-only.
//
// Ensures: data() is a device pointer (null when size == 0); the memory is
// freed by the destructor (errors there are logged, never thrown).
template <typename T>
class DeviceBuffer {
  static_assert(std::is_trivially_copyable_v<T>,
                "DeviceBuffer holds trivially copyable values only");

 public:
  DeviceBuffer() = default;
  // Requires: size >= 0 and a usable device.
  explicit DeviceBuffer(std::int64_t size) : size_(size) {
    SYMOPT_CHECK(size >= 0, "DeviceBuffer size must be >= 0, got " << size);
    data_ = static_cast<T*>(
        internal::DeviceAllocate(static_cast<std::size_t>(size) * sizeof(T)));
  }
  ~DeviceBuffer() { internal::DeviceFree(data_); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      internal::DeviceFree(data_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // A Device::kCuda view of the first rows * cols entries.
  // Requires: rows, cols >= 0 and rows * cols <= size().
  TensorView<T> View(std::int64_t rows, std::int64_t cols) {
    CheckShape(rows, cols);
    return TensorView<T>(data_, rows, cols, Device::kCuda);
  }
  TensorView<const T> View(std::int64_t rows, std::int64_t cols) const {
    CheckShape(rows, cols);
    return TensorView<const T>(data_, rows, cols, Device::kCuda);
  }

  // Copies size() values from / to host memory (synchronous: returns when the
  // copy is done). Requires: host points to size() values.
  void CopyFromHost(const T* host) {
    internal::CopyBytes(
        data_, Device::kCuda, host, Device::kCpu, Bytes(), nullptr);
    internal::SynchronizeStream(nullptr);
  }
  void CopyToHost(T* host) const {
    internal::CopyBytes(
        host, Device::kCpu, data_, Device::kCuda, Bytes(), nullptr);
    internal::SynchronizeStream(nullptr);
  }
  // Sets every byte to `byte` (e.g. 0xFF: every float/double becomes NaN, to
  // poison outputs in tests), enqueued on `stream`.
  void FillBytes(unsigned char byte, const Stream* stream = nullptr) {
    internal::DeviceMemset(data_, byte, Bytes(), stream);
  }

 private:
  std::size_t Bytes() const {
    return static_cast<std::size_t>(size_) * sizeof(T);
  }
  void CheckShape(std::int64_t rows, std::int64_t cols) const {
    SYMOPT_CHECK(rows >= 0 && cols >= 0 && rows * cols <= size_,
                 "DeviceBuffer of " << size_ << " values cannot hold a " << rows
                                    << "x" << cols << " view");
  }

  T* data_ = nullptr;
  std::int64_t size_ = 0;
};

// dst <- src for views on any devices (host/device in either direction, or
// within one device), enqueued on `stream` (null: the default stream);
// host-side copies are synchronous, and a copy to the host waits for its
// data before returning.
// Requires: equal shapes; the views do not overlap.
template <typename T>
void Copy(TensorView<const T> src,
          TensorView<T> dst,
          const Stream* stream = nullptr) {
  SYMOPT_CHECK(src.rows == dst.rows && src.cols == dst.cols,
               "Copy: source is " << src << ", destination " << dst);
  SYMOPT_CHECK((src.data != nullptr && dst.data != nullptr) || src.size() == 0,
               "Copy: null view");
  internal::CopyBytes(dst.data,
                      dst.device,
                      src.data,
                      src.device,
                      static_cast<std::size_t>(src.size()) * sizeof(T),
                      stream);
  if (dst.device == Device::kCpu && src.device == Device::kCuda) {
    internal::SynchronizeStream(stream);
  }
}

template <typename T>
void Copy(TensorView<T> src,
          TensorView<T> dst,
          const Stream* stream = nullptr) {
  Copy(TensorView<const T>(src), dst, stream);
}

// Times work enqueued on a stream between Start() and Stop() with CUDA
// events (STYLE B1: GPU benchmarks use UseManualTime with these).
class DeviceTimer {
 public:
  // Requires: a usable device.
  DeviceTimer();
  ~DeviceTimer();
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;

  void Start(const Stream* stream = nullptr);
  void Stop(const Stream* stream = nullptr);
  // Seconds between the last Start and Stop; waits for Stop's event.
  double ElapsedSeconds() const;

 private:
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

// Index (row-major, 0-based) of the first NaN or Inf of v, or -1 when every
// entry is finite. Works on host and device views (the device version is a
// CUB reduction and waits for its result). Requires: v.data non-null unless
// v is empty.
template <typename T>
std::int64_t FirstNonFinite(TensorView<const T> v);

extern template std::int64_t FirstNonFinite<float>(TensorView<const float>);
extern template std::int64_t FirstNonFinite<double>(TensorView<const double>);

template <typename T, typename = std::enable_if_t<!std::is_const_v<T>>>
std::int64_t FirstNonFinite(TensorView<T> v) {
  return FirstNonFinite(TensorView<const T>(v));
}

}  // namespace symopt
