// Row-major GEMM through cuBLAS (declared in cuda_backend.h). cuBLAS is
// column-major: a row-major m x n C is the column-major n x m C^T, and
// C^T = op(B)^T op(A)^T, so the call swaps the operands and m, n.
#include <climits>
#include <cstdio>
#include <map>

#include "check.cuh"
#include "cublas_check.cuh"
#include "cuda_backend.h"

namespace symopt {
namespace cuda {
namespace {

// One handle per thread and device, destroyed when the thread exits.
class ThreadHandles {
 public:
  ~ThreadHandles() {
    for (auto& entry : handles_) CublasDestroy(entry.second);
  }
  cublasHandle_t Get() {
    int device = 0;
    SYMOPT_CUDA_CHECK(cudaGetDevice(&device));
    void*& handle = handles_[device];
    if (handle == nullptr) handle = CublasCreate();
    return static_cast<cublasHandle_t>(handle);
  }

 private:
  std::map<int, void*> handles_;
};

cublasHandle_t ThreadHandle(cudaStream_t stream) {
  thread_local ThreadHandles handles;
  cublasHandle_t handle = handles.Get();
  SYMOPT_CUBLAS_CHECK(cublasSetStream(handle, stream));
  return handle;
}

void CheckInt(std::int64_t v, const char* what) {
  SYMOPT_CHECK(v >= 0 && v <= INT_MAX,
               "Gemm: " << what << " = " << v << " does not fit cuBLAS's int");
}

cublasStatus_t GemmCall(cublasHandle_t h,
                        cublasOperation_t ta,
                        cublasOperation_t tb,
                        int m,
                        int n,
                        int k,
                        const float* alpha,
                        const float* a,
                        int lda,
                        const float* b,
                        int ldb,
                        const float* beta,
                        float* c,
                        int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

cublasStatus_t GemmCall(cublasHandle_t h,
                        cublasOperation_t ta,
                        cublasOperation_t tb,
                        int m,
                        int n,
                        int k,
                        const double* alpha,
                        const double* a,
                        int lda,
                        const double* b,
                        int ldb,
                        const double* beta,
                        double* c,
                        int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace

template <typename T>
void Gemm(bool trans_a,
          bool trans_b,
          std::int64_t m,
          std::int64_t n,
          std::int64_t k,
          T alpha,
          const T* d_a,
          std::int64_t lda,
          const T* d_b,
          std::int64_t ldb,
          T beta,
          T* d_c,
          std::int64_t ldc,
          cudaStream_t stream) {
  CheckInt(m, "m");
  CheckInt(n, "n");
  CheckInt(k, "k");
  CheckInt(lda, "lda");
  CheckInt(ldb, "ldb");
  CheckInt(ldc, "ldc");
  if (m == 0 || n == 0) return;
  // Column-major: C^T (n x m) = op(B)^T (n x k) * op(A)^T (k x m).
  SYMOPT_CUBLAS_CHECK(GemmCall(ThreadHandle(stream),
                               trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                               trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                               int(n),
                               int(m),
                               int(k),
                               &alpha,
                               d_b,
                               int(ldb),
                               d_a,
                               int(lda),
                               &beta,
                               d_c,
                               int(ldc)));
}

#define SYMOPT_INSTANTIATE_GEMM(T)    \
  template void Gemm<T>(bool,         \
                        bool,         \
                        std::int64_t, \
                        std::int64_t, \
                        std::int64_t, \
                        T,            \
                        const T*,     \
                        std::int64_t, \
                        const T*,     \
                        std::int64_t, \
                        T,            \
                        T*,           \
                        std::int64_t, \
                        cudaStream_t);
SYMOPT_INSTANTIATE_GEMM(float)
SYMOPT_INSTANTIATE_GEMM(double)
#undef SYMOPT_INSTANTIATE_GEMM

}  // namespace cuda
}  // namespace symopt
