// CUDA kernels of the dense and element-wise layers and the losses (declared
// in cuda/nn_dense_backend.h). The per-element maths is src/nn_dense_ops.h,
// which the CPU loops run too (STYLE M1); the kernels only map threads to
// elements, rows and channels (STYLE M2).
//
// Reductions are deterministic (no floating-point atomics): every sum is
// accumulated in double by a fixed set of threads over a fixed range and
// combined by a fixed tree (cuda/group_reduce.cuh or a shared-memory column),
// on grids that depend on the sizes only.
//   per channel (batch norm, Linear's bias gradient): each channel's values
//     are cut into up to 64 chunks (by size only) so that enough blocks run;
//     a block of 256 threads reduces one chunk of one channel, or, when
//     inner == 1 (x [n, channels], neighbouring channels at neighbouring
//     addresses), one chunk of rows of a tile of 32 channels x 8 row lanes
//     (coalesced loads, the 8 lanes' sums added in lane order); then one
//     thread per channel adds the chunks' partial sums in chunk order;
//   per row (layer norm): one block per row; softmax: one warp per row;
//   totals (loss values): per-block partials, then one block sums them.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "check.cuh"
#include "cuda_backend.h"
#include "group_reduce.cuh"
#include "launch.cuh"
#include "nn_dense_backend.h"

namespace symopt {
namespace cuda {
namespace dense {
namespace {

using nn::BatchNormArgs;
using nn::BatchNormOps;
using nn::ElementwiseOps;
using nn::LayerNormArgs;
using nn::LayerNormOps;
using nn::SoftmaxOps;

constexpr int kThreads = backend::kBlockThreads;     // 256
constexpr int kTileChannels = 32;                    // channel lanes of a tile
constexpr int kTileRows = kThreads / kTileChannels;  // row lanes of a tile
constexpr int kRowsPerWarpBlock = kThreads / 32;     // softmax rows per block
// The row chunks of a tile reduction are gridDim.y, limited to 65535.
static_assert(nn::kMaxChannelSplits <= 65535, "gridDim.y limit");

// ---- launch helpers ---------------------------------------------------------

// Blocks for a grid-stride loop over n elements: enough to fill any current
// GPU several times over, never more than the grid holds.
unsigned int ElementwiseGrid(std::int64_t n) {
  const std::int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < 65536 ? blocks : 65536);
}

// A grid of `blocks` blocks, refused when it exceeds the limit (2^31 - 1).
unsigned int CheckedGrid(std::int64_t blocks, const char* what) {
  SYMOPT_CHECK(blocks >= 1 && blocks <= 0x7fffffffLL,
               "symopt cuda: " << what << " needs " << blocks
                               << " blocks, outside [1, 2^31 - 1]");
  return static_cast<unsigned int>(blocks);
}

// Scratch of `count` U from the stream-ordered pool (cheap after the first
// call), freed in stream order when it goes out of scope.
template <typename U>
class PoolArray {
 public:
  PoolArray(std::int64_t count, cudaStream_t stream) : stream_(stream) {
    if (count > 0) {
      RetainPoolMemory();
      SYMOPT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&data_),
                                        std::size_t(count) * sizeof(U),
                                        stream));
    }
  }
  ~PoolArray() {
    if (data_ != nullptr)
      SYMOPT_CUDA_CHECK_NOTHROW(cudaFreeAsync(data_, stream_));
  }
  PoolArray(PoolArray&& other) noexcept
      : data_(other.data_), stream_(other.stream_) {
    other.data_ = nullptr;
  }
  PoolArray(const PoolArray&) = delete;
  PoolArray& operator=(const PoolArray&) = delete;
  PoolArray& operator=(PoolArray&&) = delete;
  U* get() const { return data_; }

 private:
  U* data_ = nullptr;
  cudaStream_t stream_;
};

// Copies one value back and waits for it.
template <typename U>
U ReadBack(const U* d_value, cudaStream_t stream) {
  U value{};
  SYMOPT_CUDA_CHECK(cudaMemcpyAsync(
      &value, d_value, sizeof(U), cudaMemcpyDeviceToHost, stream));
  SYMOPT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return value;
}

// ---- element-wise kernels (grid-stride loops, any n) ------------------------

// Calls f(i) for the indices i < n of this thread in a grid-stride loop.
template <typename F>
__device__ __forceinline__ void GridStride(std::int64_t n, F&& f) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       i < n;
       i += stride) {
    f(i);
  }
}

template <typename T>
__global__ void AddBiasKernel(T* __restrict__ y,
                              const T* __restrict__ b,
                              std::int64_t rows,
                              std::int64_t cols) {
  const std::int64_t n = rows * cols;
  GridStride(n, [&](std::int64_t i) {
    y[i] = y[i] + b[i % cols];  // as Eigen's rowwise() += b
  });
}

template <Activation kF, typename T>
__global__ void ActivationKernel(const T* x, T* y, std::int64_t n) {
  GridStride(n, [&](std::int64_t i) {
    if constexpr (kF == Activation::kRelu) {
      y[i] = ElementwiseOps::Relu(x[i]);
    } else {
      y[i] = ElementwiseOps::Tanh(x[i]);
    }
  });
}

template <Activation kF, typename T>
__global__ void ActivationGradKernel(const T* __restrict__ y,
                                     const T* __restrict__ dy,
                                     T* __restrict__ dx,
                                     std::int64_t n) {
  GridStride(n, [&](std::int64_t i) {
    if constexpr (kF == Activation::kRelu) {
      dx[i] = ElementwiseOps::ReluGrad(y[i], dy[i]);
    } else {
      dx[i] = ElementwiseOps::TanhGrad(y[i], dy[i]);
    }
  });
}

template <typename T>
__global__ void MaskKernel(const T* __restrict__ x,
                           const T* __restrict__ mask,
                           T* __restrict__ y,
                           std::int64_t n) {
  GridStride(
      n, [&](std::int64_t i) { y[i] = ElementwiseOps::Scale(x[i], mask[i]); });
}

// ---- per-channel reductions -------------------------------------------------
//
// A Term adds an element's K contributions: term(address, c, v); an Epilogue
// receives the K sums of a channel once: epilogue(c, sums). Two stages, both
// in a fixed order (nn::ChannelSplits, nn::ChunkRange, nn::ChannelWalk in
// src/nn_dense_ops.h give the schedule):
//   1. each block reduces one chunk of one channel (or of 32 channels) to K
//      partial sums in partial[(c * splits + split) * K + k];
//   2. one thread per channel adds its chunks' partials in chunk order and
//      calls the epilogue.

// inner > 1: block = (channel c, chunk s), blockIdx.x = c * splits + s; its
// 256 threads walk the chunk's values with stride 256, then reduce by the
// fixed tree of GroupReduce.
template <int K, typename Term>
__global__ void ChannelChunkKernel(std::int64_t n,
                                   std::int64_t channels,
                                   std::int64_t inner,
                                   std::int64_t splits,
                                   Term term,
                                   double* __restrict__ partial) {
  const std::int64_t block = blockIdx.x;
  const std::int64_t c = block / splits, split = block % splits;
  std::int64_t begin, end;
  nn::ChunkRange(n * inner, splits, split, &begin, &end);
  double v[K];
#pragma unroll
  for (int k = 0; k < K; ++k) v[k] = 0;
  nn::ChannelWalk walk(begin + threadIdx.x, kThreads, channels, inner, c);
  for (std::int64_t j = begin + threadIdx.x; j < end; j += kThreads) {
    term(walk.Address(), c, v);
    walk.Next();
  }
  GroupReduce<kThreads, K>(v);  // every thread of the block takes part
  if (threadIdx.x == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) partial[block * K + k] = v[k];
  }
}

// inner == 1 (x [n, channels]: neighbouring channels are neighbouring
// addresses): block = (tile of 32 channels, chunk of rows s = blockIdx.y);
// channel lane tx, row lane ty sums rows begin + ty, begin + ty + 8, ...;
// the 8 row lanes' partial sums are then added in lane order.
template <int K, typename Term>
__global__ void ChannelTileKernel(std::int64_t n,
                                  std::int64_t channels,
                                  std::int64_t splits,
                                  Term term,
                                  double* __restrict__ partial) {
  __shared__ double lanes[K][kTileRows][kTileChannels];
  const int tx = threadIdx.x % kTileChannels, ty = threadIdx.x / kTileChannels;
  const std::int64_t c = std::int64_t(blockIdx.x) * kTileChannels + tx;
  const std::int64_t split = blockIdx.y;
  std::int64_t begin, end;
  nn::ChunkRange(n, splits, split, &begin, &end);
  double v[K];
#pragma unroll
  for (int k = 0; k < K; ++k) v[k] = 0;
  if (c < channels) {
    for (std::int64_t b = begin + ty; b < end; b += kTileRows) {
      term(b * channels + c, c, v);
    }
  }
#pragma unroll
  for (int k = 0; k < K; ++k) lanes[k][ty][tx] = v[k];
  __syncthreads();
  if (ty == 0 && c < channels) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      double s = lanes[k][0][tx];
      for (int r = 1; r < kTileRows; ++r) s += lanes[k][r][tx];
      partial[(c * splits + split) * K + k] = s;
    }
  }
}

// Stage 2: one thread per channel.
template <int K, typename Epilogue>
__global__ void ChannelFinishKernel(std::int64_t channels,
                                    std::int64_t splits,
                                    const double* __restrict__ partial,
                                    Epilogue epilogue) {
  const std::int64_t c = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  double s[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    s[k] = partial[c * splits * K + k];
    for (std::int64_t q = 1; q < splits; ++q) {
      s[k] += partial[(c * splits + q) * K + k];
    }
  }
  epilogue(c, s);
}

template <int K, typename Term, typename Epilogue>
void ReduceChannels(std::int64_t n,
                    std::int64_t channels,
                    std::int64_t inner,
                    const Term& term,
                    const Epilogue& epilogue,
                    cudaStream_t stream) {
  const std::int64_t m = n * inner;
  std::int64_t splits = 0;
  if (inner == 1) {
    splits = nn::ChannelSplits(n, kTileRows);
  } else {
    splits = nn::ChannelSplits(m, kThreads);
  }
  PoolArray<double> partial(channels * splits * K, stream);
  if (inner == 1) {
    const dim3 grid(CheckedGrid((channels + kTileChannels - 1) / kTileChannels,
                                "a channel reduction"),
                    static_cast<unsigned int>(splits));  // <= 64
    ChannelTileKernel<K><<<grid, kThreads, 0, stream>>>(
        n, channels, splits, term, partial.get());
  } else {
    ChannelChunkKernel<K>
        <<<CheckedGrid(channels * splits, "a channel reduction"),
           kThreads,
           0,
           stream>>>(n, channels, inner, splits, term, partial.get());
  }
  SYMOPT_CUDA_CHECK(cudaGetLastError());
  ChannelFinishKernel<K><<<CheckedGrid((channels + kThreads - 1) / kThreads,
                                       "a channel reduction"),
                           kThreads,
                           0,
                           stream>>>(channels, splits, partial.get(), epilogue);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

// Terms and epilogues (device functors; no extended lambdas needed).
template <typename T>
struct ValueTerm {  // v[0] += x
  const T* x;
  __device__ void operator()(std::int64_t idx,
                             std::int64_t,
                             double (&v)[1]) const {
    v[0] += x[idx];
  }
};

template <typename T>
struct CentredSquareTerm {  // v[0] += (x - mean_c)^2
  const T* x;
  const double* mean;
  __device__ void operator()(std::int64_t idx,
                             std::int64_t c,
                             double (&v)[1]) const {
    v[0] += BatchNormOps::CentredSquare(x[idx], mean[c]);
  }
};

template <typename T>
struct GradTerm {  // v[0] += dy, v[1] += dy (x - mean_c)
  const T* x;
  const T* dy;
  const double* mean;
  __device__ void operator()(std::int64_t idx,
                             std::int64_t c,
                             double (&v)[2]) const {
    v[0] += dy[idx];
    v[1] += BatchNormOps::GradCentred(dy[idx], x[idx], mean[c]);
  }
};

template <typename T>
struct AddSumEpilogue {  // out[c] += T(sum)  (Linear's bias gradient)
  T* out;
  __device__ void operator()(std::int64_t c, const double (&s)[1]) const {
    out[c] = out[c] + T(s[0]);
  }
};

struct ScaledStoreEpilogue {  // out[c] = sum / divisor
  double* out;
  double divisor;
  __device__ void operator()(std::int64_t c, const double (&s)[1]) const {
    out[c] = s[0] / divisor;
  }
};

// Batch-norm backward, per channel: the parameter gradients and the
// coefficients of dx = a dy + bx x + o.
template <typename T>
struct BatchNormGradEpilogue {
  BatchNormArgs<T> args;
  bool train;
  double m;
  T* dscale;
  T* dshift;
  T* coef_a;
  T* coef_bx;
  T* coef_o;
  __device__ void operator()(std::int64_t c, const double (&s)[2]) const {
    const double mean = args.stats[c], inv_std = args.stats[args.channels + c];
    const double sum_dy = s[0], sum_dy_xhat = s[1] * inv_std;
    dscale[c] += T(sum_dy_xhat);
    dshift[c] += T(sum_dy);
    BatchNormOps::BackwardCoefficients(args.scale[c],
                                       mean,
                                       inv_std,
                                       sum_dy,
                                       sum_dy_xhat,
                                       m,
                                       train,
                                       &coef_a[c],
                                       &coef_bx[c],
                                       &coef_o[c]);
  }
};

// ---- batch norm -------------------------------------------------------------

// One block walks all channels: statistics and coefficients, then (only if
// every channel's mean and variance are finite, decided block-wide) the
// running statistics, as the CPU does.
template <typename T>
__global__ void BatchNormFinishTrainKernel(
    BatchNormArgs<T> a, const double* var_sum, double m, T* coef_a, T* coef_o) {
  int finite = 1;
  for (std::int64_t c = threadIdx.x; c < a.channels; c += blockDim.x) {
    const double mean = a.stats[c], var = var_sum[c] / m;
    const double inv_std = BatchNormOps::InvStd(var, a.eps);
    a.stats[a.channels + c] = inv_std;
    BatchNormOps::ForwardCoefficients(
        a.scale[c], a.shift[c], mean, inv_std, &coef_a[c], &coef_o[c]);
    finite = finite && isfinite(mean) && isfinite(var);
  }
  if (!__syncthreads_and(finite)) return;  // uniform across the block
  for (std::int64_t c = threadIdx.x; c < a.channels; c += blockDim.x) {
    BatchNormOps::UpdateRunning(&a.running_mean[c],
                                &a.running_var[c],
                                a.stats[c],
                                var_sum[c] / m,
                                a.momentum,
                                m);
  }
}

template <typename T>
__global__ void BatchNormFinishEvalKernel(BatchNormArgs<T> a,
                                          T* coef_a,
                                          T* coef_o) {
  const std::int64_t c = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= a.channels) return;
  const double mean = a.running_mean[c];
  const double inv_std = BatchNormOps::InvStd(double(a.running_var[c]), a.eps);
  a.stats[c] = mean;
  a.stats[a.channels + c] = inv_std;
  BatchNormOps::ForwardCoefficients(
      a.scale[c], a.shift[c], mean, inv_std, &coef_a[c], &coef_o[c]);
}

// Calls f(index, c) for the elements of x [n, channels, inner] this thread
// owns, c the element's channel. Long planes (inner >= kPlaneInner): a
// grid-stride loop over the planes (b, c) of `inner` contiguous values, the
// block's threads striding along a plane, so there is one division per plane
// instead of one per element; otherwise a grid-stride loop over elements.
constexpr std::int64_t kPlaneInner = 128;

template <typename F>
__device__ __forceinline__ void ForEachChannelElement(std::int64_t total,
                                                      std::int64_t channels,
                                                      std::int64_t inner,
                                                      F&& f) {
  if (inner < kPlaneInner) {
    GridStride(total, [&](std::int64_t i) { f(i, (i / inner) % channels); });
    return;
  }
  const std::int64_t planes = total / inner;
  for (std::int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    const std::int64_t c = p % channels;
    for (std::int64_t i = threadIdx.x; i < inner; i += blockDim.x) {
      f(p * inner + i, c);
    }
  }
}

// The grid ForEachChannelElement expects.
unsigned int ChannelElementGrid(std::int64_t total, std::int64_t inner) {
  if (inner < kPlaneInner) return ElementwiseGrid(total);
  const std::int64_t planes = total / inner;
  return static_cast<unsigned int>(planes < 65536 ? planes : 65536);
}

// y = a_c x + o_c.
template <typename T>
__global__ void ChannelAffineKernel(const T* __restrict__ x,
                                    T* __restrict__ y,
                                    std::int64_t total,
                                    std::int64_t channels,
                                    std::int64_t inner,
                                    const T* __restrict__ coef_a,
                                    const T* __restrict__ coef_o) {
  ForEachChannelElement(
      total, channels, inner, [&](std::int64_t i, std::int64_t c) {
        y[i] = BatchNormOps::Affine(coef_a[c], x[i], coef_o[c]);
      });
}

template <typename T>
__global__ void BatchNormInputGradKernel(const T* __restrict__ x,
                                         const T* __restrict__ dy,
                                         T* __restrict__ dx,
                                         std::int64_t total,
                                         std::int64_t channels,
                                         std::int64_t inner,
                                         const T* __restrict__ coef_a,
                                         const T* __restrict__ coef_bx,
                                         const T* __restrict__ coef_o,
                                         bool train) {
  ForEachChannelElement(
      total, channels, inner, [&](std::int64_t i, std::int64_t c) {
        dx[i] = train ? BatchNormOps::TrainGrad(
                            coef_a[c], dy[i], coef_bx[c], x[i], coef_o[c])
                      : BatchNormOps::EvalGrad(coef_a[c], dy[i]);
      });
}

// ---- layer norm -------------------------------------------------------------

// One block per sample row b = blockIdx.x: mean, centred squares, output.
template <typename T>
__global__ void LayerNormForwardKernel(LayerNormArgs<T> a,
                                       const T* __restrict__ x,
                                       T* __restrict__ y) {
  const std::int64_t b = blockIdx.x, f = a.features;
  const T* in = x + b * f;
  double s[1] = {0};
  for (std::int64_t i = threadIdx.x; i < f; i += kThreads) s[0] += in[i];
  GroupReduce<kThreads, 1>(s);
  const double mu = s[0] / double(f);
  double q[1] = {0};
  for (std::int64_t i = threadIdx.x; i < f; i += kThreads) {
    q[0] += BatchNormOps::CentredSquare(in[i], mu);
  }
  GroupReduce<kThreads, 1>(q);
  const double is = BatchNormOps::InvStd(q[0] / double(f), a.eps);
  if (threadIdx.x == 0) {
    a.stats[b] = mu;
    a.stats[a.n + b] = is;
  }
  T* out = y + b * f;
  for (std::int64_t i = threadIdx.x; i < f; i += kThreads) {
    out[i] = LayerNormOps::Forward(in[i], a.scale[i], a.shift[i], mu, is);
  }
}

// One block per sample row: sum(dxhat), sum(dxhat xhat), then dx.
template <typename T>
__global__ void LayerNormInputGradKernel(LayerNormArgs<T> a,
                                         const T* __restrict__ x,
                                         const T* __restrict__ dy,
                                         T* __restrict__ dx) {
  const std::int64_t b = blockIdx.x, f = a.features;
  const T* in = x + b * f;
  const T* g = dy + b * f;
  const double mu = a.stats[b], is = a.stats[a.n + b];
  double s[2] = {0, 0};
  for (std::int64_t i = threadIdx.x; i < f; i += kThreads) {
    const double gh = LayerNormOps::GradHat(g[i], a.scale[i]);
    s[0] += gh;
    s[1] += gh * LayerNormOps::Xhat(in[i], mu, is);
  }
  GroupReduce<kThreads, 2>(s);
  const double mean_g = s[0] / double(f), mean_gx = s[1] / double(f);
  T* d = dx + b * f;
  for (std::int64_t i = threadIdx.x; i < f; i += kThreads) {
    d[i] = LayerNormOps::InputGrad(
        in[i], g[i], a.scale[i], mu, is, mean_g, mean_gx);
  }
}

// One thread per feature i: dscale[i] and dshift[i] accumulate sample by
// sample in T, in the CPU's order (coalesced: neighbouring threads read
// neighbouring features).
template <typename T>
__global__ void LayerNormParamGradKernel(LayerNormArgs<T> a,
                                         const T* __restrict__ x,
                                         const T* __restrict__ dy,
                                         T* __restrict__ dscale,
                                         T* __restrict__ dshift) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t f = a.features;
  if (i >= f) return;
  T acc_scale = dscale[i], acc_shift = dshift[i];
  for (std::int64_t b = 0; b < a.n; ++b) {
    const T g = dy[b * f + i];
    acc_scale += LayerNormOps::ScaleGradTerm(
        g, x[b * f + i], a.stats[b], a.stats[a.n + b]);
    acc_shift += g;
  }
  dscale[i] = acc_scale;
  dshift[i] = acc_shift;
}

// ---- losses -----------------------------------------------------------------

// One warp per row (8 rows per block): the row maximum and sum of
// exponentials (xor butterflies: every lane gets the same bits), the row's
// loss term (lane 0) and the gradient (all lanes, strided). Lanes of rows
// past n join the reductions with empty ranges.
template <typename T>
__global__ void SoftmaxCrossEntropyKernel(
    const T* __restrict__ logits,
    const std::int32_t* __restrict__ labels,
    std::int64_t n,
    std::int64_t k,
    T* __restrict__ grad,
    double* __restrict__ row_loss) {
  const std::int64_t row = UnitIndex<32>();
  const int lane = LaneIndex<32>();
  const bool active = row < n;
  const std::int64_t end = active ? k : 0;
  const T* z = logits + (active ? row : 0) * k;
  double m[1] = {-INFINITY};
  for (std::int64_t j = lane; j < end; j += 32) {
    m[0] = Combine<ReduceOp::kMax>(m[0], double(z[j]));
  }
  GroupReduce<32, 1, ReduceOp::kMax>(m);
  double s[1] = {0};
  for (std::int64_t j = lane; j < end; j += 32) {
    s[0] += SoftmaxOps::ExpTerm(z[j], m[0]);
  }
  GroupReduce<32, 1>(s);
  if (!active) return;  // after the last reduction
  const double lse = SoftmaxOps::LogSumExp(m[0], s[0]);
  const std::int32_t label = labels[row];
  if (lane == 0) row_loss[row] = lse - double(z[label]);
  if (grad != nullptr) {
    T* g = grad + row * k;
    for (std::int64_t j = lane; j < k; j += 32) {
      g[j] = SoftmaxOps::Grad(z[j], lse, double(n), j == label);
    }
  }
}

// Per-block partial sums of (p - q)^2, and the gradient.
template <typename T>
__global__ void SquaredErrorKernel(const T* __restrict__ p,
                                   const T* __restrict__ q,
                                   std::int64_t size,
                                   T* __restrict__ grad,
                                   double* __restrict__ partial) {
  double v[1] = {0};
  GridStride(size, [&](std::int64_t i) {
    const double d = ElementwiseOps::SquaredErrorDiff(p[i], q[i]);
    v[0] += d * d;
    if (grad != nullptr) {
      grad[i] = ElementwiseOps::SquaredErrorGrad<T>(d, double(size));
    }
  });
  GroupReduce<kThreads, 1>(v);
  if (threadIdx.x == 0) partial[blockIdx.x] = v[0];
}

// One block: out[0] = sum of v[0, count) (strided partials, then the tree).
__global__ void SumKernel(const double* __restrict__ v,
                          std::int64_t count,
                          double* __restrict__ out) {
  double s[1] = {0};
  for (std::int64_t i = threadIdx.x; i < count; i += kThreads) s[0] += v[i];
  GroupReduce<kThreads, 1>(s);
  if (threadIdx.x == 0) out[0] = s[0];
}

// One thread per row: first maximum == label, counted per block
// (__syncthreads_count), one integer atomic per block.
template <typename T>
__global__ void CountCorrectKernel(const T* __restrict__ logits,
                                   const std::int32_t* __restrict__ labels,
                                   std::int64_t n,
                                   std::int64_t k,
                                   unsigned long long* __restrict__ count) {
  const std::int64_t row = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int hit = 0;
  if (row < n) {
    hit = SoftmaxOps::ArgMax(logits + row * k, 0, k, 1) == labels[row];
  }
  const int block_hits = __syncthreads_count(hit);
  if (threadIdx.x == 0 && block_hits > 0) {
    atomicAdd(count, static_cast<unsigned long long>(block_hits));
  }
}

// Uploads n host labels to pool memory.
PoolArray<std::int32_t> UploadLabels(const std::int32_t* labels,
                                     std::int64_t n,
                                     cudaStream_t stream);

}  // namespace

// ---- entry points -----------------------------------------------------------

template <typename T>
void LinearForward(const T* d_x,
                   const T* d_w,
                   const T* d_b,
                   T* d_y,
                   std::int64_t n,
                   std::int64_t in,
                   std::int64_t out,
                   cudaStream_t stream) {
  // y [n, out] = x [n, in] * (W [out, in])^T
  Gemm<T>(
      false, true, n, out, in, T(1), d_x, in, d_w, in, T(0), d_y, out, stream);
  if (d_b != nullptr) {
    AddBiasKernel<<<ElementwiseGrid(n * out), kThreads, 0, stream>>>(
        d_y, d_b, n, out);
    SYMOPT_CUDA_CHECK(cudaGetLastError());
  }
}

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
                    cudaStream_t stream) {
  // dW [out, in] += (dY [n, out])^T X [n, in]   (beta = 1: accumulate)
  Gemm<T>(true,
          false,
          out,
          in,
          n,
          T(1),
          d_dy,
          out,
          d_x,
          in,
          T(1),
          d_dw,
          in,
          stream);
  if (d_db != nullptr) {
    ReduceChannels<1>(
        n, out, 1, ValueTerm<T>{d_dy}, AddSumEpilogue<T>{d_db}, stream);
  }
  if (d_dx != nullptr) {
    // dX [n, in] = dY [n, out] W [out, in]
    Gemm<T>(false,
            false,
            n,
            in,
            out,
            T(1),
            d_dy,
            out,
            d_w,
            in,
            T(0),
            d_dx,
            in,
            stream);
  }
}

template <typename T>
void ActivationForward(
    Activation f, const T* d_x, T* d_y, std::int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  if (f == Activation::kRelu) {
    ActivationKernel<Activation::kRelu>
        <<<ElementwiseGrid(n), kThreads, 0, stream>>>(d_x, d_y, n);
  } else {
    ActivationKernel<Activation::kTanh>
        <<<ElementwiseGrid(n), kThreads, 0, stream>>>(d_x, d_y, n);
  }
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void ActivationBackward(Activation f,
                        const T* d_y,
                        const T* d_dy,
                        T* d_dx,
                        std::int64_t n,
                        cudaStream_t stream) {
  if (n <= 0) return;
  if (f == Activation::kRelu) {
    ActivationGradKernel<Activation::kRelu>
        <<<ElementwiseGrid(n), kThreads, 0, stream>>>(d_y, d_dy, d_dx, n);
  } else {
    ActivationGradKernel<Activation::kTanh>
        <<<ElementwiseGrid(n), kThreads, 0, stream>>>(d_y, d_dy, d_dx, n);
  }
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void MultiplyMask(const T* d_x,
                  const T* d_mask,
                  T* d_y,
                  std::int64_t n,
                  cudaStream_t stream) {
  if (n <= 0) return;
  MaskKernel<<<ElementwiseGrid(n), kThreads, 0, stream>>>(d_x, d_mask, d_y, n);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void BatchNormForward(const BatchNormArgs<T>& a,
                      bool train,
                      const T* d_x,
                      T* d_y,
                      cudaStream_t stream) {
  const std::int64_t c = a.channels, m = a.n * a.inner, total = m * c;
  PoolArray<T> coef(2 * c, stream);  // a, then o
  if (train) {
    PoolArray<double> var_sum(c, stream);
    // Pass 1: mean_c = sum / m, straight into stats[0, c).
    ReduceChannels<1>(a.n,
                      c,
                      a.inner,
                      ValueTerm<T>{d_x},
                      ScaledStoreEpilogue{a.stats, double(m)},
                      stream);
    // Pass 2: sum of centred squares (stable two-pass variance).
    ReduceChannels<1>(a.n,
                      c,
                      a.inner,
                      CentredSquareTerm<T>{d_x, a.stats},
                      ScaledStoreEpilogue{var_sum.get(), 1.0},
                      stream);
    BatchNormFinishTrainKernel<<<1, kThreads, 0, stream>>>(
        a, var_sum.get(), double(m), coef.get(), coef.get() + c);
    SYMOPT_CUDA_CHECK(cudaGetLastError());
  } else {
    BatchNormFinishEvalKernel<<<CheckedGrid((c + kThreads - 1) / kThreads,
                                            "batch-norm statistics"),
                                kThreads,
                                0,
                                stream>>>(a, coef.get(), coef.get() + c);
    SYMOPT_CUDA_CHECK(cudaGetLastError());
  }
  ChannelAffineKernel<<<ChannelElementGrid(total, a.inner),
                        kThreads,
                        0,
                        stream>>>(
      d_x, d_y, total, c, a.inner, coef.get(), coef.get() + c);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void BatchNormBackward(const BatchNormArgs<T>& a,
                       bool train,
                       const T* d_x,
                       const T* d_dy,
                       T* d_dscale,
                       T* d_dshift,
                       T* d_dx,
                       cudaStream_t stream) {
  const std::int64_t c = a.channels, m = a.n * a.inner, total = m * c;
  PoolArray<T> coef(3 * c, stream);  // a, bx, o
  ReduceChannels<2>(a.n,
                    c,
                    a.inner,
                    GradTerm<T>{d_x, d_dy, a.stats},
                    BatchNormGradEpilogue<T>{a,
                                             train,
                                             double(m),
                                             d_dscale,
                                             d_dshift,
                                             coef.get(),
                                             coef.get() + c,
                                             coef.get() + 2 * c},
                    stream);
  if (d_dx == nullptr) return;
  BatchNormInputGradKernel<<<ChannelElementGrid(total, a.inner),
                             kThreads,
                             0,
                             stream>>>(d_x,
                                       d_dy,
                                       d_dx,
                                       total,
                                       c,
                                       a.inner,
                                       coef.get(),
                                       coef.get() + c,
                                       coef.get() + 2 * c,
                                       train);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void LayerNormForward(const LayerNormArgs<T>& a,
                      const T* d_x,
                      T* d_y,
                      cudaStream_t stream) {
  LayerNormForwardKernel<<<CheckedGrid(a.n, "layer norm"),
                           kThreads,
                           0,
                           stream>>>(a, d_x, d_y);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void LayerNormBackward(const LayerNormArgs<T>& a,
                       const T* d_x,
                       const T* d_dy,
                       T* d_dscale,
                       T* d_dshift,
                       T* d_dx,
                       cudaStream_t stream) {
  LayerNormInputGradKernel<<<CheckedGrid(a.n, "layer norm"),
                             kThreads,
                             0,
                             stream>>>(a, d_x, d_dy, d_dx);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
  LayerNormParamGradKernel<<<CheckedGrid((a.features + kThreads - 1) / kThreads,
                                         "layer norm"),
                             kThreads,
                             0,
                             stream>>>(a, d_x, d_dy, d_dscale, d_dshift);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

namespace {
PoolArray<std::int32_t> UploadLabels(const std::int32_t* labels,
                                     std::int64_t n,
                                     cudaStream_t stream) {
  PoolArray<std::int32_t> d_labels(n, stream);
  // Pageable source: the copy has read `labels` when the call returns.
  SYMOPT_CUDA_CHECK(cudaMemcpyAsync(d_labels.get(),
                                    labels,
                                    std::size_t(n) * sizeof(std::int32_t),
                                    cudaMemcpyHostToDevice,
                                    stream));
  return d_labels;
}
}  // namespace

template <typename T>
double SoftmaxCrossEntropy(const T* d_logits,
                           const std::int32_t* labels,
                           std::int64_t n,
                           std::int64_t k,
                           T* d_grad,
                           cudaStream_t stream) {
  PoolArray<std::int32_t> d_labels = UploadLabels(labels, n, stream);
  PoolArray<double> row_loss(n + 1, stream);  // n row terms, then the total
  SoftmaxCrossEntropyKernel<<<CheckedGrid((n + kRowsPerWarpBlock - 1) /
                                              kRowsPerWarpBlock,
                                          "softmax cross-entropy"),
                              kThreads,
                              0,
                              stream>>>(
      d_logits, d_labels.get(), n, k, d_grad, row_loss.get());
  SYMOPT_CUDA_CHECK(cudaGetLastError());
  SumKernel<<<1, kThreads, 0, stream>>>(row_loss.get(), n, row_loss.get() + n);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
  return ReadBack(row_loss.get() + n, stream) / double(n);
}

template <typename T>
double MeanSquaredError(const T* d_p,
                        const T* d_q,
                        std::int64_t s,
                        T* d_grad,
                        cudaStream_t stream) {
  const unsigned int blocks = ElementwiseGrid(s);
  PoolArray<double> partial(std::int64_t(blocks) + 1, stream);
  SquaredErrorKernel<<<blocks, kThreads, 0, stream>>>(
      d_p, d_q, s, d_grad, partial.get());
  SYMOPT_CUDA_CHECK(cudaGetLastError());
  SumKernel<<<1, kThreads, 0, stream>>>(
      partial.get(), blocks, partial.get() + blocks);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
  return ReadBack(partial.get() + blocks, stream) / double(s);
}

template <typename T>
std::int64_t CountCorrect(const T* d_logits,
                          const std::int32_t* labels,
                          std::int64_t n,
                          std::int64_t k,
                          cudaStream_t stream) {
  PoolArray<std::int32_t> d_labels = UploadLabels(labels, n, stream);
  PoolArray<unsigned long long> d_count(1, stream);
  SYMOPT_CUDA_CHECK(
      cudaMemsetAsync(d_count.get(), 0, sizeof(unsigned long long), stream));
  CountCorrectKernel<<<CheckedGrid((n + kThreads - 1) / kThreads, "accuracy"),
                       kThreads,
                       0,
                       stream>>>(d_logits, d_labels.get(), n, k, d_count.get());
  SYMOPT_CUDA_CHECK(cudaGetLastError());
  return std::int64_t(ReadBack(d_count.get(), stream));
}

// ---- explicit instantiations
// -------------------------------------------------

#define SYMOPT_INSTANTIATE_DENSE(T)                                           \
  template void LinearForward<T>(const T*,                                    \
                                 const T*,                                    \
                                 const T*,                                    \
                                 T*,                                          \
                                 std::int64_t,                                \
                                 std::int64_t,                                \
                                 std::int64_t,                                \
                                 cudaStream_t);                               \
  template void LinearBackward<T>(const T*,                                   \
                                  const T*,                                   \
                                  const T*,                                   \
                                  T*,                                         \
                                  T*,                                         \
                                  T*,                                         \
                                  std::int64_t,                               \
                                  std::int64_t,                               \
                                  std::int64_t,                               \
                                  cudaStream_t);                              \
  template void ActivationForward<T>(                                         \
      Activation, const T*, T*, std::int64_t, cudaStream_t);                  \
  template void ActivationBackward<T>(                                        \
      Activation, const T*, const T*, T*, std::int64_t, cudaStream_t);        \
  template void MultiplyMask<T>(                                              \
      const T*, const T*, T*, std::int64_t, cudaStream_t);                    \
  template void BatchNormForward<T>(                                          \
      const BatchNormArgs<T>&, bool, const T*, T*, cudaStream_t);             \
  template void BatchNormBackward<T>(const BatchNormArgs<T>&,                 \
                                     bool,                                    \
                                     const T*,                                \
                                     const T*,                                \
                                     T*,                                      \
                                     T*,                                      \
                                     T*,                                      \
                                     cudaStream_t);                           \
  template void LayerNormForward<T>(                                          \
      const LayerNormArgs<T>&, const T*, T*, cudaStream_t);                   \
  template void LayerNormBackward<T>(                                         \
      const LayerNormArgs<T>&, const T*, const T*, T*, T*, T*, cudaStream_t); \
  template double SoftmaxCrossEntropy<T>(const T*,                            \
                                         const std::int32_t*,                 \
                                         std::int64_t,                        \
                                         std::int64_t,                        \
                                         T*,                                  \
                                         cudaStream_t);                       \
  template double MeanSquaredError<T>(                                        \
      const T*, const T*, std::int64_t, T*, cudaStream_t);                    \
  template std::int64_t CountCorrect<T>(const T*,                             \
                                        const std::int32_t*,                  \
                                        std::int64_t,                         \
                                        std::int64_t,                         \
                                        cudaStream_t);
SYMOPT_INSTANTIATE_DENSE(float)
SYMOPT_INSTANTIATE_DENSE(double)
#undef SYMOPT_INSTANTIATE_DENSE

}  // namespace dense
}  // namespace cuda
}  // namespace symopt
