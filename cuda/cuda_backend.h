// Plain C++ declarations of the CUDA backend's entry points (STYLE M4): no
// CUDA headers here, so host code can include it. Defined in cuda/*.cu.
// Pointers named d_* are device memory.
#pragma once

#include <string>

namespace symopt {
namespace cuda {

// Number of usable CUDA devices; 0 when there is none or no driver (never
// throws, so test mains can skip cleanly).
int DeviceCount();
// Why DeviceCount() returned 0 ("no CUDA-capable device is detected", ...).
std::string DeviceCountError();
// The device's name, e.g. "NVIDIA H100 80GB HBM3".
std::string DeviceName(int device);

}  // namespace cuda
}  // namespace symopt
