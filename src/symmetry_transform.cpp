#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <utility>

#include "manifolds/check.h"
#include "symmetry/transform.h"

namespace symopt {

Shape::Shape(std::vector<std::int64_t> dims) : dims_(std::move(dims)) {
  strides_.assign(dims_.size(), 1);
  size_ = 1;
  for (int a = rank() - 1; a >= 0; --a) {
    SYMOPT_CHECK(dims_[a] >= 1,
                 "shape " << ToString() << ": axis " << a << " has length "
                          << dims_[a] << ", expected >= 1");
    strides_[a] = size_;
    // size_ < 2^31 here; compare before multiplying, as the product of a
    // large length and size_ overflows int64.
    SYMOPT_CHECK(dims_[a] <= ((std::int64_t{1} << 31) - 1) / size_,
                 "shape " << ToString() << " has 2^31 or more entries");
    size_ *= dims_[a];
  }
}

std::int64_t Shape::dim(int axis) const {
  SYMOPT_CHECK(axis >= 0 && axis < rank(),
               "axis " << axis << " out of range for shape " << ToString()
                       << " (rank " << rank() << ")");
  return dims_[axis];
}

std::int64_t Shape::stride(int axis) const {
  dim(axis);
  return strides_[axis];
}

std::int64_t Shape::Flatten(const std::vector<std::int64_t>& index) const {
  SYMOPT_CHECK(static_cast<int>(index.size()) == rank(),
               "index of rank " << index.size() << " for shape " << ToString());
  std::int64_t k = 0;
  for (int a = 0; a < rank(); ++a) {
    SYMOPT_CHECK(index[a] >= 0 && index[a] < dims_[a],
                 "index " << index[a] << " out of range on axis " << a
                          << " of shape " << ToString());
    k += index[a] * strides_[a];
  }
  return k;
}

std::vector<std::int64_t> Shape::Unflatten(std::int64_t flat) const {
  SYMOPT_CHECK(
      flat >= 0 && flat < size_,
      "flat index " << flat << " out of range for shape " << ToString());
  std::vector<std::int64_t> index(dims_.size());
  for (int a = 0; a < rank(); ++a) {
    index[a] = flat / strides_[a];
    flat %= strides_[a];
  }
  return index;
}

std::string Shape::ToString() const {
  std::ostringstream os;
  os << "[";
  for (std::size_t a = 0; a < dims_.size(); ++a)
    os << (a ? ", " : "") << dims_[a];
  os << "]";
  return os.str();
}

namespace {

// Builds the gather index of an index map given on multi-indices: for every
// destination multi-index, `source` returns the source multi-index or false
// when the destination has no source (the entry becomes 0).
template <typename F>
std::vector<std::int32_t> GatherFromIndexMap(const Shape& shape, F source) {
  std::vector<std::int32_t> src(shape.size());
  std::vector<std::int64_t> index(shape.rank(), 0);
  for (std::int64_t k = 0; k < shape.size(); ++k) {
    std::vector<std::int64_t> from = index;
    src[k] = source(index, &from)
                 ? static_cast<std::int32_t>(shape.Flatten(from))
                 : -1;
    for (int a = shape.rank() - 1; a >= 0; --a) {  // row-major increment
      if (++index[a] < shape.dims()[a]) break;
      index[a] = 0;
    }
  }
  return src;
}

void CheckAxis(const Shape& shape, int axis, const char* what) {
  SYMOPT_CHECK(axis >= 0 && axis < shape.rank(),
               what << ": axis " << axis << " out of range for shape "
                    << shape.ToString() << " (rank " << shape.rank() << ")");
}

void CheckSquarePlane(const Shape& shape, int a, int b, const char* what) {
  CheckAxis(shape, a, what);
  CheckAxis(shape, b, what);
  SYMOPT_CHECK(a != b,
               what << ": the two axes must differ, got " << a << " twice");
  SYMOPT_CHECK(shape.dim(a) == shape.dim(b),
               what << " needs two axes of equal length, got axis " << a << " ("
                    << shape.dim(a) << ") and axis " << b << " ("
                    << shape.dim(b) << ") of shape " << shape.ToString());
}

}  // namespace

Transform::Transform(Shape shape, const SparseMatrixD& matrix, std::string name)
    : Transform(std::move(shape), SparseMatrixD(matrix), std::move(name)) {}

Transform::Transform(Shape shape, SparseMatrixD&& matrix, std::string name)
    : shape_(std::move(shape)), name_(std::move(name)) {
  matrix_.swap(matrix);
  const std::int64_t n = shape_.size();
  SYMOPT_CHECK(matrix_.rows() == n && matrix_.cols() == n,
               "transform '" << name_ << "': matrix is " << matrix_.rows()
                             << " x " << matrix_.cols() << ", expected " << n
                             << " x " << n << " for shape "
                             << shape_.ToString());
  matrix_.prune(0.0);
  matrix_.makeCompressed();
  // Derive the gather and scatter forms (see the header).
  has_gather_ = true;
  has_scatter_ = true;
  gather_.assign(n, -1);
  scatter_.assign(n, -1);
  for (int k = 0; k < matrix_.outerSize(); ++k) {
    int count = 0;
    for (SparseMatrixD::InnerIterator it(matrix_, k); it; ++it) {
      SYMOPT_CHECK(std::isfinite(it.value()),
                   "transform '" << name_ << "': entry (" << k << ", "
                                 << it.col() << ") is not finite");
      ++count;
      if (it.value() != 1.0) {
        has_gather_ = false;
        has_scatter_ = false;
      }
      gather_[k] = static_cast<std::int32_t>(it.col());
      if (scatter_[it.col()] != -1) has_scatter_ = false;
      scatter_[it.col()] = k;
    }
    if (count > 1) has_gather_ = false;
  }
  if (!has_gather_) gather_.clear();
  if (!has_scatter_) scatter_.clear();
  is_identity_ = has_gather_;
  for (std::int64_t k = 0; is_identity_ && k < n; ++k) {
    if (gather_[k] != k) is_identity_ = false;
  }
}

Transform Transform::FromGather(Shape shape,
                                const std::vector<std::int32_t>& src,
                                std::string name) {
  const std::int64_t n = shape.size();
  SYMOPT_CHECK(static_cast<std::int64_t>(src.size()) == n,
               "transform '" << name << "': gather has " << src.size()
                             << " entries, expected " << n << " for shape "
                             << shape.ToString());
  std::vector<Eigen::Triplet<double, int>> triplets;
  triplets.reserve(n);
  for (std::int64_t k = 0; k < n; ++k) {
    SYMOPT_CHECK(src[k] >= -1 && src[k] < n,
                 "transform '" << name << "': gather entry " << k << " is "
                               << src[k] << ", expected -1 or an index in [0, "
                               << n << ")");
    if (src[k] >= 0) triplets.emplace_back(static_cast<int>(k), src[k], 1.0);
  }
  SparseMatrixD m(n, n);
  m.setFromTriplets(triplets.begin(), triplets.end());
  return Transform(std::move(shape), std::move(m), std::move(name));
}

Transform Transform::FromDense(Shape shape,
                               const Eigen::MatrixXd& dense,
                               std::string name) {
  const std::int64_t n = shape.size();
  SYMOPT_CHECK(dense.rows() == n && dense.cols() == n,
               "transform '" << name << "': matrix is " << dense.rows() << " x "
                             << dense.cols() << ", expected " << n << " x " << n
                             << " for shape " << shape.ToString());
  SparseMatrixD m = dense.sparseView(0.0, 0.0);
  return Transform(std::move(shape), std::move(m), std::move(name));
}

Transform Transform::Identity(const Shape& shape) {
  std::vector<std::int32_t> src(shape.size());
  for (std::int64_t k = 0; k < shape.size(); ++k)
    src[k] = static_cast<std::int32_t>(k);
  return FromGather(shape, src, "identity");
}

Transform Transform::Shift(const Shape& shape,
                           int axis,
                           std::int64_t amount,
                           bool wrap) {
  CheckAxis(shape, axis, "shift");
  const std::int64_t m = shape.dim(axis);
  // to[axis] - amount overflows for amounts near the ends of int64: reduce
  // the amount first (mod m with wrap; any |amount| >= m shifts everything
  // out without wrap).
  const std::int64_t reduced =
      wrap ? ((amount % m) + m) % m : std::clamp(amount, -m, m);
  auto src = GatherFromIndexMap(shape,
                                [&](const std::vector<std::int64_t>& to,
                                    std::vector<std::int64_t>* from) {
                                  std::int64_t i = to[axis] - reduced;
                                  if (wrap) {
                                    i = ((i % m) + m) % m;
                                  } else if (i < 0 || i >= m) {
                                    return false;
                                  }
                                  (*from)[axis] = i;
                                  return true;
                                });
  std::ostringstream name;
  name << "shift(axis " << axis << ", " << amount
       << (wrap ? ", wrap)" : ", no wrap)");
  return FromGather(shape, src, name.str());
}

Transform Transform::Flip(const Shape& shape, int axis) {
  CheckAxis(shape, axis, "flip");
  const std::int64_t m = shape.dim(axis);
  auto src = GatherFromIndexMap(shape,
                                [&](const std::vector<std::int64_t>& to,
                                    std::vector<std::int64_t>* from) {
                                  (*from)[axis] = m - 1 - to[axis];
                                  return true;
                                });
  return FromGather(shape, src, "flip(axis " + std::to_string(axis) + ")");
}

Transform Transform::Rotate90(const Shape& shape,
                              int axis_a,
                              int axis_b,
                              int times) {
  CheckSquarePlane(shape, axis_a, axis_b, "rotate90");
  const std::int64_t m = shape.dim(axis_a);
  const int t = ((times % 4) + 4) % 4;
  auto src = GatherFromIndexMap(
      shape,
      [&](const std::vector<std::int64_t>& to,
          std::vector<std::int64_t>* from) {
        std::int64_t p = to[axis_a], q = to[axis_b];
        for (int r = 0; r < t; ++r) {  // one quarter turn: (p, q) <- (q, m-1-p)
          const std::int64_t np = q, nq = m - 1 - p;
          p = np;
          q = nq;
        }
        (*from)[axis_a] = p;
        (*from)[axis_b] = q;
        return true;
      });
  std::ostringstream name;
  name << "rotate90(axes " << axis_a << "," << axis_b << ", x" << t << ")";
  return FromGather(shape, src, name.str());
}

Transform Transform::Transpose(const Shape& shape, int axis_a, int axis_b) {
  CheckSquarePlane(shape, axis_a, axis_b, "transpose");
  auto src = GatherFromIndexMap(shape,
                                [&](const std::vector<std::int64_t>& to,
                                    std::vector<std::int64_t>* from) {
                                  (*from)[axis_a] = to[axis_b];
                                  (*from)[axis_b] = to[axis_a];
                                  return true;
                                });
  std::ostringstream name;
  name << "transpose(axes " << axis_a << "," << axis_b << ")";
  return FromGather(shape, src, name.str());
}

Transform Transform::P4Filter(const Shape& shape,
                              int rotation_axis,
                              int axis_a,
                              int axis_b) {
  CheckAxis(shape, rotation_axis, "p4_filter");
  SYMOPT_CHECK(shape.dim(rotation_axis) == 4,
               "p4_filter: the rotation axis "
                   << rotation_axis << " has length "
                   << shape.dim(rotation_axis) << ", expected 4 (shape "
                   << shape.ToString() << ")");
  SYMOPT_CHECK(
      rotation_axis != axis_a && rotation_axis != axis_b,
      "p4_filter: the rotation axis must differ from the rotated axes");
  const Transform rot = Rotate90(shape, axis_a, axis_b, 1);
  const Transform shift = Shift(shape, rotation_axis, 1, true);
  Transform both = shift.Compose(rot);
  std::ostringstream name;
  name << "p4_filter(rotation axis " << rotation_axis << ", axes " << axis_a
       << "," << axis_b << ")";
  both.name_ = name.str();
  return both;
}

Transform Transform::DownScale(const Shape& shape,
                               int axis,
                               std::int64_t factor,
                               double scale) {
  CheckAxis(shape, axis, "downscale");
  const std::int64_t m = shape.dim(axis);
  SYMOPT_CHECK(factor >= 1 && m % factor == 0,
               "downscale: factor " << factor << " does not divide the length "
                                    << m << " of axis " << axis);
  SYMOPT_CHECK(std::isfinite(scale), "downscale: scale is not finite");
  const std::int64_t stride = shape.stride(axis);
  std::vector<Eigen::Triplet<double, int>> triplets;
  for (std::int64_t k = 0; k < shape.size(); ++k) {
    const std::int64_t i = (k / stride) % m;  // destination index on the axis
    if (i >= m / factor) continue;            // rows past m / S are 0
    for (std::int64_t s = 0; s < factor; ++s) {
      const std::int64_t from = k + (factor * i + s - i) * stride;
      triplets.emplace_back(static_cast<int>(k), static_cast<int>(from), scale);
    }
  }
  SparseMatrixD mat(shape.size(), shape.size());
  mat.setFromTriplets(triplets.begin(), triplets.end());
  std::ostringstream name;
  name << "downscale(axis " << axis << ", factor " << factor << ", scale "
       << scale << ")";
  return Transform(shape, std::move(mat), name.str());
}

Transform Transform::BlockAverage(const Shape& shape,
                                  int axis,
                                  std::int64_t factor) {
  CheckAxis(shape, axis, "block_average");
  const std::int64_t m = shape.dim(axis);
  SYMOPT_CHECK(factor >= 1 && m % factor == 0,
               "block_average: factor " << factor
                                        << " does not divide the length " << m
                                        << " of axis " << axis);
  const std::int64_t stride = shape.stride(axis);
  std::vector<Eigen::Triplet<double, int>> triplets;
  for (std::int64_t k = 0; k < shape.size(); ++k) {
    const std::int64_t i = (k / stride) % m;
    const std::int64_t first = factor * (i / factor);
    for (std::int64_t s = 0; s < factor; ++s) {
      const std::int64_t from = k + (first + s - i) * stride;
      triplets.emplace_back(static_cast<int>(k),
                            static_cast<int>(from),
                            1.0 / static_cast<double>(factor));
    }
  }
  SparseMatrixD mat(shape.size(), shape.size());
  mat.setFromTriplets(triplets.begin(), triplets.end());
  std::ostringstream name;
  name << "block_average(axis " << axis << ", factor " << factor << ")";
  return Transform(shape, std::move(mat), name.str());
}

bool Transform::IsPermutation() const {
  if (!has_gather_ || !has_scatter_) return false;
  for (std::int32_t g : gather_) {
    if (g < 0) return false;
  }
  return true;
}

const std::vector<std::int32_t>& Transform::gather() const {
  SYMOPT_CHECK(has_gather_, "transform '" << name_ << "' has no gather form");
  return gather_;
}

const std::vector<std::int32_t>& Transform::scatter() const {
  SYMOPT_CHECK(has_scatter_, "transform '" << name_ << "' has no scatter form");
  return scatter_;
}

void Transform::Apply(const double* x, double* y) const {
  Eigen::Map<const Eigen::VectorXd> xv(x, size());
  Eigen::Map<Eigen::VectorXd> yv(y, size());
  yv.noalias() = matrix_ * xv;
}

Eigen::MatrixXd Transform::Dense() const { return Eigen::MatrixXd(matrix_); }

Transform Transform::Compose(const Transform& other) const {
  SYMOPT_CHECK(shape_ == other.shape_,
               "compose: shapes " << shape_.ToString() << " and "
                                  << other.shape_.ToString() << " differ");
  SparseMatrixD product = matrix_ * other.matrix_;
  return Transform(shape_, std::move(product), name_ + " * " + other.name_);
}

Transform Transform::Inverse() const {
  SYMOPT_CHECK(IsPermutation(),
               "transform '" << name_ << "' is not a permutation");
  return FromGather(shape_, scatter_, "inverse of " + name_);
}

}  // namespace symopt
