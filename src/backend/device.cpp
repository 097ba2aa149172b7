// manifolds/device.h: device memory, streams and timers over the CUDA
// backend's plain entry points (cuda/cuda_backend.h), or NotCompiledError in a
// build without CUDA.
#include "manifolds/device.h"

#include <cstring>

#include "symopt_config.h"
#if SYMOPT_WITH_CUDA
#include "cuda_backend.h"
#endif

namespace symopt {
namespace {

#if SYMOPT_WITH_CUDA
cudaStream_t Handle(const Stream* stream) {
  return stream != nullptr ? static_cast<cudaStream_t>(stream->handle())
                           : nullptr;
}
#else
[[noreturn]] void NoCuda(const std::string& what) {
  throw NotCompiledError(what +
                         " needs the CUDA backend, and this build of symopt "
                         "has none (configure with -DSYMOPT_WITH_CUDA=ON on a "
                         "machine with nvcc)");
}
#endif

}  // namespace

bool CudaCompiled() {
#if SYMOPT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int CudaDeviceCount() {
#if SYMOPT_WITH_CUDA
  return cuda::DeviceCount();
#else
  return 0;
#endif
}

void RequireCudaDevice(const std::string& what) {
#if SYMOPT_WITH_CUDA
  if (cuda::DeviceCount() > 0) return;
  throw Error(what + " needs a CUDA device, and none is present (" +
              cuda::DeviceCountError() + ")");
#else
  NoCuda(what);
#endif
}

Stream::Stream() {
  RequireCudaDevice("Stream");
#if SYMOPT_WITH_CUDA
  handle_ = cuda::StreamCreate();
#endif
}

Stream::~Stream() {
#if SYMOPT_WITH_CUDA
  cuda::StreamDestroy(static_cast<cudaStream_t>(handle_));
#endif
}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
#if SYMOPT_WITH_CUDA
    cuda::StreamDestroy(static_cast<cudaStream_t>(handle_));
#endif
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

void Stream::Synchronize() const {
#if SYMOPT_WITH_CUDA
  cuda::StreamSynchronize(static_cast<cudaStream_t>(handle_));
#endif
}

void DeviceSynchronize() {
#if SYMOPT_WITH_CUDA
  RequireCudaDevice("DeviceSynchronize");
  cuda::DeviceSynchronize();
#else
  NoCuda("DeviceSynchronize");
#endif
}

namespace internal {

void* DeviceAllocate(std::size_t bytes) {
#if SYMOPT_WITH_CUDA
  RequireCudaDevice("DeviceBuffer");
  return cuda::Malloc(bytes);
#else
  (void)bytes;
  NoCuda("DeviceBuffer");
#endif
}

void DeviceFree(void* d_p) noexcept {
#if SYMOPT_WITH_CUDA
  cuda::Free(d_p);
#else
  (void)d_p;  // nothing can have been allocated
#endif
}

void CopyBytes(void* dst,
               Device dst_device,
               const void* src,
               Device src_device,
               std::size_t bytes,
               const Stream* stream) {
  if (bytes == 0) return;
  if (dst_device == Device::kCpu && src_device == Device::kCpu) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if SYMOPT_WITH_CUDA
  RequireCudaDevice("Copy to or from a GPU view");
  if (dst_device == Device::kCuda && src_device == Device::kCuda) {
    cuda::CopyDeviceToDevice(dst, src, bytes, Handle(stream));
  } else if (dst_device == Device::kCuda) {
    cuda::CopyHostToDevice(dst, src, bytes, Handle(stream));
  } else {
    cuda::CopyDeviceToHost(dst, src, bytes, Handle(stream));
  }
#else
  (void)stream;
  NoCuda("Copy to or from a GPU view");
#endif
}

void DeviceMemset(void* d_p,
                  int byte,
                  std::size_t bytes,
                  const Stream* stream) {
#if SYMOPT_WITH_CUDA
  if (bytes == 0) return;
  cuda::Memset(d_p, byte, bytes, Handle(stream));
#else
  (void)d_p;
  (void)byte;
  (void)bytes;
  (void)stream;
  NoCuda("DeviceBuffer::FillBytes");
#endif
}

void SynchronizeStream(const Stream* stream) {
#if SYMOPT_WITH_CUDA
  if (CudaDeviceCount() == 0) return;  // nothing can be pending
  cuda::StreamSynchronize(Handle(stream));
#else
  (void)stream;
#endif
}

}  // namespace internal

DeviceTimer::DeviceTimer() {
  RequireCudaDevice("DeviceTimer");
#if SYMOPT_WITH_CUDA
  start_ = cuda::EventCreate();
  try {
    stop_ = cuda::EventCreate();
  } catch (...) {
    cuda::EventDestroy(start_);
    throw;
  }
#endif
}

DeviceTimer::~DeviceTimer() {
#if SYMOPT_WITH_CUDA
  cuda::EventDestroy(start_);
  cuda::EventDestroy(stop_);
#endif
}

void DeviceTimer::Start(const Stream* stream) {
#if SYMOPT_WITH_CUDA
  cuda::EventRecord(start_, Handle(stream));
#else
  (void)stream;
#endif
}

void DeviceTimer::Stop(const Stream* stream) {
#if SYMOPT_WITH_CUDA
  cuda::EventRecord(stop_, Handle(stream));
#else
  (void)stream;
#endif
}

double DeviceTimer::ElapsedSeconds() const {
#if SYMOPT_WITH_CUDA
  return 1e-3 * double(cuda::EventElapsedMs(start_, stop_));
#else
  return 0.0;
#endif
}

}  // namespace symopt
