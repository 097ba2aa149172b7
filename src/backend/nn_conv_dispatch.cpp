// The dispatch point of the convolution, pooling and group layers (see
// backend/nn_conv_dispatch.h): chunk planning and the host-side orchestration
// of the GPU convolution (kernels of cuda/nn_conv.cu plus cuda::Gemm), or
// NotCompiledError in a build without CUDA.
#include "backend/nn_conv_dispatch.h"

#include <algorithm>
#include <climits>

#include "manifolds/check.h"
#include "symopt_config.h"
#if SYMOPT_WITH_CUDA
#include "cuda_backend.h"
#include "nn_conv_backend.h"
#endif

namespace symopt {
namespace nn {
namespace backend {

namespace {

#if SYMOPT_WITH_CUDA
// The kernel set of the *Steps templates: the CUDA kernels and cuBLAS, on the
// legacy default stream.
struct CudaKernels {
  template <typename T>
  static void Im2Col(const ConvGeometry& g,
                     std::int64_t m,
                     const T* x,
                     T* col) {
    cuda::ConvIm2Col(g, m, x, col, nullptr);
  }
  template <typename T>
  static void Col2Im(const ConvGeometry& g,
                     std::int64_t m,
                     const T* col,
                     T* dx) {
    cuda::ConvCol2Im(g, m, col, dx, nullptr);
  }
  template <typename T>
  static void ColumnsToChannels(const T* z,
                                const T* bias,
                                std::int64_t rows,
                                std::int64_t m,
                                std::int64_t hw,
                                T* y) {
    cuda::ColumnsToChannels(z, bias, rows, m, hw, y, nullptr);
  }
  template <typename T>
  static void ChannelsToColumns(
      const T* dy, std::int64_t rows, std::int64_t m, std::int64_t hw, T* z) {
    cuda::ChannelsToColumns(dy, rows, m, hw, z, nullptr);
  }
  template <typename T>
  static void Fill(T* out, std::int64_t n, T value) {
    cuda::FillValue(out, n, value, nullptr);
  }
  template <typename T>
  static void Gemm(bool trans_a,
                   bool trans_b,
                   std::int64_t m,
                   std::int64_t n,
                   std::int64_t k,
                   T alpha,
                   const T* a,
                   std::int64_t lda,
                   const T* b,
                   std::int64_t ldb,
                   T beta,
                   T* c,
                   std::int64_t ldc) {
    cuda::Gemm(trans_a,
               trans_b,
               m,
               n,
               k,
               alpha,
               a,
               lda,
               b,
               ldb,
               beta,
               c,
               ldc,
               nullptr);
  }
};
#else
// The arguments are only named so that every signature stays the same.
template <typename... Args>
[[noreturn]] void NoCuda(const char* what, const Args&...) {
  throw NotCompiledError(std::string(what) +
                         " got device tensors (Device::kCuda), but this build "
                         "of symopt has no CUDA backend (configure with "
                         "-DSYMOPT_WITH_CUDA=ON on a machine with nvcc)");
}
#endif

}  // namespace

std::int64_t ConvChunkSamples(const ConvGeometry& g,
                              std::int64_t rows,
                              std::int64_t budget) {
  const std::int64_t kk = g.kk(), hw = g.hw();
  SYMOPT_CHECK(budget >= 1 && g.n >= 1 && kk >= 1 && rows >= 1 && hw >= 1,
               "ConvChunkSamples: need budget, samples, kk, rows, hw >= 1, got "
                   << budget << ", " << g.n << ", " << kk << ", " << rows
                   << ", " << hw);
  SYMOPT_CHECK(kk <= INT_MAX && rows <= INT_MAX && hw <= INT_MAX,
               "ConvChunkSamples: a convolution with kk = "
                   << kk << ", rows = " << rows << ", hw = " << hw
                   << " exceeds cuBLAS's 32-bit sizes");
  const std::int64_t per_sample = std::max(kk, rows) * hw;
  std::int64_t m = std::max<std::int64_t>(1, budget / per_sample);
  m = std::min(m, std::max<std::int64_t>(1, INT_MAX / hw));
  return std::min(m, g.n);
}

template <typename T>
void ConvForwardGpu(const ConvGeometry& g,
                    const T* d_x,
                    const T* d_weight,
                    std::int64_t rows,
                    const T* d_bias,
                    T* d_y,
                    ConvDeviceScratch<T>& scratch,
                    std::int64_t budget) {
#if SYMOPT_WITH_CUDA
  const std::int64_t kk = g.kk(), hw = g.hw();
  const std::int64_t chunk = ConvChunkSamples(g, rows, budget);
  T* col = Reserve(scratch.col, kk * chunk * hw);
  T* z = Reserve(scratch.mat, rows * chunk * hw);
  ConvForwardSteps<CudaKernels>(
      g, d_x, d_weight, rows, d_bias, d_y, chunk, col, z);
#else
  NoCuda("conv forward", g, d_x, d_weight, rows, d_bias, d_y, scratch, budget);
#endif
}

template <typename T>
void ConvBackwardGpu(const ConvGeometry& g,
                     const T* d_x,
                     const T* d_weight,
                     std::int64_t rows,
                     const T* d_dy,
                     T* d_dweight,
                     T* d_dbias,
                     T* d_dx,
                     ConvDeviceScratch<T>& scratch,
                     std::int64_t budget) {
#if SYMOPT_WITH_CUDA
  const std::int64_t kk = g.kk(), hw = g.hw();
  const std::int64_t chunk = ConvChunkSamples(g, rows, budget);
  T* col = Reserve(scratch.col, kk * chunk * hw);
  T* dz = Reserve(scratch.mat, rows * chunk * hw);
  T* ones = d_dbias != nullptr ? Reserve(scratch.ones, chunk * hw) : nullptr;
  ConvBackwardSteps<CudaKernels>(g,
                                 d_x,
                                 d_weight,
                                 rows,
                                 d_dy,
                                 d_dweight,
                                 d_dbias,
                                 d_dx,
                                 chunk,
                                 col,
                                 dz,
                                 ones);
#else
  NoCuda("conv backward",
         g,
         d_x,
         d_weight,
         rows,
         d_dy,
         d_dweight,
         d_dbias,
         d_dx,
         scratch,
         budget);
#endif
}

DeviceTieTables UploadTieTables(const std::vector<std::int32_t>& class_of,
                                std::int64_t num_classes) {
  const internal::MemberCsr csr =
      internal::BuildMemberCsr(class_of, num_classes);
  SYMOPT_CHECK(
      std::int64_t(csr.members.size()) == std::int64_t(class_of.size()),
      "UploadTieTables: the pattern has zeroed entries; the layers' "
      "patterns have none");
  DeviceTieTables t;
  t.size = std::int64_t(class_of.size());
  t.classes = num_classes;
  t.class_of = DeviceBuffer<std::int32_t>(t.size);
  t.offsets = DeviceBuffer<std::int32_t>(num_classes + 1);
  t.members = DeviceBuffer<std::int32_t>(t.size);
  t.class_of.CopyFromHost(class_of.data());
  t.offsets.CopyFromHost(csr.offsets.data());
  t.members.CopyFromHost(csr.members.data());
  return t;
}

template <typename T>
void ExpandGpu(const DeviceTieTables& t,
               std::int64_t rows,
               const T* d_in,
               std::int64_t in_cols,
               T* d_out) {
#if SYMOPT_WITH_CUDA
  cuda::GatherRows(
      d_in, in_cols, t.class_of.data(), rows, t.size, d_out, nullptr);
#else
  NoCuda("tie expansion", t, rows, d_in, in_cols, d_out);
#endif
}

template <typename T>
void ClassSumGpu(const DeviceTieTables& t,
                 std::int64_t rows,
                 const T* d_in,
                 std::int64_t in_cols,
                 bool accumulate,
                 T* d_out) {
#if SYMOPT_WITH_CUDA
  cuda::ClassSumRows(d_in,
                     in_cols,
                     t.offsets.data(),
                     t.members.data(),
                     rows,
                     t.classes,
                     accumulate,
                     d_out,
                     nullptr);
#else
  NoCuda("class sum", t, rows, d_in, in_cols, accumulate, d_out);
#endif
}

template <typename T>
void MaxPoolForwardGpu(const internal::PoolGeometry& g,
                       const T* d_x,
                       T* d_y,
                       std::int32_t* d_arg) {
#if SYMOPT_WITH_CUDA
  cuda::MaxPoolForward(g, d_x, d_y, d_arg, nullptr);
#else
  NoCuda("maxpool forward", g, d_x, d_y, d_arg);
#endif
}

template <typename T>
void MaxPoolBackwardGpu(const internal::PoolGeometry& g,
                        const T* d_dy,
                        const std::int32_t* d_arg,
                        T* d_dx) {
#if SYMOPT_WITH_CUDA
  cuda::MaxPoolBackward(g, d_dy, d_arg, d_dx, nullptr);
#else
  NoCuda("maxpool backward", g, d_dy, d_arg, d_dx);
#endif
}

template <typename T>
void AvgPoolForwardGpu(const internal::PoolGeometry& g, const T* d_x, T* d_y) {
#if SYMOPT_WITH_CUDA
  cuda::AvgPoolForward(g, d_x, d_y, nullptr);
#else
  NoCuda("avgpool forward", g, d_x, d_y);
#endif
}

template <typename T>
void AvgPoolBackwardGpu(const internal::PoolGeometry& g,
                        const T* d_dy,
                        T* d_dx) {
#if SYMOPT_WITH_CUDA
  cuda::AvgPoolBackward(g, d_dy, d_dx, nullptr);
#else
  NoCuda("avgpool backward", g, d_dy, d_dx);
#endif
}

template <typename T>
void RotationPoolForwardGpu(
    const T* d_x, std::int64_t groups, std::int64_t hw, bool is_max, T* d_y) {
#if SYMOPT_WITH_CUDA
  cuda::RotationPoolForward(d_x, groups, hw, is_max, d_y, nullptr);
#else
  NoCuda("rotation pool forward", d_x, groups, hw, is_max, d_y);
#endif
}

template <typename T>
void RotationPoolBackwardGpu(const T* d_x,
                             const T* d_dy,
                             std::int64_t groups,
                             std::int64_t hw,
                             bool is_max,
                             T* d_dx) {
#if SYMOPT_WITH_CUDA
  cuda::RotationPoolBackward(d_x, d_dy, groups, hw, is_max, d_dx, nullptr);
#else
  NoCuda("rotation pool backward", d_x, d_dy, groups, hw, is_max, d_dx);
#endif
}

#define SYMOPT_INSTANTIATE_NN_CONV_DISPATCH(T)                                 \
  template void ConvForwardGpu<T>(const ConvGeometry&,                         \
                                  const T*,                                    \
                                  const T*,                                    \
                                  std::int64_t,                                \
                                  const T*,                                    \
                                  T*,                                          \
                                  ConvDeviceScratch<T>&,                       \
                                  std::int64_t);                               \
  template void ConvBackwardGpu<T>(const ConvGeometry&,                        \
                                   const T*,                                   \
                                   const T*,                                   \
                                   std::int64_t,                               \
                                   const T*,                                   \
                                   T*,                                         \
                                   T*,                                         \
                                   T*,                                         \
                                   ConvDeviceScratch<T>&,                      \
                                   std::int64_t);                              \
  template void ExpandGpu<T>(                                                  \
      const DeviceTieTables&, std::int64_t, const T*, std::int64_t, T*);       \
  template void ClassSumGpu<T>(                                                \
      const DeviceTieTables&, std::int64_t, const T*, std::int64_t, bool, T*); \
  template void MaxPoolForwardGpu<T>(                                          \
      const internal::PoolGeometry&, const T*, T*, std::int32_t*);             \
  template void MaxPoolBackwardGpu<T>(                                         \
      const internal::PoolGeometry&, const T*, const std::int32_t*, T*);       \
  template void AvgPoolForwardGpu<T>(                                          \
      const internal::PoolGeometry&, const T*, T*);                            \
  template void AvgPoolBackwardGpu<T>(                                         \
      const internal::PoolGeometry&, const T*, T*);                            \
  template void RotationPoolForwardGpu<T>(                                     \
      const T*, std::int64_t, std::int64_t, bool, T*);                         \
  template void RotationPoolBackwardGpu<T>(                                    \
      const T*, const T*, std::int64_t, std::int64_t, bool, T*);
SYMOPT_INSTANTIATE_NN_CONV_DISPATCH(float)
SYMOPT_INSTANTIATE_NN_CONV_DISPATCH(double)
#undef SYMOPT_INSTANTIATE_NN_CONV_DISPATCH

}  // namespace backend
}  // namespace nn
}  // namespace symopt
