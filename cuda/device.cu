// Device discovery for the CUDA backend.
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

}  // namespace cuda
}  // namespace symopt
