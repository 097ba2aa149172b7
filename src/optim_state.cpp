// The optimizers' device decisions (src/optim_state.h): state placement
// checks, zeroing, host copies, and the fused gradient screen.
#include "optim_state.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>

#include "backend/launch.h"
#include "blas1.h"
#include "manifolds/device.h"
#include "manifolds/euclidean.h"
#include "manifolds/oblique.h"
#include "omp_loops.h"
#include "symopt_config.h"
#if SYMOPT_WITH_CUDA
#include "cuda_backend.h"
#include "optim_backend.h"
#endif

namespace symopt {
namespace internal {

void RequireStateDevice(Device device, const std::string& who) {
  if (device == Device::kCpu) return;
  RequireCudaDevice(who + " is on the GPU (Device::kCuda)");
}

template <typename T>
void CheckDeviceView([[maybe_unused]] TensorView<const T> v,
                     [[maybe_unused]] const std::string& who,
                     [[maybe_unused]] const char* what) {
#if SYMOPT_WITH_CUDA
  if (v.device != Device::kCuda || v.size() == 0) return;
  SYMOPT_CHECK(cuda::IsDevicePointer(v.data),
               who << ": " << what
                   << " is marked Device::kCuda but does not point to device "
                      "memory");
#endif
}

template <typename T>
void ZeroView(TensorView<T> v) {
  if (v.size() == 0) return;
  if (v.device == Device::kCpu) {
    cpu::Fill(T(0), v.data, v.size());
    return;
  }
  DeviceMemset(v.data, 0, std::size_t(v.size()) * sizeof(T), nullptr);
}

template <typename T>
TensorView<const T> HostView(TensorView<const T> v, std::vector<T>* scratch) {
  if (v.device == Device::kCpu) return v;
  scratch->resize(std::size_t(v.size()));
  Copy(v, TensorView<T>(scratch->data(), v.rows, v.cols));
  return TensorView<const T>(scratch->data(), v.rows, v.cols);
}

ScreenLayout BuildScreenLayout(const std::vector<std::int64_t>& sizes) {
  ScreenLayout l;
  l.offset.assign(sizes.size(), 0);
  l.first_chunk.assign(sizes.size() + 1, 0);
  for (std::size_t t = 0; t < sizes.size(); ++t) {
    SYMOPT_CHECK(sizes[t] >= 0,
                 "screen: tensor " << t << " has size " << sizes[t]);
    if (t > 0) l.offset[t] = l.offset[t - 1] + sizes[t - 1];
    l.first_chunk[t + 1] = l.first_chunk[t] + backend::ChunksFor(sizes[t]);
  }
  return l;
}

ScreenHit LocateGlobal(const ScreenLayout& layout, std::int64_t g) {
  SYMOPT_CHECK(!layout.offset.empty() && g >= 0,
               "screen: global index " << g << " outside the layout");
  ScreenHit hit;
  hit.tensor =
      backend::FindSegment(layout.offset.data(), int(layout.offset.size()), g);
  hit.index = g - layout.offset[std::size_t(hit.tensor)];
  return hit;
}

template <typename T>
struct GradientScreen<T>::DeviceData {
#if SYMOPT_WITH_CUDA
  DeviceBuffer<cuda::ScreenTensor<T>> tensors;
  DeviceBuffer<std::int64_t> first_chunk;
  DeviceBuffer<unsigned long long> result;
  std::int64_t total_chunks = 0;
#endif
};

template <typename T>
GradientScreen<T>::GradientScreen(std::vector<TensorView<const T>> tensors,
                                  const std::vector<std::string>& names)
    : tensors_(std::move(tensors)) {
  SYMOPT_CHECK(names.size() == tensors_.size(),
               "GradientScreen: " << tensors_.size() << " tensors but "
                                  << names.size() << " names");
  std::vector<std::int64_t> sizes;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const TensorView<const T>& v = tensors_[i];
    if (v.device == Device::kCpu) continue;
    RequireStateDevice(v.device, names[i]);
    CheckDeviceView(v, names[i], "gradient");
    device_index_.push_back(std::int64_t(i));
    sizes.push_back(v.size());
  }
  num_device_ = std::int64_t(device_index_.size());
  if (num_device_ == 0) return;
  layout_ = BuildScreenLayout(sizes);
#if SYMOPT_WITH_CUDA
  auto data = std::make_unique<DeviceData>();
  std::vector<cuda::ScreenTensor<T>> host(
      static_cast<std::size_t>(num_device_));
  for (std::int64_t j = 0; j < num_device_; ++j) {
    const TensorView<const T>& v = tensors_[std::size_t(device_index_[j])];
    host[std::size_t(j)] = {v.data, v.size(), layout_.offset[std::size_t(j)]};
  }
  data->total_chunks = layout_.first_chunk.back();
  data->tensors = DeviceBuffer<cuda::ScreenTensor<T>>(num_device_);
  data->tensors.CopyFromHost(host.data());
  data->first_chunk = DeviceBuffer<std::int64_t>(num_device_ + 1);
  data->first_chunk.CopyFromHost(layout_.first_chunk.data());
  data->result = DeviceBuffer<unsigned long long>(1);
  device_data_ = std::move(data);
#endif
}

template <typename T>
GradientScreen<T>::~GradientScreen() = default;

namespace {

// cpu::FirstNonFinite, with the threads of symopt::SetNumThreads for large
// tensors: each thread tests its chunks (the screen reads every gradient
// before every step, a pass as long as a third of the fused oblique step's);
// only when one finds something is the first entry located serially.
template <typename T>
std::int64_t FirstNonFiniteHost(const T* x, std::int64_t n) {
  constexpr std::int64_t kParallelMin = std::int64_t(1) << 18;
  constexpr std::int64_t kChunk = std::int64_t(1) << 15;
  if (!UseParallelRegion(n >= kParallelMin)) return cpu::FirstNonFinite(x, n);
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  const double hits = SumLoop(chunks, true, [&](std::int64_t c, double& acc) {
    const std::int64_t begin = c * kChunk;
    if (cpu::FirstNonFinite(x + begin, std::min(kChunk, n - begin)) >= 0) {
      acc += 1;
    }
  });
  return hits > 0 ? cpu::FirstNonFinite(x, n) : -1;
}

}  // namespace

template <typename T>
ScreenHit GradientScreen<T>::First() const {
  ScreenHit hit;
  // The device tensors first (one launch); a host tensor before the device
  // hit can still win below.
#if SYMOPT_WITH_CUDA
  if (num_device_ > 0) {
    DeviceData& d = *device_data_;
    const std::int64_t global = cuda::ScreenNonFinite(d.tensors.data(),
                                                      d.first_chunk.data(),
                                                      int(num_device_),
                                                      d.total_chunks,
                                                      d.result.data(),
                                                      nullptr);
    if (global >= 0) {
      const ScreenHit where = LocateGlobal(layout_, global);
      hit.tensor = device_index_[std::size_t(where.tensor)];
      hit.index = where.index;
    }
  }
#endif
  const std::int64_t host_end =
      hit.tensor >= 0 ? hit.tensor : std::int64_t(tensors_.size());
  for (std::int64_t i = 0; i < host_end; ++i) {
    const TensorView<const T>& v = tensors_[std::size_t(i)];
    if (v.device != Device::kCpu) continue;
    const std::int64_t bad = FirstNonFiniteHost(v.data, v.size());
    if (bad >= 0) return {i, bad};
  }
  return hit;
}

namespace {

// 0: Euclidean, 1: Oblique (MultiStep runs these on the GPU), -1: other.
template <typename T>
int MultiKind(const Manifold<T>& m) {
  if (dynamic_cast<const Euclidean<T>*>(&m) != nullptr) return 0;
  if (dynamic_cast<const Oblique<T>*>(&m) != nullptr) return 1;
  return -1;
}

}  // namespace

template <typename T>
StepPlan<T>::StepPlan(const std::vector<StepTensor<T>>& tensors,
                      const std::vector<int>& groups)
    : tensors_(tensors) {
  SYMOPT_CHECK(groups.size() == tensors_.size(),
               "StepPlan: " << tensors_.size() << " tensors but "
                            << groups.size() << " groups");
  // Device tensors batched by (group, kind, has momentum), in order of
  // first appearance; everything else alone.
  std::map<std::tuple<int, int, bool>, std::size_t> batch_of;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const StepTensor<T>& t = tensors_[i];
    const int kind = MultiKind(*t.manifold);
    if (t.x.device == Device::kCpu || kind < 0) {
      batches_.push_back({{i}, nullptr});
      continue;
    }
    const auto key = std::make_tuple(groups[i], kind, !t.m.empty());
    const auto it = batch_of.find(key);
    if (it == batch_of.end()) {
      batch_of.emplace(key, batches_.size());
      batches_.push_back({{i}, nullptr});
    } else {
      batches_[it->second].members.push_back(i);
    }
  }
  for (Batch& b : batches_) {
    if (b.members.size() < 2) continue;
    std::vector<StepTensor<T>> list;
    for (const std::size_t i : b.members) list.push_back(tensors_[i]);
    const bool with_momentum = !list.front().m.empty();
    b.multi = std::make_unique<MultiStep<T>>(std::move(list), with_momentum);
  }
}

template <typename T>
StepPlan<T>::~StepPlan() = default;

#define SYMOPT_INSTANTIATE_OPTIM_STATE(T)                       \
  template void CheckDeviceView<T>(                             \
      TensorView<const T>, const std::string&, const char*);    \
  template void ZeroView<T>(TensorView<T>);                     \
  template TensorView<const T> HostView<T>(TensorView<const T>, \
                                           std::vector<T>*);    \
  template class GradientScreen<T>;                             \
  template class StepPlan<T>;

SYMOPT_INSTANTIATE_OPTIM_STATE(float)
SYMOPT_INSTANTIATE_OPTIM_STATE(double)
#undef SYMOPT_INSTANTIATE_OPTIM_STATE

}  // namespace internal
}  // namespace symopt
