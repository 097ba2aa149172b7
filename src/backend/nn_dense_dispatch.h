// The backend dispatch point of the dense and element-wise layers and the
// losses (STYLE M4), private to the library. The layers (src/nn_layers.cpp,
// nn_normalization.cpp, nn_loss.cpp) check shapes and devices, then call
// these for Device::kCuda tensors; each forwards to the CUDA entry point of
// the same name (cuda/nn_dense_backend.h, which documents the maths, shapes
// and which arguments may be null) on the legacy default stream, or throws
// NotCompiledError naming the operation in a build without CUDA.
//
// Every pointer is device memory except the loss labels (host). The losses
// and CountCorrect wait for their result; everything else returns once its
// work is enqueued.
#pragma once

#include <cstdint>
#include <string>

#include "manifolds/tensor_view.h"
#include "nn_dense_ops.h"

namespace symopt {
namespace backend {
namespace dense {

template <typename T>
void LinearForward(const T* x,
                   const T* w,
                   const T* b,
                   T* y,
                   std::int64_t n,
                   std::int64_t in,
                   std::int64_t out);

template <typename T>
void LinearBackward(const T* x,
                    const T* w,
                    const T* dy,
                    T* dw,
                    T* db,
                    T* dx,
                    std::int64_t n,
                    std::int64_t in,
                    std::int64_t out);

using nn::Activation;

template <typename T>
void ActivationForward(Activation f, const T* x, T* y, std::int64_t n);

template <typename T>
void ActivationBackward(
    Activation f, const T* y, const T* dy, T* dx, std::int64_t n);

template <typename T>
void MultiplyMask(const T* x, const T* mask, T* y, std::int64_t n);

template <typename T>
void BatchNormForward(const nn::BatchNormArgs<T>& a,
                      bool train,
                      const T* x,
                      T* y);

template <typename T>
void BatchNormBackward(const nn::BatchNormArgs<T>& a,
                       bool train,
                       const T* x,
                       const T* dy,
                       T* dscale,
                       T* dshift,
                       T* dx);

template <typename T>
void LayerNormForward(const nn::LayerNormArgs<T>& a, const T* x, T* y);

template <typename T>
void LayerNormBackward(const nn::LayerNormArgs<T>& a,
                       const T* x,
                       const T* dy,
                       T* dscale,
                       T* dshift,
                       T* dx);

template <typename T>
double SoftmaxCrossEntropy(const T* logits,
                           const std::int32_t* labels,
                           std::int64_t n,
                           std::int64_t k,
                           T* grad);

template <typename T>
double MeanSquaredError(const T* p, const T* q, std::int64_t s, T* grad);

template <typename T>
std::int64_t CountCorrect(const T* logits,
                          const std::int32_t* labels,
                          std::int64_t n,
                          std::int64_t k);

}  // namespace dense
}  // namespace backend
}  // namespace symopt
