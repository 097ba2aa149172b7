// Test helpers for the group layers (nn/group_conv.h, nn/flip_invariant.h):
// max-norm comparisons of tensors and the grid symmetries of images, built on
// data::ApplySymmetry (the project's one definition of them). Random tensors
// and CheckThrowsNaming come from layer_checks.h.
//   Rotate(x)   every trailing n x n plane turned 90 degrees counter-clockwise,
//               (R f)[i][j] = f[j][n-1-i];
//   Flip(x)     the horizontal flip of the last axis, x[.., W-1-w].
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "catch.h"
#include "data/transforms.h"
#include "nn/tensor.h"

namespace symopt {
namespace testing {

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
