// CUDA error checks (STYLE E3). Every CUDA API call is wrapped in
// SYMOPT_CUDA_CHECK; every launch is followed by
// SYMOPT_CUDA_CHECK(cudaGetLastError()). Destructors use the logging,
// non-throwing variant.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <sstream>

#include "manifolds/check.h"

#define SYMOPT_CUDA_CHECK(expr)                                    \
  do {                                                             \
    const cudaError_t symopt_cuda_status_ = (expr);                \
    if (symopt_cuda_status_ != cudaSuccess) {                      \
      std::ostringstream symopt_cuda_os_;                          \
      symopt_cuda_os_ << __FILE__ << ":" << __LINE__ << ": " #expr \
                      << " failed: "                               \
                      << cudaGetErrorString(symopt_cuda_status_);  \
      throw ::symopt::Error(symopt_cuda_os_.str());                \
    }                                                              \
  } while (0)

#define SYMOPT_CUDA_CHECK_NOTHROW(expr)                      \
  do {                                                       \
    const cudaError_t symopt_cuda_status_ = (expr);          \
    if (symopt_cuda_status_ != cudaSuccess) {                \
      std::fprintf(stderr,                                   \
                   "%s:%d: %s failed: %s\n",                 \
                   __FILE__,                                 \
                   __LINE__,                                 \
                   #expr,                                    \
                   cudaGetErrorString(symopt_cuda_status_)); \
    }                                                        \
  } while (0)
