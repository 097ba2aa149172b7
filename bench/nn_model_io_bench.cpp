// Model-file benchmarks (STYLE B1): SaveModel and LoadModel (nn/model_io.h)
// of the reference models of nn/train.h, with weights on the oblique
// manifold where they feed a batch norm:
//   0: MLP 784-256-BN-ReLU-10   (about 204k parameters, 0.8 MB)
//   1: small CNN 1-16-32 + linear (about 29k parameters, 0.1 MB)
// Save is serialise + CRC + atomic write (temporary file, fsync, rename, fsync
// of the directory): on most disks the two fsyncs dominate. Load is read +
// CRC + validation (names, shapes, finiteness, DistanceToManifold per
// parameter) + copy into the model. Bytes/s counts the file's size. The
// files go to $TMPDIR (default /tmp). Wall-clock time (UseRealTime): the
// fsyncs wait without using CPU.
//
// After the timed loop each benchmark loads the file into a model built with
// another seed and checks it is bitwise the saved one.
//
//   build/bench/nn_model_io_bench
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "nn/model_io.h"
#include "nn/train.h"

namespace symopt {
namespace nn {
namespace {

void Build(Sequential<float>& m, int which, std::uint64_t seed) {
  if (which == 0) {
    BuildMlpBn(m, 28 * 28, 256, 10, seed);
  } else {
    BuildSmallCnn(m, 10, seed);
  }
  UseObliqueBeforeNormalization(m);
}

std::string TempFile() {
  std::string dir =
      (std::filesystem::temp_directory_path() / "symopt_model_io_XXXXXX")
          .string();
  if (::mkdtemp(&dir[0]) == nullptr) return "";
  return dir + "/model.bin";
}

// True if both models hold bitwise the same parameters and buffers.
bool SameModel(Sequential<float>& a, Sequential<float>& b) {
  std::vector<Parameter<float>> pa = a.Params(), pb = b.Params();
  std::vector<Tensor<float>*> ba = a.Buffers(), bb = b.Buffers();
  if (pa.size() != pb.size() || ba.size() != bb.size()) return false;
  for (std::size_t i = 0; i < pa.size(); ++i) {
    if (std::memcmp(pa[i].value.data,
                    pb[i].value.data,
                    std::size_t(pa[i].value.size()) * sizeof(float)) != 0) {
      return false;
    }
  }
  for (std::size_t i = 0; i < ba.size(); ++i) {
    if (std::memcmp(ba[i]->data(),
                    bb[i]->data(),
                    std::size_t(ba[i]->size()) * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

void Validate(benchmark::State& state,
              Sequential<float>& saved,
              const std::string& path) {
  Sequential<float> fresh;
  Build(fresh, int(state.range(0)), 99);
  LoadModel(fresh, path);
  if (!SameModel(saved, fresh)) state.SkipWithError("round trip differs");
  state.SetBytesProcessed(std::int64_t(state.iterations()) *
                          std::int64_t(std::filesystem::file_size(path)));
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
}

void BM_SaveModel(benchmark::State& state) {
  Sequential<float> model;
  Build(model, int(state.range(0)), 1);
  const std::string path = TempFile();
  if (path.empty()) {
    state.SkipWithError("cannot create a temporary directory");
    return;
  }
  for (auto _ : state) SaveModel(model, path);
  Validate(state, model, path);
}

void BM_LoadModel(benchmark::State& state) {
  Sequential<float> model, target;
  Build(model, int(state.range(0)), 1);
  Build(target, int(state.range(0)), 2);
  const std::string path = TempFile();
  if (path.empty()) {
    state.SkipWithError("cannot create a temporary directory");
    return;
  }
  SaveModel(model, path);
  for (auto _ : state) LoadModel(target, path);
  if (!SameModel(model, target)) state.SkipWithError("load differs");
  Validate(state, model, path);
}

BENCHMARK(BM_SaveModel)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_LoadModel)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace nn
}  // namespace symopt

BENCHMARK_MAIN();
