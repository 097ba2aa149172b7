// Plain C++ declarations of the CUDA entry points of the dense and
// element-wise layers and the losses (STYLE M4): no CUDA headers, so the
// dispatch point (src/backend/nn_dense_dispatch.cpp) and the GPU tests can
// include it. Defined in cuda/nn_dense.cu, explicitly instantiated for float
// and double. Every pointer named d_* is device memory; arrays are row-major.
// Every entry point enqueues its work on `stream` and returns, except the
// losses and CountCorrect, which wait for their (host) result. Errors:
// symopt::Error carrying cudaGetErrorString / the cuBLAS status (STYLE E3).
//
// Determinism: no floating-point atomics. Every reduction (column sums,
// batch statistics, row sums, loss totals) is a fixed tree over a grid that
// depends on the sizes only, so a result is bitwise reproducible run to run
// on one device. The maths per element is src/nn_dense_ops.h, shared with the
// CPU loops.
#pragma once

#include <cstdint>

#include "nn_dense_ops.h"

// The runtime's own declaration (driver_types.h), repeated so this header
// needs no CUDA include; an identical typedef may be declared twice.
typedef struct CUstream_st* cudaStream_t;

namespace symopt {
namespace cuda {
namespace dense {

// ---- Linear: y = x W^T + b -------------------------------------------------

// d_y [n, out] = d_x [n, in] d_w^T (+ d_b [out] broadcast over rows when d_b
// is not null). Requires: d_y overlaps no input.
template <typename T>
void LinearForward(const T* d_x,
                   const T* d_w,
                   const T* d_b,
                   T* d_y,
                   std::int64_t n,
                   std::int64_t in,
                   std::int64_t out,
                   cudaStream_t stream);

// d_dw [out, in] += d_dy^T d_x; d_db [out] += column sums of d_dy (when not
// null; summed in double, rounded once, then added); d_dx [n, in] = d_dy d_w
// (when not null). Requires: outputs overlap no input and each other.
template <typename T>
void LinearBackward(const T* d_x,
                    const T* d_w,
                    const T* d_dy,
                    T* d_dw,
                    T* d_db,
                    T* d_dx,
                    std::int64_t n,
                    std::int64_t in,
                    std::int64_t out,
                    cudaStream_t stream);

// ---- element-wise ----------------------------------------------------------

using nn::Activation;
using nn::BatchNormArgs;
using nn::LayerNormArgs;

// d_y[i] = f(d_x[i]) over n entries (ElementwiseOps::Relu / Tanh). In place
// (d_y == d_x) is allowed.
template <typename T>
void ActivationForward(
    Activation f, const T* d_x, T* d_y, std::int64_t n, cudaStream_t stream);

// d_dx[i] = f'(y) d_dy[i] from the forward output d_y (ReluGrad / TanhGrad).
template <typename T>
void ActivationBackward(Activation f,
                        const T* d_y,
                        const T* d_dy,
                        T* d_dx,
                        std::int64_t n,
                        cudaStream_t stream);

// d_y[i] = d_x[i] * d_mask[i] (dropout with the scaled mask, both ways).
template <typename T>
void MultiplyMask(
    const T* d_x, const T* d_mask, T* d_y, std::int64_t n, cudaStream_t stream);

// ---- normalisation ---------------------------------------------------------

// Batch norm of d_x into d_y (BatchNorm<T>::Forward, nn/normalization.h).
// train: batch statistics in double (two passes: mean, then centred
// squares), written to a.stats; the running statistics are updated unless a
// channel's mean or variance is not finite (then none is). eval: the running
// statistics, written to a.stats. Requires: train implies n * inner >= 2.
template <typename T>
void BatchNormForward(const BatchNormArgs<T>& a,
                      bool train,
                      const T* d_x,
                      T* d_y,
                      cudaStream_t stream);

// d_dscale += sum(dy xhat), d_dshift += sum(dy) per channel; d_dx (when not
// null) through the batch statistics (train) or with them constant (eval),
// using a.stats of the last Forward.
template <typename T>
void BatchNormBackward(const BatchNormArgs<T>& a,
                       bool train,
                       const T* d_x,
                       const T* d_dy,
                       T* d_dscale,
                       T* d_dshift,
                       T* d_dx,
                       cudaStream_t stream);

// Layer norm of each row of d_x [n, features] (LayerNorm<T>::Forward); the
// per-row statistics go to a.stats.
template <typename T>
void LayerNormForward(const LayerNormArgs<T>& a,
                      const T* d_x,
                      T* d_y,
                      cudaStream_t stream);

// d_dx (always written) and d_dscale, d_dshift (added to, sample by sample in
// order as on the CPU) from a.stats of the last Forward.
template <typename T>
void LayerNormBackward(const LayerNormArgs<T>& a,
                       const T* d_x,
                       const T* d_dy,
                       T* d_dscale,
                       T* d_dshift,
                       T* d_dx,
                       cudaStream_t stream);

// ---- losses (host results; wait for them) ----------------------------------

// (1/n) sum_b (logsumexp(z_b) - z_b[label_b]) of d_logits [n, k];
// d_grad [n, k] (when not null) = (softmax(z) - onehot) / n. `labels` is HOST
// memory (n values, already checked to lie in [0, k)); it is uploaded.
template <typename T>
double SoftmaxCrossEntropy(const T* d_logits,
                           const std::int32_t* labels,
                           std::int64_t n,
                           std::int64_t k,
                           T* d_grad,
                           cudaStream_t stream);

// (1/s) sum_i (p_i - q_i)^2; d_grad (when not null) = 2 (p - q) / s.
template <typename T>
double MeanSquaredError(
    const T* d_p, const T* d_q, std::int64_t s, T* d_grad, cudaStream_t stream);

// Rows of d_logits [n, k] whose first maximum is at the label (host labels).
template <typename T>
std::int64_t CountCorrect(const T* d_logits,
                          const std::int32_t* labels,
                          std::int64_t n,
                          std::int64_t k,
                          cudaStream_t stream);

}  // namespace dense
}  // namespace cuda
}  // namespace symopt
