// Index spaces and linear transformations of them: the raw material of the
// constraint engine (DESIGN.md section 4; paper 000, eq. 6).
//
// An index space is a multi-index shape (m_1, ..., m_M) flattened row-major:
// the multi-index (i_1, ..., i_M) has flat index
//   k = ((i_1 * m_2 + i_2) * m_3 + ...) * m_M + i_M.
// A transformation is a linear map T of R^n, n = m_1 * ... * m_M, written as
//   (T x)_k = sum_l T_{kl} x_l                        (paper 000, eq. 6)
// and stored as a sparse row-major matrix. Two index forms are derived from
// the matrix whenever they exist, because they turn constraints into ties:
//   gather  g: every row k of T has at most one nonzero and it equals 1, so
//              (T x)_k = x_{g[k]} (0 when g[k] == -1);
//   scatter s: every column l has at most one nonzero and it equals 1, so
//              (x^T T)_l = x_{s[l]} (0 when s[l] == -1).
// Permutations have both (s is the inverse of g). Partial permutations such as
// a shift without wrap-around have both, with -1 at the ends. A sum-pooling map
// has a scatter form only; an averaging map (entries 1/S) has neither and goes
// through the engine's nullspace path.
//
// Conventions of the named transformations (all derived from index maps, no
// pattern is typed in):
//   Shift(axis, a, wrap)   (T x)[.., i, ..] = x[.., i - a, ..]; without wrap
//   the
//                          entries whose source falls outside are 0 (paper 000
//                          eq. 17: T^1 has T_{i', i} = delta_{i', i+1}).
//   Flip(axis)             (T x)[.., i, ..] = x[.., m - 1 - i, ..]  (eq. 24).
//   Rotate90(a, b, t)      one quarter turn of the (a, b) plane, t times:
//                          (T x)[.., p, .., q, ..] = x[.., q, .., m - 1 - p,
//                          ..] with m = m_a = m_b. T^4 = I.
//   Transpose(a, b)        swaps two equal axes: (T x)[.., p, .., q, ..] =
//                          x[.., q, .., p, ..].
//   P4Filter(r, a, b)      the P4 action on a filter [.., 4 (axis r), .., k, k]
//                          (Cohen & Welling): rotate the (a, b) plane once and
//                          shift the rotation axis r cyclically by one:
//                          (T x)[s, u] = x[s - 1 mod 4, R^{-1} u].
//   DownScale(axis, S, c)  paper 000 eq. 27: (T x)[i'] = c * sum_{s<S} x[S i' +
//   s]
//                          for i' < m / S, rows i' >= m / S are 0. The paper
//                          writes c = 1/n_1 and later 1/m_1; the averaging
//                          choice is c = 1/S.
//   BlockAverage(axis, S)  down-scale by averaging then up-scale by repetition:
//                          (T x)[i] = (1/S) sum_{s<S} x[S floor(i/S) + s].
//
// Shapes: every transformation maps R^n to itself. Indices are 32-bit: n must
// be below 2^31. Transformations are immutable values; copying one copies its
// matrix.
#pragma once

#include <Eigen/Core>
#include <Eigen/SparseCore>
#include <cstdint>
#include <string>
#include <vector>

namespace symopt {

// A multi-index shape, flattened row-major.
class Shape {
 public:
  Shape() = default;
  // Requires: every dimension >= 1 and the product below 2^31.
  explicit Shape(std::vector<std::int64_t> dims);

  const std::vector<std::int64_t>& dims() const { return dims_; }
  int rank() const { return static_cast<int>(dims_.size()); }
  std::int64_t dim(int axis) const;  // Requires: 0 <= axis < rank().
  std::int64_t size() const { return size_; }
  // Row-major strides: stride(rank()-1) == 1.
  std::int64_t stride(int axis) const;

  std::int64_t Flatten(const std::vector<std::int64_t>& index) const;
  std::vector<std::int64_t> Unflatten(std::int64_t flat) const;
  std::string ToString() const;  // "[6, 6, 256]"

  bool operator==(const Shape& other) const { return dims_ == other.dims_; }
  bool operator!=(const Shape& other) const { return !(*this == other); }

 private:
  std::vector<std::int64_t> dims_;
  std::vector<std::int64_t> strides_;
  std::int64_t size_ = 1;
};

using SparseMatrixD = Eigen::SparseMatrix<double, Eigen::RowMajor, int>;

class Transform {
 public:
  // The matrix of a linear map of R^{shape.size()}.
  // Requires: matrix is shape.size() x shape.size(), all entries finite.
  // The rvalue overload takes the matrix over without copying it (Eigen 3.4's
  // SparseMatrix has no move constructor, so std::move alone would copy).
  Transform(Shape shape, const SparseMatrixD& matrix, std::string name);
  Transform(Shape shape, SparseMatrixD&& matrix, std::string name);

  // (T x)_k = x_{src[k]}, or 0 where src[k] == -1.
  // Requires: src.size() == shape.size(), every entry in [-1, size).
  static Transform FromGather(Shape shape,
                              const std::vector<std::int32_t>& src,
                              std::string name);
  // Requires: dense is square of side shape.size(), all entries finite.
  static Transform FromDense(Shape shape,
                             const Eigen::MatrixXd& dense,
                             std::string name);

  static Transform Identity(const Shape& shape);
  static Transform Shift(const Shape& shape,
                         int axis,
                         std::int64_t amount,
                         bool wrap);
  static Transform Flip(const Shape& shape, int axis);
  static Transform Rotate90(const Shape& shape,
                            int axis_a,
                            int axis_b,
                            int times = 1);
  static Transform Transpose(const Shape& shape, int axis_a, int axis_b);
  // Requires: shape.dim(rotation_axis) == 4, dim(axis_a) == dim(axis_b).
  static Transform P4Filter(const Shape& shape,
                            int rotation_axis,
                            int axis_a,
                            int axis_b);
  // Requires: factor >= 1 divides shape.dim(axis).
  static Transform DownScale(const Shape& shape,
                             int axis,
                             std::int64_t factor,
                             double scale);
  static Transform BlockAverage(const Shape& shape,
                                int axis,
                                std::int64_t factor);

  const Shape& shape() const { return shape_; }
  std::int64_t size() const { return shape_.size(); }
  const std::string& name() const { return name_; }
  const SparseMatrixD& matrix() const { return matrix_; }

  bool HasGather() const { return has_gather_; }
  bool HasScatter() const { return has_scatter_; }
  bool IsIdentity() const { return is_identity_; }
  bool IsPermutation() const;
  // Requires: HasGather() (resp. HasScatter()).
  const std::vector<std::int32_t>& gather() const;
  const std::vector<std::int32_t>& scatter() const;

  // y = T x. x and y hold size() values and must not alias.
  void Apply(const double* x, double* y) const;
  Eigen::MatrixXd Dense() const;
  // this * other (apply other first). Requires: equal shapes.
  Transform Compose(const Transform& other) const;
  // Requires: IsPermutation().
  Transform Inverse() const;

 private:
  Shape shape_;
  SparseMatrixD matrix_;
  std::string name_;
  bool has_gather_ = false;
  bool has_scatter_ = false;
  bool is_identity_ = false;
  std::vector<std::int32_t> gather_;
  std::vector<std::int32_t> scatter_;
};

}  // namespace symopt
