// The fixed cost of one fused Step call: manifolds so small (one row of 16
// entries, or 2 x 8 with mirror ties) that the time is the call's checks,
// dispatch and loop set-up, not the arithmetic. A model with many small
// parameters pays it once per parameter and step.
//
//   BM_StepCall/oblique_1x16, BM_StepCall/tie_2x8, BM_StepCall/tied_oblique_2x8
//
// After the timed loop every point is checked to be on its manifold.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "manifolds/oblique.h"
#include "manifolds/tie_subspace.h"
#include "manifolds/tied_oblique.h"

namespace {

using symopt::Manifold;
using symopt::TensorView;

// Mirror pairs within each row of 2 x 8: class r * 4 + min(c, 7 - c).
symopt::TiePattern MirrorPairs() {
  symopt::TiePattern p;
  p.rows = 2;
  p.cols = 8;
  p.num_classes = 8;
  p.class_of.resize(16);
  for (int r = 0; r < 2; ++r) {
    for (int c = 0; c < 8; ++c)
      p.class_of[r * 8 + c] = r * 4 + std::min(c, 7 - c);
  }
  return p;
}

void RunStepCalls(benchmark::State& state, const Manifold<float>& man) {
  const std::int64_t rows = man.rows(), cols = man.cols(), n = rows * cols;
  std::vector<float> x(n), g(n, 0.01f), m(n, 0.0f);
  man.RandomPoint(TensorView<float>(x.data(), rows, cols), 1);
  symopt::StepOptions o;
  o.lr = 0.01;
  o.momentum = 0.9;
  for (auto _ : state) {
    man.Step(TensorView<float>(x.data(), rows, cols),
             TensorView<const float>(g.data(), rows, cols),
             TensorView<float>(m.data(), rows, cols),
             o);
    benchmark::ClobberMemory();
  }
  const double distance =
      man.DistanceToManifold(TensorView<const float>(x.data(), rows, cols));
  state.counters["distance"] = distance;
  if (!(distance <= 1e-5)) state.SkipWithError("left the manifold");
}

void BM_StepCall_Oblique(benchmark::State& state) {
  RunStepCalls(state, symopt::Oblique<float>(1, 16));
}

void BM_StepCall_Tie(benchmark::State& state) {
  RunStepCalls(state, symopt::TieSubspace<float>(MirrorPairs()));
}

void BM_StepCall_TiedOblique(benchmark::State& state) {
  RunStepCalls(state, symopt::TiedOblique<float>(MirrorPairs()));
}

}  // namespace

BENCHMARK(BM_StepCall_Oblique)->Name("BM_StepCall/oblique_1x16");
BENCHMARK(BM_StepCall_Tie)->Name("BM_StepCall/tie_2x8");
BENCHMARK(BM_StepCall_TiedOblique)->Name("BM_StepCall/tied_oblique_2x8");

BENCHMARK_MAIN();
