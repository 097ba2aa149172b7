// Test helpers for the group layers: a central finite-difference check of
// a layer's Backward (input gradient and accumulated parameter gradients), and
// the 90-degree rotation and flip actions on feature maps.
//
// CheckGradientsFiniteDifference(layer, x, mode, seed, tol)
//   L(x, w) = sum_i c_i y_i with fixed random c; compares Backward's dx and
//   parameter gradients with (L(+h) - L(-h)) / 2h for every entry, in double,
//   and checks that a second Backward ADDS to the parameter gradients.
//
// Until the project's generic CheckLayerGradients (tests/layer_checks.h, issue
// 4, branch h/nn) is merged, this is the group layers' checker.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "catch.h"
#include "nn/layer.h"

namespace symopt {
namespace testing {

template <typename T>
nn::Tensor<T> RandomTensor(const nn::Shape& shape,
                           std::uint64_t seed,
                           double scale = 1.0) {
  nn::Tensor<T> t(shape);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  for (std::int64_t i = 0; i < t.size(); ++i) t[i] = T(normal(rng));
  return t;
}

template <typename T>
double MaxAbsDiff(const nn::Tensor<T>& a, const nn::Tensor<T>& b) {
  REQUIRE(a.shape() == b.shape());
  double d = 0.0;
  for (std::int64_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(double(a[i]) - double(b[i])));
  }
  return d;
}

template <typename T>
double MaxAbs(const nn::Tensor<T>& a) {
  double d = 0.0;
  for (std::int64_t i = 0; i < a.size(); ++i)
    d = std::max(d, std::abs(double(a[i])));
  return d;
}

// Rotates every trailing n x n plane by 90 degrees counter-clockwise:
// (R f)[i][j] = f[j][n-1-i]. Works on any tensor whose last two dims are equal.
template <typename T>
nn::Tensor<T> RotatePlanes(const nn::Tensor<T>& x) {
  const int nd = x.ndim();
  const std::int64_t n = x.dim(nd - 1);
  REQUIRE(x.dim(nd - 2) == n);
  nn::Tensor<T> y(x.shape());
  const std::int64_t planes = x.size() / (n * n);
  for (std::int64_t p = 0; p < planes; ++p) {
    const T* xp = x.data() + p * n * n;
    T* yp = y.data() + p * n * n;
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j < n; ++j)
        yp[i * n + j] = xp[j * n + (n - 1 - i)];
    }
  }
  return y;
}

// The P4 action on [N, C, 4, H, H]: (g f)[c, r] = R f[c, r-1 mod 4].
template <typename T>
nn::Tensor<T> ActP4(const nn::Tensor<T>& x) {
  REQUIRE(x.ndim() == 5);
  REQUIRE(x.dim(2) == 4);
  const nn::Tensor<T> rotated = RotatePlanes(x);
  nn::Tensor<T> y(x.shape());
  const std::int64_t plane = x.dim(3) * x.dim(4);
  const std::int64_t groups = x.dim(0) * x.dim(1);
  for (std::int64_t g = 0; g < groups; ++g) {
    for (std::int64_t r = 0; r < 4; ++r) {
      std::copy_n(rotated.data() + (g * 4 + (r + 3) % 4) * plane,
                  plane,
                  y.data() + (g * 4 + r) * plane);
    }
  }
  return y;
}

// Horizontal flip of the last axis: (T x)[.., w] = x[.., W-1-w].
template <typename T>
nn::Tensor<T> FlipLastAxis(const nn::Tensor<T>& x) {
  const std::int64_t w = x.dim(x.ndim() - 1);
  nn::Tensor<T> y(x.shape());
  for (std::int64_t row = 0; row < x.size() / w; ++row) {
    for (std::int64_t i = 0; i < w; ++i)
      y[row * w + i] = x[row * w + (w - 1 - i)];
  }
  return y;
}

inline void CheckClose(double numeric, double analytic, double tol) {
  const double scale = std::max({1.0, std::abs(numeric), std::abs(analytic)});
  INFO("numeric " << numeric << " analytic " << analytic);
  CHECK(std::abs(numeric - analytic) <= tol * scale);
}

inline void CheckGradientsFiniteDifference(nn::Layer<double>& layer,
                                           const nn::Tensor<double>& x0,
                                           nn::Mode mode,
                                           std::uint64_t seed,
                                           double tol = 1e-6) {
  const double h = 1e-5;
  nn::Tensor<double> x = x0, y, dx;
  layer.Forward(x, y, mode);
  const nn::Tensor<double> c = RandomTensor<double>(y.shape(), seed);
  auto loss = [&]() {
    nn::Tensor<double> out;
    layer.Forward(x, out, mode);
    double s = 0.0;
    for (std::int64_t i = 0; i < out.size(); ++i) s += c[i] * out[i];
    return s;
  };
  layer.ZeroGrad();
  layer.Forward(x, y, mode);
  layer.Backward(x, y, c, dx);
  REQUIRE(dx.shape() == x.shape());
  std::vector<std::vector<double>> grads;
  for (const Parameter<double>& p : layer.Params()) {
    grads.emplace_back(p.grad.data, p.grad.data + p.grad.size());
  }
  {
    INFO(layer.Name() << ": input gradient");
    for (std::int64_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      x[i] = v + h;
      const double lp = loss();
      x[i] = v - h;
      const double lm = loss();
      x[i] = v;
      INFO("input entry " << i);
      CheckClose((lp - lm) / (2 * h), dx[i], tol);
    }
  }
  std::vector<Parameter<double>> params = layer.Params();
  for (std::size_t k = 0; k < params.size(); ++k) {
    INFO(layer.Name() << ": gradient of " << params[k].name);
    double* w = params[k].value.data;
    for (std::int64_t i = 0; i < params[k].value.size(); ++i) {
      const double v = w[i];
      w[i] = v + h;
      const double lp = loss();
      w[i] = v - h;
      const double lm = loss();
      w[i] = v;
      INFO("entry " << i);
      CheckClose((lp - lm) / (2 * h), grads[k][i], tol);
    }
  }
  // Backward accumulates: a second call doubles the parameter gradients.
  layer.Forward(x, y, mode);
  layer.Backward(x, y, c, dx);
  params = layer.Params();
  for (std::size_t k = 0; k < params.size(); ++k) {
    for (std::int64_t i = 0; i < params[k].grad.size(); ++i) {
      CheckClose(params[k].grad.data[i], 2 * grads[k][i], 1e-12);
    }
  }
}

}  // namespace testing
}  // namespace symopt
