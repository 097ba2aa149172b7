// The data pipeline's costs: reading IDX files (plain and gzip), one epoch of
// shuffled mini-batches, bilinear rotation, random augmentation of a batch,
// and orbit augmentation. Each benchmark checks its result after the timed
// loop (STYLE B1).
//
//   ./build/bench/data_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "data/dataset.h"
#include "data/idx.h"
#include "data/random.h"

namespace {

using symopt::data::AugmentOptions;
using symopt::data::Batch;
using symopt::data::BatchIterator;
using symopt::data::BatchOptions;
using symopt::data::Dataset;
using symopt::data::IdxCompression;

// n seeded 28 x 28 "digits": a random stroke density in a centred disc.
Dataset SyntheticDigits(std::int64_t n) {
  Dataset d;
  d.images = symopt::nn::Tensor<float>({n, 1, 28, 28});
  d.labels.resize(n);
  symopt::data::Rng rng(17);
  for (std::int64_t k = 0; k < n; ++k) {
    d.labels[k] = int(rng.Below(10));
    for (std::int64_t i = 0; i < 28; ++i) {
      for (std::int64_t j = 0; j < 28; ++j) {
        const double r = std::hypot(i - 13.5, j - 13.5);
        d.images[(k * 28 + i) * 28 + j] =
            r < 10 ? float(std::round(255 * rng.Uniform()) / 255) : 0.0f;
      }
    }
  }
  return d;
}

void BM_ReadIdxDataset(benchmark::State& state) {
  const bool gzip = state.range(0) != 0;
  const std::int64_t n = state.range(1);
  const std::string stem =
      "/tmp/symopt_data_bench_" + std::to_string(n) + (gzip ? "_gz" : "_plain");
  const Dataset d = SyntheticDigits(n);
  symopt::data::SaveIdxDataset(
      d,
      stem + "_images",
      stem + "_labels",
      gzip ? IdxCompression::kGzip : IdxCompression::kNone);
  Dataset back;
  for (auto _ : state) {
    back = symopt::data::LoadIdxDataset(stem + "_images", stem + "_labels");
    benchmark::DoNotOptimize(back.images.data());
  }
  std::remove((stem + "_images").c_str());
  std::remove((stem + "_labels").c_str());
  bool same = back.labels == d.labels;
  for (std::int64_t i = 0; i < d.images.size() && same; ++i) {
    same = back.images[i] == d.images[i];
  }
  if (!same) state.SkipWithError("IDX round trip changed the data");
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * 784);
}
BENCHMARK(BM_ReadIdxDataset)
    ->ArgNames({"gzip", "n"})
    ->Args({0, 10000})
    ->Args({1, 10000})
    ->Unit(benchmark::kMillisecond);

void BM_LoadFashionMnist(benchmark::State& state) {
  const std::string dir = symopt::data::FashionMnistDir();
  if (!symopt::data::IdxTrainTestAvailable(dir)) {
    state.SkipWithError(("Fashion-MNIST not installed in " + dir).c_str());
    return;
  }
  symopt::data::TrainTest ft;
  for (auto _ : state) {
    ft = symopt::data::LoadFashionMnist(dir);
    benchmark::DoNotOptimize(ft.train.images.data());
  }
  if (ft.train.size() != 60000 || ft.test.size() != 10000) {
    state.SkipWithError("Fashion-MNIST has the wrong sizes");
  }
  state.SetItemsProcessed(state.iterations() * 70000);
}
BENCHMARK(BM_LoadFashionMnist)->Unit(benchmark::kMillisecond);

// One epoch of shuffled mini-batches over 60,000 images (Fashion-MNIST's
// training set size), optionally with flips + quarter turns.
void BM_BatchEpoch(benchmark::State& state) {
  const Dataset d = SyntheticDigits(60000);
  BatchOptions options;
  options.batch_size = state.range(0);
  options.seed = 1;
  options.augment.flip_horizontal = state.range(1) != 0;
  options.augment.rotate90 = state.range(1) != 0;
  BatchIterator it(d, options);
  Batch batch;
  std::int64_t epoch = 0, seen = 0;
  for (auto _ : state) {
    it.StartEpoch(epoch++);
    seen = 0;
    while (it.Next(&batch)) seen += std::int64_t(batch.labels.size());
    benchmark::DoNotOptimize(batch.images.data());
  }
  if (seen != d.size()) state.SkipWithError("epoch did not visit every sample");
  state.SetItemsProcessed(state.iterations() * d.size());
}
BENCHMARK(BM_BatchEpoch)
    ->ArgNames({"batch", "augment"})
    ->Args({128, 0})
    ->Args({128, 1})
    ->Unit(benchmark::kMillisecond);

// mnist-rot: every image rotated by its own random angle.
void BM_RandomlyRotated(benchmark::State& state) {
  const Dataset d = SyntheticDigits(state.range(0));
  Dataset r;
  for (auto _ : state) {
    r = symopt::data::RandomlyRotated(d, 3);
    benchmark::DoNotOptimize(r.images.data());
  }
  // Rotation about the centre keeps the disc's content inside the image:
  // the total intensity changes by interpolation only.
  double before = 0, after = 0;
  for (std::int64_t i = 0; i < d.images.size(); ++i) {
    before += d.images[i];
    after += r.images[i];
  }
  if (std::abs(after / before - 1) > 0.02) {
    state.SkipWithError("rotation lost intensity");
  }
  state.SetItemsProcessed(state.iterations() * d.size());
}
BENCHMARK(BM_RandomlyRotated)->Arg(10000)->Unit(benchmark::kMillisecond);

void BM_AugmentBatch(benchmark::State& state) {
  const Dataset d = SyntheticDigits(state.range(0));
  AugmentOptions options;
  options.flip_horizontal = options.flip_vertical = options.rotate90 = true;
  options.max_angle = M_PI / 8;
  symopt::nn::Tensor<float> images;
  std::uint64_t seed = 0;
  for (auto _ : state) {
    images = d.images;
    symopt::data::Augment(images, options, seed++);
    benchmark::DoNotOptimize(images.data());
  }
  for (std::int64_t i = 0; i < images.size(); ++i) {
    if (!(images[i] >= 0.0f && images[i] <= 1.0f)) {
      state.SkipWithError("augmented pixel outside [0, 1]");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * d.size());
}
BENCHMARK(BM_AugmentBatch)->Arg(128)->Unit(benchmark::kMicrosecond);

void BM_OrbitAugmentD4(benchmark::State& state) {
  const Dataset d = SyntheticDigits(state.range(0));
  const auto group = symopt::data::DihedralGroupD4();
  Dataset o;
  for (auto _ : state) {
    o = symopt::data::OrbitAugment(d, group);
    benchmark::DoNotOptimize(o.images.data());
  }
  if (o.size() != 8 * d.size()) state.SkipWithError("wrong orbit size");
  state.SetItemsProcessed(state.iterations() * o.size());
}
BENCHMARK(BM_OrbitAugmentD4)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
