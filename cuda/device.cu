// Devices, memory, streams and events of the CUDA backend: thin checked
// wrappers over the runtime (STYLE E3), so host code never includes CUDA
// headers.
#include <climits>
#include <cstdint>
#include <vector>

#include "check.cuh"
#include "cuda_backend.h"

namespace symopt {
namespace cuda {

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error of a missing driver/device
    return 0;
  }
  return n;
}

std::string DeviceCountError() {
  int n = 0;
  const cudaError_t status = cudaGetDeviceCount(&n);
  cudaGetLastError();
  if (status != cudaSuccess) return cudaGetErrorString(status);
  return n == 0 ? "no device" : "ok";
}

std::string DeviceName(int device) {
  cudaDeviceProp prop;
  SYMOPT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

bool IsDevicePointer(const void* p) {
  cudaPointerAttributes attributes;
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice ||
         attributes.type == cudaMemoryTypeManaged;
}

void* Malloc(std::size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) return nullptr;
  SYMOPT_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void Free(void* d_p) noexcept {
  if (d_p != nullptr) SYMOPT_CUDA_CHECK_NOTHROW(cudaFree(d_p));
}

void CopyHostToDevice(void* d_dst,
                      const void* src,
                      std::size_t bytes,
                      cudaStream_t stream) {
  if (bytes == 0) return;
  SYMOPT_CUDA_CHECK(
      cudaMemcpyAsync(d_dst, src, bytes, cudaMemcpyHostToDevice, stream));
}

void CopyDeviceToHost(void* dst,
                      const void* d_src,
                      std::size_t bytes,
                      cudaStream_t stream) {
  if (bytes == 0) return;
  SYMOPT_CUDA_CHECK(
      cudaMemcpyAsync(dst, d_src, bytes, cudaMemcpyDeviceToHost, stream));
}

void CopyDeviceToDevice(void* d_dst,
                        const void* d_src,
                        std::size_t bytes,
                        cudaStream_t stream) {
  if (bytes == 0) return;
  SYMOPT_CUDA_CHECK(
      cudaMemcpyAsync(d_dst, d_src, bytes, cudaMemcpyDeviceToDevice, stream));
}

void Memset(void* d_dst, int byte, std::size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  SYMOPT_CUDA_CHECK(cudaMemsetAsync(d_dst, byte, bytes, stream));
}

cudaStream_t StreamCreate() {
  cudaStream_t stream = nullptr;
  SYMOPT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return stream;
}

void StreamDestroy(cudaStream_t stream) noexcept {
  if (stream != nullptr) SYMOPT_CUDA_CHECK_NOTHROW(cudaStreamDestroy(stream));
}

void StreamSynchronize(cudaStream_t stream) {
  SYMOPT_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void DeviceSynchronize() { SYMOPT_CUDA_CHECK(cudaDeviceSynchronize()); }

void* EventCreate() {
  cudaEvent_t event = nullptr;
  SYMOPT_CUDA_CHECK(cudaEventCreate(&event));
  return event;
}

void EventDestroy(void* event) noexcept {
  if (event != nullptr) {
    SYMOPT_CUDA_CHECK_NOTHROW(
        cudaEventDestroy(static_cast<cudaEvent_t>(event)));
  }
}

void EventRecord(void* event, cudaStream_t stream) {
  SYMOPT_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), stream));
}

float EventElapsedMs(void* start, void* stop) {
  SYMOPT_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)));
  float ms = 0;
  SYMOPT_CUDA_CHECK(cudaEventElapsedTime(
      &ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(stop)));
  return ms;
}

void RetainPoolMemory() {
  int device = 0;
  SYMOPT_CUDA_CHECK(cudaGetDevice(&device));
  // Devices of this thread whose pool is set (the attribute is per device;
  // setting it again from another thread is harmless).
  thread_local std::vector<bool> done;
  if (device < int(done.size()) && done[std::size_t(device)]) return;
  cudaMemPool_t pool = nullptr;
  SYMOPT_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  std::uint64_t threshold = UINT64_MAX;
  SYMOPT_CUDA_CHECK(cudaMemPoolSetAttribute(
      pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  if (device >= int(done.size())) done.resize(std::size_t(device) + 1, false);
  done[std::size_t(device)] = true;
}

namespace {

__global__ void ResetReportsKernel(DeviceRetractReport* reports, int count) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= count) return;
  reports[i].collapsed_rows = 0;
  reports[i].first_collapsed_row = LLONG_MAX;
}

}  // namespace

void ResetReports(DeviceRetractReport* d_reports,
                  int count,
                  cudaStream_t stream) {
  if (count <= 0) return;
  ResetReportsKernel<<<(count + 255) / 256, 256, 0, stream>>>(d_reports, count);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

HostRetractReport RunWithReport(
    cudaStream_t stream,
    const std::function<void(DeviceRetractReport*)>& launch) {
  void* d_report = nullptr;
  RetainPoolMemory();
  SYMOPT_CUDA_CHECK(
      cudaMallocAsync(&d_report, sizeof(DeviceRetractReport), stream));
  DeviceRetractReport report{0, LLONG_MAX};
  try {
    ResetReports(static_cast<DeviceRetractReport*>(d_report), 1, stream);
    launch(static_cast<DeviceRetractReport*>(d_report));
    CopyDeviceToHost(&report, d_report, sizeof(report), stream);
  } catch (...) {
    SYMOPT_CUDA_CHECK_NOTHROW(cudaFreeAsync(d_report, stream));
    throw;
  }
  SYMOPT_CUDA_CHECK(cudaFreeAsync(d_report, stream));
  StreamSynchronize(stream);
  HostRetractReport out;
  out.collapsed_rows = static_cast<long long>(report.collapsed_rows);
  out.first_collapsed_row =
      report.collapsed_rows > 0 ? report.first_collapsed_row : -1;
  return out;
}

}  // namespace cuda
}  // namespace symopt
