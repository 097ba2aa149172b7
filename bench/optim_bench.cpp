// What the optimizer layer costs on top of the manifolds' fused steps, on
// the parameter set of a small MLP (paper 001's archBN shape: 784-512-512-10,
// unit-norm filters, Euclidean biases), float, SGD + momentum 0.9:
//
//   BM_ManifoldSteps        Manifold::Step of every parameter, called directly:
//                           the floor for the optimizer
//   BM_OptimizerStep/1      RiemannianSgd::Step with the NaN/Inf screen
//   BM_OptimizerStep/0      RiemannianSgd::Step without it (check_finite=false)
//   BM_GradientNorm         RiemannianSgd::GradientNorm
//   BM_BoldDriverEpoch      BoldDriver::EndEpoch, alternately accepting (a
//                           snapshot copy) and rejecting (a restore)
//   BM_CheckpointSave       SaveCheckpoint (write, fsync, rename) and
//   BM_CheckpointLoad       LoadCheckpoint (read, CRC, full validation), in
//                           $SYMOPT_BENCH_DIR (default: the temp directory)
//
// bytes_per_second counts the parameter bytes touched: 5 arrays per step
// (x, g, m read; x, m written), 1 per checkpoint. The whole set (~0.67M
// entries, 8 MB for x, g and m) fits in a 32 MB last-level cache, so these
// measure overhead, not DRAM bandwidth (bench/oblique_bench.cpp does that).
// After each timed loop the results are validated: unit rows, the expected
// step count, an exact checkpoint round trip.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "manifolds/euclidean.h"
#include "manifolds/oblique.h"
#include "optim/bold_driver.h"
#include "optim/checkpoint.h"
#include "optim/sgd.h"

namespace {

using namespace symopt;

struct Mlp {
  struct Block {
    std::string name;
    std::shared_ptr<const Manifold<float>> manifold;
    std::vector<float> value, grad;
  };
  std::vector<Block> blocks;

  Mlp() {
    const int widths[] = {784, 512, 512, 10};
    for (int l = 0; l < 3; ++l) {
      Add("fc" + std::to_string(l) + ".w",
          std::make_shared<Oblique<float>>(widths[l + 1], widths[l]));
      Add("fc" + std::to_string(l) + ".b",
          std::make_shared<Euclidean<float>>(1, widths[l + 1]));
    }
  }
  void Add(std::string name, const std::shared_ptr<const Manifold<float>>& m) {
    Block b{std::move(name),
            m,
            std::vector<float>(m->AmbientSize()),
            std::vector<float>(m->AmbientSize())};
    m->RandomPoint(TensorView<float>(b.value.data(), m->rows(), m->cols()),
                   blocks.size() + 1);
    std::mt19937_64 rng(blocks.size() + 100);
    std::normal_distribution<float> normal(0.0f, 1e-3f);
    for (float& g : b.grad) g = normal(rng);
    blocks.push_back(std::move(b));
  }
  std::vector<Parameter<float>> Params() {
    std::vector<Parameter<float>> out;
    for (Block& b : blocks) {
      Parameter<float> p;
      p.name = b.name;
      p.manifold = b.manifold;
      p.value = TensorView<float>(
          b.value.data(), b.manifold->rows(), b.manifold->cols());
      p.grad = TensorView<float>(
          b.grad.data(), b.manifold->rows(), b.manifold->cols());
      out.push_back(p);
    }
    return out;
  }
  std::int64_t Entries() const {
    std::int64_t n = 0;
    for (const Block& b : blocks) n += std::int64_t(b.value.size());
    return n;
  }
  // Largest | ||row|| - 1 | over the oblique blocks.
  double WorstRow() const {
    double worst = 0;
    for (const Block& b : blocks) {
      if (b.manifold->Name() != "oblique") continue;
      const std::int64_t cols = b.manifold->cols();
      for (std::int64_t r = 0; r < b.manifold->rows(); ++r) {
        double s = 0;
        for (std::int64_t c = 0; c < cols; ++c) {
          s += double(b.value[r * cols + c]) * double(b.value[r * cols + c]);
        }
        worst = std::max(worst, std::abs(std::sqrt(s) - 1.0));
      }
    }
    return worst;
  }
};

SgdOptions Options(bool check_finite) {
  SgdOptions o;
  o.lr = 0.01;
  o.momentum = 0.9;
  o.check_finite = check_finite;
  return o;
}

void Validate(benchmark::State& state, const Mlp& mlp) {
  if (mlp.WorstRow() > 1e-5) state.SkipWithError("rows left the manifold");
}

void BM_ManifoldSteps(benchmark::State& state) {
  Mlp mlp;
  std::vector<std::vector<float>> momentum;
  for (const auto& b : mlp.blocks) momentum.emplace_back(b.value.size(), 0.0f);
  StepOptions o;
  o.lr = 0.01;
  o.momentum = 0.9;
  for (auto _ : state) {
    for (std::size_t i = 0; i < mlp.blocks.size(); ++i) {
      auto& b = mlp.blocks[i];
      const std::int64_t r = b.manifold->rows(), c = b.manifold->cols();
      b.manifold->Step(TensorView<float>(b.value.data(), r, c),
                       TensorView<const float>(b.grad.data(), r, c),
                       TensorView<float>(momentum[i].data(), r, c),
                       o);
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * mlp.Entries() * 5 * 4);
  Validate(state, mlp);
}
BENCHMARK(BM_ManifoldSteps)->Unit(benchmark::kMicrosecond);

void BM_OptimizerStep(benchmark::State& state) {
  Mlp mlp;
  RiemannianSgd<float> opt(mlp.Params(), Options(state.range(0) != 0));
  for (auto _ : state) {
    const StepSummary s = opt.Step();
    benchmark::DoNotOptimize(s.status);
  }
  state.SetBytesProcessed(state.iterations() * mlp.Entries() * 5 * 4);
  Validate(state, mlp);
  if (opt.step_count() != std::int64_t(state.iterations())) {
    state.SkipWithError("step count does not match the iterations");
  }
}
BENCHMARK(BM_OptimizerStep)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);

void BM_GradientNorm(benchmark::State& state) {
  Mlp mlp;
  RiemannianSgd<float> opt(mlp.Params(), Options(true));
  double norm = 0;
  for (auto _ : state) {
    norm = opt.GradientNorm();
    benchmark::DoNotOptimize(norm);
  }
  state.SetBytesProcessed(state.iterations() * mlp.Entries() * 2 * 4);
  if (!(norm > 0 && std::isfinite(norm))) state.SkipWithError("bad norm");
}
BENCHMARK(BM_GradientNorm)->Unit(benchmark::kMicrosecond);

void BM_BoldDriverEpoch(benchmark::State& state) {
  Mlp mlp;
  RiemannianSgd<float> opt(mlp.Params(), Options(true));
  BoldDriver<float> bold(&opt);
  bold.EndEpoch(1.0);
  double loss = 1.0;
  bool up = false;
  for (auto _ : state) {
    loss += up ? 1e-3 : -2e-3;  // alternately accept and reject
    up = !up;
    benchmark::DoNotOptimize(bold.EndEpoch(loss).accepted);
  }
  state.SetBytesProcessed(state.iterations() * mlp.Entries() * 2 * 4);
  if (bold.rejected() != std::int64_t(state.iterations() / 2)) {
    state.SkipWithError("the driver did not alternate");
  }
}
BENCHMARK(BM_BoldDriverEpoch)->Unit(benchmark::kMicrosecond);

std::string BenchFile() {
  const char* dir = std::getenv("SYMOPT_BENCH_DIR");
  const std::filesystem::path base =
      dir ? std::filesystem::path(dir) : std::filesystem::temp_directory_path();
  return (base / "symopt_optim_bench.ckpt").string();
}

void BM_CheckpointSave(benchmark::State& state) {
  Mlp mlp;
  RiemannianSgd<float> opt(mlp.Params(), Options(true));
  opt.Step();
  const std::string path = BenchFile();
  for (auto _ : state) SaveCheckpoint(path, opt);
  state.SetBytesProcessed(state.iterations() * mlp.Entries() * 2 * 4);
  Mlp other;
  RiemannianSgd<float> fresh(other.Params(), Options(true));
  LoadCheckpoint(path, &fresh);
  if (other.blocks[0].value != mlp.blocks[0].value) {
    state.SkipWithError("round trip differs");
  }
  std::filesystem::remove(path);
}
BENCHMARK(BM_CheckpointSave)->Unit(benchmark::kMillisecond);

void BM_CheckpointLoad(benchmark::State& state) {
  Mlp mlp;
  RiemannianSgd<float> opt(mlp.Params(), Options(true));
  opt.Step();
  const std::string path = BenchFile();
  SaveCheckpoint(path, opt);
  Mlp other;
  RiemannianSgd<float> fresh(other.Params(), Options(true));
  for (auto _ : state) LoadCheckpoint(path, &fresh);
  state.SetBytesProcessed(state.iterations() * mlp.Entries() * 2 * 4);
  if (other.blocks[2].value != mlp.blocks[2].value || fresh.step_count() != 1) {
    state.SkipWithError("round trip differs");
  }
  std::filesystem::remove(path);
}
BENCHMARK(BM_CheckpointLoad)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
