// Device semantics of the network module, runnable in every build (CI has no
// GPU): nn::Tensor on the host (To, MoveTo, CopyFrom, Resize(shape, device),
// deep copies), clean refusals of kCuda requests where no device can be used
// (a CPU-only build: NotCompiledError; a CUDA build without a device: Error),
// which name the layer and leave the model on the CPU, unchanged and working,
// the device check of the dense layers, and the thread schedule of the GPU
// per-channel reductions (simulated here, since no kernel runs in CI). With a
// device present, the round trip cpu -> cuda -> cpu of tensors, layers and
// models is bitwise.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/nn_dense_dispatch.h"
#include "catch.h"
#include "layer_checks.h"
#include "manifolds/device.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/normalization.h"
#include "nn/sequential.h"
#include "nn_dense_ops.h"

using namespace symopt;
using namespace symopt::nn;
using symopt::testing::CheckThrowsNaming;
using symopt::testing::RandomTensor;

namespace {

// Bitwise equality of two host tensors (shape and every byte).
template <typename T>
bool BitwiseEqual(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && !a.is_cuda() && !b.is_cuda() &&
         std::memcmp(a.data(), b.data(), std::size_t(a.size()) * sizeof(T)) ==
             0;
}

// Host copies of every parameter value and buffer of a layer.
template <typename T>
std::vector<Tensor<T>> Snapshot(Layer<T>& layer) {
  std::vector<Tensor<T>> s;
  for (const Parameter<T>& p : layer.Params()) {
    Tensor<T> t({p.value.rows, p.value.cols}, p.value.device);
    Copy(TensorView<const T>(p.value), t.AsView());
    s.push_back(t.To(Device::kCpu));
  }
  for (Tensor<T>* b : layer.Buffers()) s.push_back(b->To(Device::kCpu));
  return s;
}

template <typename T>
bool SameSnapshot(const std::vector<Tensor<T>>& a,
                  const std::vector<Tensor<T>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!BitwiseEqual(a[i], b[i])) return false;
  }
  return true;
}

// Expects a kCuda request to fail as this build and machine dictate:
// NotCompiledError without CUDA, Error (not NotCompiledError) with CUDA but no
// device; the message contains every part.
template <typename Fn>
void CheckCudaRefused(Fn fn, const std::vector<std::string>& parts) {
  REQUIRE(CudaDeviceCount() == 0);
  try {
    fn();
    FAIL("no error thrown for a CUDA request without a device");
  } catch (const NotCompiledError& e) {
    INFO("message: " << e.what());
    CHECK_FALSE(CudaCompiled());
    for (const std::string& part : parts) {
      CHECK(std::string(e.what()).find(part) != std::string::npos);
    }
  } catch (const Error& e) {
    INFO("message: " << e.what());
    CHECK(CudaCompiled());
    for (const std::string& part : parts) {
      CHECK(std::string(e.what()).find(part) != std::string::npos);
    }
  }
}

std::unique_ptr<Sequential<float>> SmallModel() {
  auto model = std::make_unique<Sequential<float>>();
  model->Emplace<Linear<float>>(12, 8, /*seed=*/3);
  model->Emplace<BatchNorm<float>>(8);
  model->Emplace<ReLU<float>>();
  model->Emplace<Dropout<float>>(0.25, /*seed=*/5);
  model->Emplace<Linear<float>>(8, 4, /*seed=*/4);
  model->Emplace<Tanh<float>>();
  return model;
}

}  // namespace

TEST_CASE("Tensor on the host: copies are deep, To/MoveTo/CopyFrom/Resize",
          "[nn][device]") {
  const Tensor<float> a = RandomTensor<float>({3, 4}, 1);
  Tensor<float> b = a;  // copy constructor
  REQUIRE(BitwiseEqual(a, b));
  CHECK(b.data() != a.data());
  b[0] = b[0] + 1.0f;
  CHECK(b[0] != a[0]);  // deep: the original is untouched

  Tensor<float> c;
  c = a;  // copy assignment
  CHECK(BitwiseEqual(a, c));
  CHECK(c.data() != a.data());

  const Tensor<float> d = a.To(Device::kCpu);
  CHECK(d.device() == Device::kCpu);
  CHECK(BitwiseEqual(a, d));
  CHECK(d.data() != a.data());

  Tensor<float> e = a;
  const float* before = e.data();
  e.MoveTo(Device::kCpu);  // already there: nothing moves
  CHECK(e.data() == before);
  CHECK(BitwiseEqual(a, e));

  Tensor<float> f({7}, 9.0f);
  f.CopyFrom(a);
  CHECK(f.shape() == a.shape());
  CHECK(BitwiseEqual(a, f));

  Tensor<float> g({2, 2}, 1.0f);
  g.Resize({5, 3}, Device::kCpu);
  CHECK(g.device() == Device::kCpu);
  CHECK(g.shape() == Shape{5, 3});
  CHECK(g.size() == 15);
  g.Fill(2.5f);
  for (std::int64_t i = 0; i < g.size(); ++i) CHECK(g[i] == 2.5f);

  const Tensor<double> z({2, 3}, Device::kCpu);
  CHECK(z.device() == Device::kCpu);
  for (std::int64_t i = 0; i < z.size(); ++i) CHECK(z[i] == 0.0);
  const TensorView<const double> v = z.AsView();
  CHECK(v.device == Device::kCpu);
  CHECK(v.rows == 2);
  CHECK(v.cols == 3);
}

TEST_CASE("A layer refuses an input on another device, naming both",
          "[nn][device]") {
  CheckThrowsNaming(
      [] {
        CheckLayerDevice("linear(3->2)", "input", Device::kCpu, Device::kCuda);
      },
      {"linear(3->2)", "input", "cuda", "cpu"});
  CheckThrowsNaming(
      [] {
        CheckLayerDevice(
            "relu", "output gradient", Device::kCuda, Device::kCpu);
      },
      {"relu", "output gradient", "cuda", "cpu"});
  CheckLayerDevice("relu", "input", Device::kCpu, Device::kCpu);  // no throw
}

TEST_CASE("Without a usable device, CUDA requests fail cleanly",
          "[nn][device]") {
  if (CudaDeviceCount() > 0) {
    SUCCEED("a CUDA device is present: covered by the round-trip test");
    return;
  }
  SECTION("a CUDA tensor cannot be made") {
    CheckCudaRefused([] { Tensor<float>({2, 3}, Device::kCuda); }, {});
    Tensor<float> t = RandomTensor<float>({2, 3}, 2);
    const Tensor<float> before = t;
    CheckCudaRefused([&] { t.MoveTo(Device::kCuda); }, {});
    CHECK(BitwiseEqual(t, before));  // untouched, still on the host
    CheckCudaRefused([&] { (void)t.To(Device::kCuda); }, {});
  }

  SECTION("Layer::To(kCuda) names the layer and leaves it on the CPU") {
    Linear<float> linear(6, 3, /*seed=*/1);
    BatchNorm<float> bn(3);
    LayerNorm<float> ln(3);
    Dropout<float> dropout(0.5, 2);
    ReLU<float> relu;
    std::vector<Layer<float>*> layers{&linear, &bn, &ln, &dropout, &relu};
    for (Layer<float>* layer : layers) {
      INFO(layer->Name());
      const std::vector<Tensor<float>> before = Snapshot(*layer);
      CheckCudaRefused([&] { layer->To(Device::kCuda); }, {layer->Name()});
      CHECK(layer->device() == Device::kCpu);
      CHECK(SameSnapshot(before, Snapshot(*layer)));
      for (const Parameter<float>& p : layer->Params()) {
        CHECK(p.value.device == Device::kCpu);
      }
    }
    // Still working, with the same results as an untouched twin.
    const Tensor<float> x = RandomTensor<float>({4, 6}, 3);
    Linear<float> twin(6, 3, /*seed=*/1);
    Tensor<float> y, y_twin;
    linear.Forward(x, y, Mode::kTrain);
    twin.Forward(x, y_twin, Mode::kTrain);
    CHECK(BitwiseEqual(y, y_twin));
  }

  SECTION("Sequential::To(kCuda) names the model and leaves it working") {
    auto model = SmallModel();
    auto twin = SmallModel();
    const std::vector<Tensor<float>> before = Snapshot(*model);
    CheckCudaRefused([&] { model->To(Device::kCuda); },
                     {model->Name(), "To(cuda)"});
    CHECK(model->device() == Device::kCpu);
    for (std::size_t i = 0; i < model->size(); ++i) {
      CHECK(model->layer(i).device() == Device::kCpu);
    }
    CHECK(SameSnapshot(before, Snapshot(*model)));
    const Tensor<float> x = RandomTensor<float>({5, 12}, 4);
    const Tensor<float> y = model->Forward(x, Mode::kTrain);
    const Tensor<float> y_twin = twin->Forward(x, Mode::kTrain);
    CHECK(BitwiseEqual(y, y_twin));
    Tensor<float> dy = RandomTensor<float>(y.shape(), 5);
    model->Backward(dy);
    twin->Backward(dy);
    CHECK(SameSnapshot(Snapshot(*model), Snapshot(*twin)));
  }

  if (!CudaCompiled()) {
    SECTION("the dispatch point throws NotCompiledError without CUDA") {
      float v = 0;
      CHECK_THROWS_AS(
          backend::dense::ActivationForward(nn::Activation::kRelu, &v, &v, 1),
          NotCompiledError);
      const std::int32_t label = 0;
      CHECK_THROWS_AS(
          backend::dense::SoftmaxCrossEntropy<float>(&v, &label, 1, 1, nullptr),
          NotCompiledError);
    }
  }
}

TEST_CASE("With a device, cpu -> cuda -> cpu round trips are bitwise",
          "[nn][device]") {
  if (CudaDeviceCount() == 0) {
    SUCCEED("no CUDA device: covered by the refusal test");
    return;
  }
  const Tensor<double> a = RandomTensor<double>({3, 5, 7}, 6);
  const Tensor<double> on_gpu = a.To(Device::kCuda);
  CHECK(on_gpu.is_cuda());
  CHECK(on_gpu.shape() == a.shape());
  const Tensor<double> copy = on_gpu;  // a device copy
  CHECK(copy.is_cuda());
  CHECK(BitwiseEqual(a, copy.To(Device::kCpu)));
  Tensor<double> moved = a;
  moved.MoveTo(Device::kCuda);
  moved.MoveTo(Device::kCpu);
  CHECK(BitwiseEqual(a, moved));

  auto model = SmallModel();
  const std::vector<Tensor<float>> before = Snapshot(*model);
  model->To(Device::kCuda);
  CHECK(model->device() == Device::kCuda);
  for (const Parameter<float>& p : model->Params()) {
    CHECK(p.value.device == Device::kCuda);
  }
  model->To(Device::kCpu);
  CHECK(SameSnapshot(before, Snapshot(*model)));
}

TEST_CASE("The GPU channel-reduction schedule visits every value once",
          "[nn][device]") {
  // The block-per-chunk schedule of cuda/nn_dense.cu (inner > 1): block
  // (c, split) with 256 threads, thread t walking first = begin + t with
  // stride 256 while j < end. Shapes: inner below, above and equal to 256,
  // and channels long enough to be split into several (and the maximum
  // number of) chunks.
  const std::int64_t kThreads = 256;
  struct Case {
    std::int64_t n, channels, inner;
  };
  for (const Case k : {Case{5, 7, 99},
                       Case{3, 4, 400},
                       Case{2, 3, 256},
                       Case{64, 2, 196},
                       Case{300, 1, 3000},
                       Case{1, 2, 2}}) {
    INFO("n = " << k.n << ", channels = " << k.channels
                << ", inner = " << k.inner);
    const std::int64_t m = k.n * k.inner, total = m * k.channels;
    const std::int64_t splits = nn::ChannelSplits(m, kThreads);
    CHECK(splits >= 1);
    CHECK(splits <= nn::kMaxChannelSplits);
    std::vector<int> seen(std::size_t(total), 0);
    std::vector<std::int64_t> channel_of(std::size_t(total), -1);
    for (std::int64_t c = 0; c < k.channels; ++c) {
      for (std::int64_t split = 0; split < splits; ++split) {
        std::int64_t begin = 0, end = 0;
        nn::ChunkRange(m, splits, split, &begin, &end);
        for (std::int64_t t = 0; t < kThreads; ++t) {
          nn::ChannelWalk walk(begin + t, kThreads, k.channels, k.inner, c);
          for (std::int64_t j = begin + t; j < end; j += kThreads) {
            const std::int64_t a = walk.Address();
            REQUIRE(a >= 0);
            REQUIRE(a < total);
            ++seen[std::size_t(a)];
            channel_of[std::size_t(a)] = c;
            walk.Next();
          }
        }
      }
    }
    bool once = true, right_channel = true;
    for (std::int64_t a = 0; a < total; ++a) {
      once = once && seen[std::size_t(a)] == 1;
      right_channel = right_channel &&
                      channel_of[std::size_t(a)] == (a / k.inner) % k.channels;
    }
    CHECK(once);
    CHECK(right_channel);
  }
  // The row chunks of the tile schedule (inner == 1) partition [0, n).
  for (const std::int64_t n : {std::int64_t(1),
                               std::int64_t(127),
                               std::int64_t(128),
                               std::int64_t(129),
                               std::int64_t(100000)}) {
    const std::int64_t splits = nn::ChannelSplits(n, 8);
    std::int64_t next = 0;
    for (std::int64_t split = 0; split < splits; ++split) {
      std::int64_t begin = 0, end = 0;
      nn::ChunkRange(n, splits, split, &begin, &end);
      CHECK(begin == next);
      CHECK(end >= begin);
      next = end;
    }
    CHECK(next == n);
  }
}
