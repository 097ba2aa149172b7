// Per-element and per-channel maths of the dense and element-wise layers and
// the losses (include/nn/layers.h, normalization.h, loss.h), written once for
// the CPU loops (src/nn_layers.cpp, nn_normalization.cpp, nn_loss.cpp) and
// the CUDA kernels (cuda/nn_dense.cu) (STYLE M1): stateless structs of
// SYMOPT_HD functions on scalars or raw pointers, no CUDA/Eigen headers, no
// thread indices (STYLE M2).
//
// The arithmetic repeats the CPU reference operation for operation (types,
// order, rounding): with FMA contraction off on both sides
// (-ffp-contract=off, nvcc --fmad=false), an element-wise result computed
// from the same inputs is bitwise equal on both devices, except where a
// transcendental (tanh, exp, log, sqrt is exact) comes from another library
// (glibc vs CUDA's libdevice: at most an ulp or two apart). Reductions
// (batch statistics, row sums) are NOT here: each side sums in its own
// deterministic order, in double.
#pragma once

#include <cmath>
#include <cstdint>

#include "manifolds/check.h"

namespace symopt {
namespace nn {

// The element-wise activations with a GPU path.
enum class Activation { kRelu, kTanh };

// ReLU, tanh, dropout, the bias of Linear, MSE: one element at a time.
struct ElementwiseOps {
  template <typename T>
  static SYMOPT_HD T Relu(T x) {
    return x > T(0) ? x : T(0);
  }
  // dx from the output y (y > 0 exactly where x > 0).
  template <typename T>
  static SYMOPT_HD T ReluGrad(T y, T dy) {
    return y > T(0) ? dy : T(0);
  }
  template <typename T>
  static SYMOPT_HD T Tanh(T x) {
    using std::tanh;
    return tanh(x);
  }
  // dx = dy (1 - y^2) from the output y = tanh(x).
  template <typename T>
  static SYMOPT_HD T TanhGrad(T y, T dy) {
    return dy * (T(1) - y * y);
  }
  // The scaled dropout mask value: 1 / (1 - p) where kept, 0 where dropped.
  // u is the uniform draw in [0, 1).
  template <typename T>
  static SYMOPT_HD T DropoutMask(double u, double p, T keep_scale) {
    return u >= p ? keep_scale : T(0);
  }
  template <typename T>
  static SYMOPT_HD T Scale(T x, T mask) {
    return x * mask;
  }
  // MSE: d = p - q in double; the loss term is d * d, the gradient
  // 2 d / size.
  template <typename T>
  static SYMOPT_HD double SquaredErrorDiff(T p, T q) {
    return double(p) - double(q);
  }
  template <typename T>
  static SYMOPT_HD T SquaredErrorGrad(double d, double size) {
    return T(2.0 * d / size);
  }
};

// Softmax cross-entropy and accuracy, one row z[0, k) of logits at a time.
struct SoftmaxOps {
  // Index of the first maximum, exactly as std::max_element (a later entry
  // wins only when strictly greater; a NaN never wins, a leading NaN stays).
  template <typename T>
  static SYMOPT_HD std::int64_t ArgMax(const T* z,
                                       std::int64_t begin,
                                       std::int64_t end,
                                       std::int64_t stride) {
    std::int64_t best = begin;
    for (std::int64_t j = begin + stride; j < end; j += stride) {
      if (z[best] < z[j]) best = j;
    }
    return best;
  }
  // exp(z_j - m) in double, one term of sum_j exp(z_j - m), m = max_j z_j.
  template <typename T>
  static SYMOPT_HD double ExpTerm(T z, double m) {
    using std::exp;
    return exp(double(z) - m);
  }
  // logsumexp from the row maximum m and s = sum_j exp(z_j - m).
  static SYMOPT_HD double LogSumExp(double m, double s) {
    using std::log;
    return m + log(s);
  }
  // The gradient entry (softmax(z)_j - [j == label]) / n, in T as the CPU
  // writes it: the softmax term rounded to T, then 1/n (rounded to T)
  // subtracted at the label.
  template <typename T>
  static SYMOPT_HD T Grad(T z, double lse, double n, bool is_label) {
    using std::exp;
    T g = T(exp(double(z) - lse) / n);
    if (is_label) g -= T(1.0 / n);
    return g;
  }
};

// Batch normalisation: per-channel statistics to per-channel affine
// coefficients, and the per-element maps y = a x + o and
// dx = a dy + bx x + o (train) or a dy (eval).
struct BatchNormOps {
  // One centred square of the variance pass, in double.
  template <typename T>
  static SYMOPT_HD double CentredSquare(T x, double mu) {
    return (x - mu) * (x - mu);
  }
  // One term of sum(dy * (x - mu)) (times inv_std gives sum(dy * xhat)).
  template <typename T>
  static SYMOPT_HD double GradCentred(T g, T x, double mu) {
    return g * (x - mu);
  }
  // Running statistics update (var_biased is the batch's biased variance of
  // m values): running_mean <- (1 - mom) running_mean + mom mean,
  // running_var <- (1 - mom) running_var + mom var_biased m / (m - 1).
  template <typename T>
  static SYMOPT_HD void UpdateRunning(T* running_mean,
                                      T* running_var,
                                      double mean,
                                      double var_biased,
                                      double momentum,
                                      double m) {
    *running_mean = T((1 - momentum) * *running_mean + momentum * mean);
    *running_var =
        T((1 - momentum) * *running_var + momentum * var_biased * m / (m - 1));
  }
  static SYMOPT_HD double InvStd(double var, double eps) {
    using std::sqrt;
    return 1.0 / sqrt(var + eps);
  }
  // y = a x + o with a = scale inv_std, o = shift - scale inv_std mean.
  template <typename T>
  static SYMOPT_HD void ForwardCoefficients(
      T scale, T shift, double mean, double inv_std, T* a, T* o) {
    *a = T(scale * inv_std);
    *o = T(shift - scale * inv_std * mean);
  }
  template <typename T>
  static SYMOPT_HD T Affine(T a, T x, T o) {
    return a * x + o;
  }
  // Backward constants from sum_dy = sum(dy) and sum_dy_xhat =
  // sum(dy * xhat) over the m values of the channel. Train:
  //   dx = k (dy - mean(dy) - xhat mean(dy xhat)),  k = scale inv_std,
  //      = a dy + bx x + o;
  // eval: dx = a dy (bx = o = 0).
  template <typename T>
  static SYMOPT_HD void BackwardCoefficients(T scale,
                                             double mean,
                                             double inv_std,
                                             double sum_dy,
                                             double sum_dy_xhat,
                                             double m,
                                             bool train,
                                             T* a,
                                             T* bx,
                                             T* o) {
    const double k = scale * inv_std;
    *a = T(k);
    if (train) {
      const double mean_g = sum_dy / m;
      const double mean_gx = sum_dy_xhat / m;
      *bx = T(-k * mean_gx * inv_std);
      *o = T(-k * mean_g + k * mean_gx * inv_std * mean);
    } else {
      *bx = T(0);
      *o = T(0);
    }
  }
  template <typename T>
  static SYMOPT_HD T TrainGrad(T a, T g, T bx, T x, T o) {
    return a * g + bx * x + o;
  }
  template <typename T>
  static SYMOPT_HD T EvalGrad(T a, T g) {
    return a * g;
  }
};

// Layer normalisation of one sample's f values with its mean mu and
// inverse standard deviation is (both double).
struct LayerNormOps {
  template <typename T>
  static SYMOPT_HD double Xhat(T x, double mu, double is) {
    return (x - mu) * is;
  }
  template <typename T>
  static SYMOPT_HD T Forward(T x, T scale, T shift, double mu, double is) {
    return T(scale * Xhat(x, mu, is) + shift);
  }
  // dxhat = dy * scale, in double.
  template <typename T>
  static SYMOPT_HD double GradHat(T g, T scale) {
    return double(g) * scale;
  }
  // dx = is (dy scale - mean(dxhat) - xhat mean(dxhat xhat)).
  template <typename T>
  static SYMOPT_HD T InputGrad(
      T x, T g, T scale, double mu, double is, double mean_g, double mean_gx) {
    return T(is * (GradHat(g, scale) - mean_g - Xhat(x, mu, is) * mean_gx));
  }
  // The per-sample contribution to dscale (added to the T gradient).
  template <typename T>
  static SYMOPT_HD T ScaleGradTerm(T g, T x, double mu, double is) {
    return T(g * Xhat(x, mu, is));
  }
};

// ---- the thread schedule of the per-channel reductions --------------------
// (host-testable, STYLE M2: the kernels of cuda/nn_dense.cu take their index
// ranges from here.) Channel c of x [n, channels, inner] holds the m = n *
// inner values j = b * inner + i at addresses (b * channels + c) * inner + i.
// A channel's values are cut into `splits` contiguous chunks, one block each;
// every block writes one partial sum per channel and chunk, and the partials
// are added in chunk order, so the result depends on the sizes only.

// Chunks per channel: about kValuesPerThread values per thread of the
// `threads` a chunk gets, at most kMaxChannelSplits.
constexpr std::int64_t kValuesPerThread = 16;
constexpr std::int64_t kMaxChannelSplits = 64;
inline std::int64_t ChannelSplits(std::int64_t values, std::int64_t threads) {
  const std::int64_t per_chunk = threads * kValuesPerThread;
  const std::int64_t s = (values + per_chunk - 1) / per_chunk;
  return s < 1 ? 1 : (s > kMaxChannelSplits ? kMaxChannelSplits : s);
}

// Chunk `split` of `splits` of [0, values): [begin, end).
SYMOPT_HD void ChunkRange(std::int64_t values,
                          std::int64_t splits,
                          std::int64_t split,
                          std::int64_t* begin,
                          std::int64_t* end) {
  const std::int64_t chunk = (values + splits - 1) / splits;
  *begin = split * chunk < values ? split * chunk : values;
  *end = *begin + chunk < values ? *begin + chunk : values;
}

// The values j = first, first + stride, ... of channel c, as addresses,
// advancing (b, i) without a division per value.
class ChannelWalk {
 public:
  SYMOPT_HD ChannelWalk(std::int64_t first,
                        std::int64_t stride,
                        std::int64_t channels,
                        std::int64_t inner,
                        std::int64_t c)
      : b_(first / inner),
        i_(first % inner),
        step_b_(stride / inner),
        step_i_(stride % inner),
        channels_(channels),
        inner_(inner),
        c_(c) {}
  SYMOPT_HD std::int64_t Address() const {
    return (b_ * channels_ + c_) * inner_ + i_;
  }
  SYMOPT_HD void Next() {
    b_ += step_b_;
    i_ += step_i_;
    if (i_ >= inner_) {  // step_i_ < inner_, so one carry suffices
      i_ -= inner_;
      ++b_;
    }
  }

 private:
  std::int64_t b_, i_, step_b_, step_i_, channels_, inner_, c_;
};

// ---- plain arguments of the device entry points ---------------------------
// (device-copyable, no CUDA types; shared by src/backend/nn_dense_dispatch.h
// and cuda/nn_dense_backend.h). Pointers are device memory.

// A batch-norm input x [n, channels, inner...] (inner = values per channel per
// sample; m = n * inner values per channel) and the layer's state.
template <typename T>
struct BatchNormArgs {
  std::int64_t n = 0, channels = 0, inner = 0;
  const T* scale = nullptr;   // [channels]
  const T* shift = nullptr;   // [channels]
  T* running_mean = nullptr;  // [channels]
  T* running_var = nullptr;   // [channels]
  double momentum = 0.1, eps = 1e-5;
  // [2 * channels]: mean, then inv_std of the last Forward (written by
  // Forward, read by Backward).
  double* stats = nullptr;
};

// A layer-norm input x [n, features] and the layer's state.
template <typename T>
struct LayerNormArgs {
  std::int64_t n = 0, features = 0;
  const T* scale = nullptr;  // [features]
  const T* shift = nullptr;  // [features]
  double eps = 1e-5;
  // [2 * n]: per-sample mean, then inv_std of the last Forward.
  double* stats = nullptr;
};

}  // namespace nn
}  // namespace symopt
