// cuBLAS status checks (STYLE E3): every cuBLAS call is wrapped in
// SYMOPT_CUBLAS_CHECK, which throws symopt::Error naming the call, file, line
// and cuBLAS's status string.
#pragma once

#include <cublas_v2.h>

#include <string>

#include "manifolds/check.h"

#define SYMOPT_CUBLAS_CHECK(expr)                                          \
  do {                                                                     \
    const cublasStatus_t symopt_cublas_status_ = (expr);                   \
    if (symopt_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                  \
      throw ::symopt::Error(std::string(__FILE__) + ":" +                  \
                            std::to_string(__LINE__) +                     \
                            ": " #expr " failed: " +                       \
                            cublasGetStatusString(symopt_cublas_status_)); \
    }                                                                      \
  } while (0)
