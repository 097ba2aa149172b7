// Test helpers for the group layers (nn/group_conv.h, nn/flip_invariant.h):
// seeded random tensors, max-norm comparisons, and the group actions on
// feature maps, built on data::ApplySymmetry (the project's one definition
// of the grid symmetries):
//   Rotate(x)   every trailing n x n plane turned 90 degrees counter-clockwise,
//               (R f)[i][j] = f[j][n-1-i];
//   Flip(x)     the horizontal flip of the last axis, x[.., W-1-w].
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>

#include "catch.h"
#include "data/transforms.h"
#include "nn/tensor.h"

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
  for (std::int64_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(double(a[i])));
  }
  return d;
}

template <typename T>
nn::Tensor<T> Rotate(const nn::Tensor<T>& x) {
  return data::ApplySymmetry(data::GridSymmetry::Rotation(1), x);
}

template <typename T>
nn::Tensor<T> Flip(const nn::Tensor<T>& x) {
  return data::ApplySymmetry(data::GridSymmetry::FlipHorizontal(), x);
}

}  // namespace testing
}  // namespace symopt
