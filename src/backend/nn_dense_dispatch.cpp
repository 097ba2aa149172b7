// The dispatch point of the dense layers and losses (STYLE M4): forwards to
// cuda/nn_dense_backend.h on the legacy default stream, or throws
// NotCompiledError in a build without CUDA.
#include "backend/nn_dense_dispatch.h"

#include <sstream>

#include "manifolds/check.h"
#include "symopt_config.h"
#if SYMOPT_WITH_CUDA
#include "nn_dense_backend.h"
#endif

namespace symopt {
namespace backend {
namespace dense {

#if SYMOPT_WITH_CUDA
// Every call runs on the legacy default stream, like the tensors' copies.
#define SYMOPT_DENSE_CALL(name, ...) \
  return cuda::dense::name<T>(__VA_ARGS__, nullptr)
#else
#define SYMOPT_DENSE_CALL(name, ...)                                    \
  [](auto&&...) {}(__VA_ARGS__);                                        \
  throw NotCompiledError(std::string(#name) +                           \
                         " on a CUDA tensor: this build of symopt has " \
                         "no CUDA backend; keep the model on the CPU")
#endif

template <typename T>
void LinearForward(const T* x,
                   const T* w,
                   const T* b,
                   T* y,
                   std::int64_t n,
                   std::int64_t in,
                   std::int64_t out) {
  SYMOPT_DENSE_CALL(LinearForward, x, w, b, y, n, in, out);
}

template <typename T>
void LinearBackward(const T* x,
                    const T* w,
                    const T* dy,
                    T* dw,
                    T* db,
                    T* dx,
                    std::int64_t n,
                    std::int64_t in,
                    std::int64_t out) {
  SYMOPT_DENSE_CALL(LinearBackward, x, w, dy, dw, db, dx, n, in, out);
}

template <typename T>
void ActivationForward(Activation f, const T* x, T* y, std::int64_t n) {
  SYMOPT_DENSE_CALL(ActivationForward, f, x, y, n);
}

template <typename T>
void ActivationBackward(
    Activation f, const T* y, const T* dy, T* dx, std::int64_t n) {
  SYMOPT_DENSE_CALL(ActivationBackward, f, y, dy, dx, n);
}

template <typename T>
void MultiplyMask(const T* x, const T* mask, T* y, std::int64_t n) {
  SYMOPT_DENSE_CALL(MultiplyMask, x, mask, y, n);
}

template <typename T>
void BatchNormForward(const nn::BatchNormArgs<T>& a,
                      bool train,
                      const T* x,
                      T* y) {
  SYMOPT_DENSE_CALL(BatchNormForward, a, train, x, y);
}

template <typename T>
void BatchNormBackward(const nn::BatchNormArgs<T>& a,
                       bool train,
                       const T* x,
                       const T* dy,
                       T* dscale,
                       T* dshift,
                       T* dx) {
  SYMOPT_DENSE_CALL(BatchNormBackward, a, train, x, dy, dscale, dshift, dx);
}

template <typename T>
void LayerNormForward(const nn::LayerNormArgs<T>& a, const T* x, T* y) {
  SYMOPT_DENSE_CALL(LayerNormForward, a, x, y);
}

template <typename T>
void LayerNormBackward(const nn::LayerNormArgs<T>& a,
                       const T* x,
                       const T* dy,
                       T* dscale,
                       T* dshift,
                       T* dx) {
  SYMOPT_DENSE_CALL(LayerNormBackward, a, x, dy, dscale, dshift, dx);
}

template <typename T>
double SoftmaxCrossEntropy(const T* logits,
                           const std::int32_t* labels,
                           std::int64_t n,
                           std::int64_t k,
                           T* grad) {
  SYMOPT_DENSE_CALL(SoftmaxCrossEntropy, logits, labels, n, k, grad);
}

template <typename T>
double MeanSquaredError(const T* p, const T* q, std::int64_t s, T* grad) {
  SYMOPT_DENSE_CALL(MeanSquaredError, p, q, s, grad);
}

template <typename T>
std::int64_t CountCorrect(const T* logits,
                          const std::int32_t* labels,
                          std::int64_t n,
                          std::int64_t k) {
  SYMOPT_DENSE_CALL(CountCorrect, logits, labels, n, k);
}

#undef SYMOPT_DENSE_CALL

#define SYMOPT_INSTANTIATE_DISPATCH(T)                                        \
  template void LinearForward<T>(const T*,                                    \
                                 const T*,                                    \
                                 const T*,                                    \
                                 T*,                                          \
                                 std::int64_t,                                \
                                 std::int64_t,                                \
                                 std::int64_t);                               \
  template void LinearBackward<T>(const T*,                                   \
                                  const T*,                                   \
                                  const T*,                                   \
                                  T*,                                         \
                                  T*,                                         \
                                  T*,                                         \
                                  std::int64_t,                               \
                                  std::int64_t,                               \
                                  std::int64_t);                              \
  template void ActivationForward<T>(Activation, const T*, T*, std::int64_t); \
  template void ActivationBackward<T>(                                        \
      Activation, const T*, const T*, T*, std::int64_t);                      \
  template void MultiplyMask<T>(const T*, const T*, T*, std::int64_t);        \
  template void BatchNormForward<T>(                                          \
      const nn::BatchNormArgs<T>&, bool, const T*, T*);                       \
  template void BatchNormBackward<T>(                                         \
      const nn::BatchNormArgs<T>&, bool, const T*, const T*, T*, T*, T*);     \
  template void LayerNormForward<T>(                                          \
      const nn::LayerNormArgs<T>&, const T*, T*);                             \
  template void LayerNormBackward<T>(                                         \
      const nn::LayerNormArgs<T>&, const T*, const T*, T*, T*, T*);           \
  template double SoftmaxCrossEntropy<T>(                                     \
      const T*, const std::int32_t*, std::int64_t, std::int64_t, T*);         \
  template double MeanSquaredError<T>(const T*, const T*, std::int64_t, T*);  \
  template std::int64_t CountCorrect<T>(                                      \
      const T*, const std::int32_t*, std::int64_t, std::int64_t);
SYMOPT_INSTANTIATE_DISPATCH(float)
SYMOPT_INSTANTIATE_DISPATCH(double)
#undef SYMOPT_INSTANTIATE_DISPATCH

}  // namespace dense
}  // namespace backend
}  // namespace symopt
