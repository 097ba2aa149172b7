// Product: a list of manifolds M_1 x ... x M_P over one flat parameter vector.
//
// The point is a 1 x N block, N = sum_i AmbientSize(M_i); part i occupies the
// contiguous entries [Offset(i), Offset(i) + AmbientSize(M_i)) and is viewed
// there as its own rows_i x cols_i row-major block. Every operation applies
// blockwise: P_x(u) = (P_{x_i}(u_i))_i, R_x(v) = (R_{x_i}(v_i))_i, transport,
// EgradToRgrad and the fused Step likewise (each part with its own metric and
// its own fused step), <u, v> = sum_i <u_i, v_i>_i, DistanceToManifold =
// sqrt(sum_i d_i^2), Dim = sum_i Dim(M_i). Tangent coefficients are the
// parts' coefficients concatenated (part i's start at CoeffOffset(i)).
//
// RetractReport rows: the parts' rows are numbered as if the parts were
// stacked one under another, so a collapsed row j of part i is reported as
// RowOffset(i) + j (RowOffset(i) = rows_1 + ... + rows_{i-1}). PartOfRow maps
// it back.
//
// RandomPoint gives part i the seed seed + i * 0x9E3779B97F4A7C15 (wrapping),
// so parts draw independent streams.
//
// A model's whole parameter set is one Product (DESIGN.md s.2). Parts are
// shared: one manifold may appear several times.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "manifolds/manifold.h"

namespace symopt {

template <typename T>
class Product final : public Manifold<T> {
 public:
  using typename Manifold<T>::View;
  using typename Manifold<T>::ConstView;
  using Part = std::shared_ptr<const Manifold<T>>;

  // Requires: at least one part, none null.
  explicit Product(std::vector<Part> parts);

  std::int64_t Dim() const override { return dim_; }
  std::string Name() const override { return "product"; }

  std::int64_t NumParts() const { return std::int64_t(parts_.size()); }
  const std::vector<Part>& parts() const { return parts_; }
  // Requires: 0 <= i < NumParts() (else InvalidArgument).
  const Manifold<T>& part(std::int64_t i) const;
  std::int64_t Offset(std::int64_t i) const;       // first entry of part i
  std::int64_t RowOffset(std::int64_t i) const;    // first report row of part i
  std::int64_t CoeffOffset(std::int64_t i) const;  // first tangent coefficient
  // (part, row within the part) of a report row. Requires 0 <= row < total.
  std::pair<std::int64_t, std::int64_t> PartOfRow(std::int64_t row) const;

  // Part i's block of a 1 x AmbientSize() view.
  template <typename U>
  TensorView<U> Block(const TensorView<U>& whole, std::int64_t i) const {
    const Manifold<T>& p = part(i);
    return TensorView<U>(whole.data + offsets_[std::size_t(i)],
                         p.rows(),
                         p.cols(),
                         whole.device);
  }

 protected:
  void ProjectPointImpl(View x) const override;
  void ProjectImpl(ConstView x, View u) const override;
  void EgradToRgradImpl(ConstView x, View g) const override;
  RetractReport RetractImpl(View x, ConstView v) const override;
  void InverseRetractImpl(ConstView x, ConstView y, View v) const override;
  void TransportImpl(ConstView x_old, ConstView x_new, View v) const override;
  double InnerImpl(ConstView x, ConstView u, ConstView v) const override;
  double DistanceToManifoldImpl(ConstView x) const override;
  void RandomPointImpl(View x, std::uint64_t seed) const override;
  void TangentBasisMultiplyImpl(ConstView x,
                                const T* coeffs,
                                View v) const override;
  void TangentBasisTransposeMultiplyImpl(ConstView x,
                                         ConstView u,
                                         T* coeffs) const override;
  RetractReport StepImpl(View x,
                         ConstView g,
                         View m,
                         const StepOptions& options) const override;

 private:
  // Product(parts) delegates here once the total size is known.
  Product(std::vector<Part> parts, std::int64_t total);

  std::vector<Part> parts_;
  std::vector<std::int64_t> offsets_;        // NumParts() + 1
  std::vector<std::int64_t> row_offsets_;    // NumParts() + 1
  std::vector<std::int64_t> coeff_offsets_;  // NumParts() + 1
  std::int64_t dim_ = 0;
};

extern template class Product<float>;
extern template class Product<double>;

}  // namespace symopt
