// The one generic gradient check for every nn::Layer (STYLE T4).
//
//   CheckLayerGradients(layer, input_shape, seed, tol [, options])
//
// With x ~ N(0, 1) of input_shape and a random linear functional
// f(x, w) = <r, y(x, w)> of the output (r ~ N(0, 1), fixed seed), it checks in
// double precision:
//   - OutputShape(input_shape) is the shape Forward produces;
//   - dx from Backward(x, y, r, dx) equals central differences
//     (f(x + h e_i) - f(x - h e_i)) / 2h for every input entry i;
//   - every parameter gradient (after ZeroGrad) equals central differences
//     of f in that parameter's entries;
//   - Backward ACCUMULATES parameter gradients: a second Backward doubles them;
//   - the parameter views have the manifold's shape.
// The error measure is |analytic - numeric| / max(1, max |analytic|) per
// tensor, which must be <= tol (1e-6 is a good default with h = 1e-5).
//
// Layers with state in Forward: BatchNorm is checked in train mode (the batch
// statistics are part of f); Dropout must redraw the same mask at each Forward
// (wrap it so it reseeds first); MaxPool needs inputs without near-ties (the
// default N(0, 1) input has gaps >> h almost surely).
//
// Large tensors: at most options.max_entries entries per tensor are checked
// (an evenly spaced subset including the first and last); 0 = all.
//
// Helpers for layer tests:
//   RandomTensor<T>(shape, seed, mean, sd)   i.i.d. normal entries
//   CheckThrowsNaming(fn, {"a", "b"})        fn throws InvalidArgument whose
//                                            message contains every string
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "catch.h"
#include "nn/layer.h"
#include "nn/tensor.h"

namespace symopt {
namespace testing {

struct LayerCheckOptions {
  nn::Mode mode = nn::Mode::kTrain;
  double step = 1e-5;            // central-difference step h
  std::int64_t max_entries = 0;  // per tensor; 0 = every entry
  std::vector<double> input;     // explicit x (empty: N(0, 1) from seed)
};

// Result per checked tensor ("input" or the parameter name), for messages.
struct LayerCheckResult {
  std::string tensor;
  double max_error = 0.0;
};

template <typename T = double>
nn::Tensor<T> RandomTensor(const nn::Shape& shape,
                           std::uint64_t seed,
                           double mean = 0.0,
                           double sd = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(mean, sd);
  nn::Tensor<T> t(shape);
  for (std::int64_t i = 0; i < t.size(); ++i) t[i] = T(normal(rng));
  return t;
}

template <typename Fn>
void CheckThrowsNaming(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    FAIL("no InvalidArgument thrown");
  } catch (const InvalidArgument& e) {
    const std::string what = e.what();
    INFO("message: " << what);
    for (const std::string& part : parts) {
      INFO("expected to contain: " << part);
      CHECK(what.find(part) != std::string::npos);
    }
  }
}

namespace internal {

inline std::vector<std::int64_t> CheckedEntries(std::int64_t n,
                                                std::int64_t max_entries) {
  std::vector<std::int64_t> idx;
  if (max_entries <= 0 || n <= max_entries) {
    for (std::int64_t i = 0; i < n; ++i) idx.push_back(i);
  } else if (max_entries == 1) {
    idx.push_back(0);  // one entry: the first (no spacing to divide by)
  } else {
    for (std::int64_t k = 0; k < max_entries; ++k) {
      idx.push_back(k * (n - 1) / (max_entries - 1));
    }
  }
  return idx;
}

inline double Functional(nn::Layer<double>& layer,
                         const nn::Tensor<double>& x,
                         const nn::Tensor<double>& r,
                         nn::Mode mode) {
  nn::Tensor<double> y;
  layer.Forward(x, y, mode);
  double s = 0.0;
  for (std::int64_t i = 0; i < y.size(); ++i) s += r[i] * y[i];
  return s;
}

inline double RelativeError(const std::vector<double>& analytic,
                            const std::vector<double>& numeric) {
  double scale = 1.0, err = 0.0;
  for (double a : analytic) scale = std::max(scale, std::abs(a));
  for (size_t i = 0; i < analytic.size(); ++i) {
    err = std::max(err, std::abs(analytic[i] - numeric[i]));
  }
  return err / scale;
}

}  // namespace internal

inline std::vector<LayerCheckResult> CheckLayerGradients(
    nn::Layer<double>& layer,
    const nn::Shape& input_shape,
    std::uint64_t seed,
    double tol,
    const LayerCheckOptions& options = {}) {
  INFO("layer " << layer.Name() << ", input " << nn::ShapeString(input_shape));
  std::vector<LayerCheckResult> results;
  const double h = options.step;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);

  nn::Tensor<double> x(input_shape);
  if (options.input.empty()) {
    for (std::int64_t i = 0; i < x.size(); ++i) x[i] = normal(rng);
  } else {
    REQUIRE(std::int64_t(options.input.size()) == x.size());
    for (std::int64_t i = 0; i < x.size(); ++i) x[i] = options.input[i];
  }

  nn::Tensor<double> y;
  layer.Forward(x, y, options.mode);
  REQUIRE(layer.OutputShape(input_shape) == y.shape());
  nn::Tensor<double> r(y.shape());
  for (std::int64_t i = 0; i < r.size(); ++i) r[i] = normal(rng);

  // Analytic gradients.
  layer.set_input_grad_required(true);
  layer.ZeroGrad();
  nn::Tensor<double> dx;
  layer.Backward(x, y, r, dx);
  REQUIRE(dx.shape() == x.shape());
  std::vector<Parameter<double>> params = layer.Params();
  std::vector<std::vector<double>> grads;
  for (const Parameter<double>& p : params) {
    INFO("parameter " << p.name);
    REQUIRE(p.manifold != nullptr);
    CHECK(p.manifold->rows() == p.value.rows);
    CHECK(p.manifold->cols() == p.value.cols);
    REQUIRE(p.grad.size() == p.value.size());
    grads.emplace_back(p.grad.data, p.grad.data + p.grad.size());
  }

  // Input gradient.
  {
    const std::vector<std::int64_t> idx =
        internal::CheckedEntries(x.size(), options.max_entries);
    std::vector<double> analytic, numeric;
    for (std::int64_t i : idx) {
      const double x0 = x[i];
      x[i] = x0 + h;
      const double fp = internal::Functional(layer, x, r, options.mode);
      x[i] = x0 - h;
      const double fm = internal::Functional(layer, x, r, options.mode);
      x[i] = x0;
      analytic.push_back(dx[i]);
      numeric.push_back((fp - fm) / (2 * h));
    }
    const double err = internal::RelativeError(analytic, numeric);
    INFO("input gradient: max relative error " << err);
    CHECK(err <= tol);
    results.push_back({"input", err});
  }

  // Parameter gradients.
  for (size_t k = 0; k < params.size(); ++k) {
    Parameter<double>& p = params[k];
    const std::vector<std::int64_t> idx =
        internal::CheckedEntries(p.value.size(), options.max_entries);
    std::vector<double> analytic, numeric;
    for (std::int64_t i : idx) {
      const double w0 = p.value.data[i];
      p.value.data[i] = w0 + h;
      const double fp = internal::Functional(layer, x, r, options.mode);
      p.value.data[i] = w0 - h;
      const double fm = internal::Functional(layer, x, r, options.mode);
      p.value.data[i] = w0;
      analytic.push_back(grads[k][i]);
      numeric.push_back((fp - fm) / (2 * h));
    }
    const double err = internal::RelativeError(analytic, numeric);
    INFO("parameter " << p.name << ": max relative error " << err);
    CHECK(err <= tol);
    results.push_back({p.name, err});
  }

  // Backward accumulates: a second pass (after a fresh Forward) doubles the
  // parameter gradients.
  if (!params.empty()) {
    layer.Forward(x, y, options.mode);
    layer.Backward(x, y, r, dx);
    for (size_t k = 0; k < params.size(); ++k) {
      INFO("accumulation of parameter " << params[k].name);
      std::vector<double> twice(grads[k].size());
      for (size_t i = 0; i < twice.size(); ++i) twice[i] = 2 * grads[k][i];
      const std::vector<double> got(
          params[k].grad.data, params[k].grad.data + params[k].grad.size());
      CHECK(internal::RelativeError(twice, got) <= 1e-12);
    }
    layer.ZeroGrad();
  }
  return results;
}

}  // namespace testing
}  // namespace symopt
