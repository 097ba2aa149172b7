// Eigen interop for optimizer parameters: the only optim header that
// includes Eigen (the others stay Eigen-free).
//
//   MakeParameter(name, value, grad, manifold, group)
//       a Parameter over the memory of two Eigen objects (a Matrix, a Map of
//       the user's buffer, a contiguous Block...), without a copy.
//   AsEigen(view)
//       an Eigen::Map of a TensorView (row-major), e.g. of a parameter's value,
//       gradient or momentum buffer, to compute with Eigen in place.
//
// Layout: symopt blocks are row-major rows x cols, and the manifold's
// structure follows the rows (an oblique manifold normalises each ROW). An
// Eigen object qualifies when its storage is exactly that: a RowMajor matrix
// (or map) with contiguous rows (outer stride == cols, inner stride 1), or
// any contiguous vector (a column vector n x 1 is the same memory as a 1 x n
// or n x 1 row-major block; its shape is taken as given). A column-major
// matrix with more than one row and column is rejected at compile time when
// its type says so, because its rows are not contiguous: store the transpose
// row-major, or map its buffer with a RowMajor Map of the transposed shape.
//
// Aliasing: value and grad must not overlap. The Eigen objects must outlive
// the parameter (and the optimizer using it) and must not be resized.
#pragma once

#include <Eigen/Core>
#include <memory>
#include <string>

#include "optim/parameter.h"

namespace symopt {

template <typename T>
using RowMajorMatrix =
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Requires: Derived has direct access (a Matrix, Map or contiguous Block);
// value and grad contiguous in row-major order with manifold's shape.
template <typename DerivedValue, typename DerivedGrad>
Parameter<typename DerivedValue::Scalar> MakeParameter(
    std::string name,
    Eigen::DenseBase<DerivedValue>& value,
    Eigen::DenseBase<DerivedGrad>& grad,
    std::shared_ptr<const Manifold<typename DerivedValue::Scalar>> manifold,
    int group = 0) {
  using T = typename DerivedValue::Scalar;
  static_assert(std::is_same_v<T, typename DerivedGrad::Scalar>,
                "value and gradient must have the same scalar type");
  static_assert((int(DerivedValue::Flags) & Eigen::DirectAccessBit) &&
                    (int(DerivedGrad::Flags) & Eigen::DirectAccessBit),
                "parameters need Eigen objects with direct memory access");
  static_assert(bool(DerivedValue::IsRowMajor) ||
                    DerivedValue::RowsAtCompileTime == 1 ||
                    DerivedValue::ColsAtCompileTime == 1,
                "a column-major matrix does not store rows contiguously; use a "
                "RowMajor matrix or map (see optim/eigen.h)");
  static_assert(bool(DerivedGrad::IsRowMajor) ||
                    DerivedGrad::RowsAtCompileTime == 1 ||
                    DerivedGrad::ColsAtCompileTime == 1,
                "a column-major matrix does not store rows contiguously; use a "
                "RowMajor matrix or map (see optim/eigen.h)");
  auto contiguous = [](const auto& m) {
    // Contiguous row-major (or vector) storage of rows() x cols() values.
    if (m.innerStride() != 1) return m.rows() <= 1 && m.cols() <= 1;
    if (m.rows() == 1 || m.cols() == 1) return true;
    return m.outerStride() == m.innerSize();
  };
  SYMOPT_CHECK(contiguous(value.derived()) && contiguous(grad.derived()),
               "parameter '" << name
                             << "': Eigen value/gradient storage is not "
                                "contiguous row-major");
  SYMOPT_CHECK(grad.rows() == value.rows() && grad.cols() == value.cols(),
               "parameter '" << name << "': gradient is " << grad.rows() << "x"
                             << grad.cols() << " but the value is "
                             << value.rows() << "x" << value.cols());
  return MakeParameter<T>(std::move(name),
                          value.derived().data(),
                          grad.derived().data(),
                          value.rows(),
                          value.cols(),
                          std::move(manifold),
                          group);
}

// A row-major Eigen view of a host TensorView (no copy).
template <typename T>
Eigen::Map<RowMajorMatrix<T>> AsEigen(const TensorView<T>& v) {
  SYMOPT_CHECK(v.device == Device::kCpu,
               "AsEigen needs a host view, got " << v);
  return Eigen::Map<RowMajorMatrix<T>>(v.data, v.rows, v.cols);
}

template <typename T>
Eigen::Map<const RowMajorMatrix<T>> AsEigen(const TensorView<const T>& v) {
  SYMOPT_CHECK(v.device == Device::kCpu,
               "AsEigen needs a host view, got " << v);
  return Eigen::Map<const RowMajorMatrix<T>>(v.data, v.rows, v.cols);
}

}  // namespace symopt
