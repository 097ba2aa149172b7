// What the Ceres adapter costs on oblique weight blocks (rows x cols), and why
// it overrides RightMultiplyByPlusJacobian (STYLE C3).
//
//   BM_RightMultiply/<rows>/<cols>        the adapter: B(x)^T per row, O(N)
//   BM_RightMultiplyDefault/<rows>/<cols> Ceres's default: form the N x d
//                                         PlusJacobian, then multiply, O(N d)
//   BM_Plus/<rows>/<cols>                 Plus = Retract(x, B(x) delta)
//   BM_RetractOnly/<rows>/<cols>          symopt's Retract of an ambient
//                                         tangent vector (the floor for Plus)
//
// GradientProblemSolver calls RightMultiplyByPlusJacobian with one row (the
// gradient) and Plus once per line-search trial, so these two are the
// adapter's cost per iteration. Every result is validated after the timed
// loop: B(x) applied to the tangent result must equal P_x applied to the
// ambient input (both are the projection).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "adapters/ceres_manifold.h"
#include "manifolds/oblique.h"

namespace {

using symopt::ceres::ManifoldAdapter;

struct Setup {
  std::shared_ptr<symopt::Oblique<double>> manifold;
  std::unique_ptr<ManifoldAdapter> adapter;
  std::vector<double> x, ambient, tangent;

  Setup(int rows, int cols)
      : manifold(std::make_shared<symopt::Oblique<double>>(rows, cols)),
        adapter(std::make_unique<ManifoldAdapter>(manifold)),
        x(std::size_t(rows) * cols),
        ambient(x.size()),
        tangent(std::size_t(manifold->Dim())) {
    manifold->RandomPoint(View(x.data()), 1);
    std::mt19937_64 rng(2);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (double& a : ambient) a = normal(rng);
  }
  symopt::TensorView<double> View(double* p) const {
    return symopt::TensorView<double>(p, manifold->rows(), manifold->cols());
  }

  // max |B tangent - P_x ambient|: zero up to rounding when tangent is
  // B^T ambient (B B^T = P_x).
  double ProjectionError() const {
    std::vector<double> lifted(x.size()), projected = ambient;
    manifold->TangentBasisMultiply(View(const_cast<double*>(x.data())),
                                   tangent.data(),
                                   View(lifted.data()));
    manifold->Project(View(const_cast<double*>(x.data())),
                      View(projected.data()));
    double err = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      err = std::max(err, std::abs(lifted[i] - projected[i]));
    }
    return err;
  }
};

void Validate(benchmark::State& state, const Setup& s) {
  const double err = s.ProjectionError();
  state.counters["max_err"] = err;
  if (!(err < 1e-10)) state.SkipWithError("B B^T a != P_x a");
}

void BM_RightMultiply(benchmark::State& state) {
  Setup s(int(state.range(0)), int(state.range(1)));
  for (auto _ : state) {
    const bool ok = s.adapter->RightMultiplyByPlusJacobian(
        s.x.data(), 1, s.ambient.data(), s.tangent.data());
    benchmark::DoNotOptimize(ok);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * 8 *
                          std::int64_t(2 * s.x.size() + s.tangent.size()));
  Validate(state, s);
}

void BM_RightMultiplyDefault(benchmark::State& state) {
  Setup s(int(state.range(0)), int(state.range(1)));
  for (auto _ : state) {
    // Ceres's base-class implementation: PlusJacobian into an N x d matrix,
    // then ambient_matrix * jacobian.
    const bool ok = s.adapter->::ceres::Manifold::RightMultiplyByPlusJacobian(
        s.x.data(), 1, s.ambient.data(), s.tangent.data());
    benchmark::DoNotOptimize(ok);
    benchmark::ClobberMemory();
  }
  Validate(state, s);
}

void BM_Plus(benchmark::State& state) {
  Setup s(int(state.range(0)), int(state.range(1)));
  std::vector<double> delta(s.tangent.size(), 1e-3), out(s.x.size());
  for (auto _ : state) {
    const bool ok = s.adapter->Plus(s.x.data(), delta.data(), out.data());
    benchmark::DoNotOptimize(ok);
    benchmark::ClobberMemory();
  }
  // Validate: Minus(Plus(x, delta), x) = delta.
  std::vector<double> back(delta.size());
  double err = 1.0;
  if (s.adapter->Minus(out.data(), s.x.data(), back.data())) {
    err = 0.0;
    for (std::size_t i = 0; i < back.size(); ++i) {
      err = std::max(err, std::abs(back[i] - delta[i]));
    }
  }
  state.counters["max_err"] = err;
  if (!(err < 1e-12)) state.SkipWithError("Minus(Plus(x, d), x) != d");
}

void BM_RetractOnly(benchmark::State& state) {
  Setup s(int(state.range(0)), int(state.range(1)));
  // An ambient tangent vector of the same size as BM_Plus's step.
  std::vector<double> v(s.tangent.size(), 1e-3), xi(s.x.size()),
      out(s.x.size());
  s.manifold->TangentBasisMultiply(
      s.View(s.x.data()), v.data(), s.View(xi.data()));
  for (auto _ : state) {
    std::copy(s.x.begin(), s.x.end(), out.begin());
    const auto report =
        s.manifold->Retract(s.View(out.data()), s.View(xi.data()));
    benchmark::DoNotOptimize(report);
    benchmark::ClobberMemory();
  }
  if (s.manifold->DistanceToManifold(s.View(out.data())) > 1e-12) {
    state.SkipWithError("retraction left the manifold");
  }
}

// Network-sized blocks: an MLP layer (64 x 784, 512 x 784) and a conv layer
// (678 x 9216); the default multiply only where its N x d matrix fits (the
// 64 x 784 Jacobian alone would be 20 GB).
BENCHMARK(BM_RightMultiply)
    ->Args({16, 64})
    ->Args({32, 64})
    ->Args({64, 784})
    ->Args({512, 784})
    ->Args({678, 9216})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RightMultiplyDefault)
    ->Args({16, 64})
    ->Args({32, 64})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Plus)
    ->Args({64, 784})
    ->Args({512, 784})
    ->Args({678, 9216})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RetractOnly)
    ->Args({64, 784})
    ->Args({512, 784})
    ->Args({678, 9216})
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
