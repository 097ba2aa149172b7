#include "manifolds/product.h"

#include <algorithm>
#include <cmath>

namespace symopt {

namespace {

template <typename T>
std::int64_t TotalSize(
    const std::vector<std::shared_ptr<const Manifold<T>>>& parts) {
  SYMOPT_CHECK(!parts.empty(), "product: needs at least one part");
  std::int64_t total = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    SYMOPT_CHECK(parts[i] != nullptr, "product: part " << i << " is null");
    total += parts[i]->AmbientSize();
  }
  return total;
}

}  // namespace

template <typename T>
Product<T>::Product(std::vector<Part> parts)
    : Product(parts, TotalSize<T>(parts)) {}

template <typename T>
Product<T>::Product(std::vector<Part> parts, std::int64_t total)
    : Manifold<T>(1, total), parts_(std::move(parts)) {
  offsets_.push_back(0);
  row_offsets_.push_back(0);
  coeff_offsets_.push_back(0);
  for (const Part& p : parts_) {
    offsets_.push_back(offsets_.back() + p->AmbientSize());
    row_offsets_.push_back(row_offsets_.back() + p->rows());
    coeff_offsets_.push_back(coeff_offsets_.back() + p->Dim());
  }
  dim_ = coeff_offsets_.back();
}

template <typename T>
const Manifold<T>& Product<T>::part(std::int64_t i) const {
  SYMOPT_CHECK(
      i >= 0 && i < NumParts(),
      "product: part " << i << " out of range [0, " << NumParts() << ")");
  return *parts_[std::size_t(i)];
}

template <typename T>
std::int64_t Product<T>::Offset(std::int64_t i) const {
  part(i);
  return offsets_[std::size_t(i)];
}

template <typename T>
std::int64_t Product<T>::RowOffset(std::int64_t i) const {
  part(i);
  return row_offsets_[std::size_t(i)];
}

template <typename T>
std::int64_t Product<T>::CoeffOffset(std::int64_t i) const {
  part(i);
  return coeff_offsets_[std::size_t(i)];
}

template <typename T>
std::pair<std::int64_t, std::int64_t> Product<T>::PartOfRow(
    std::int64_t row) const {
  SYMOPT_CHECK(row >= 0 && row < row_offsets_.back(),
               "product: report row " << row << " out of range [0, "
                                      << row_offsets_.back() << ")");
  const auto it =
      std::upper_bound(row_offsets_.begin(), row_offsets_.end(), row);
  const std::int64_t i = std::int64_t(it - row_offsets_.begin()) - 1;
  return {i, row - row_offsets_[std::size_t(i)]};
}

template <typename T>
void Product<T>::ProjectPointImpl(View x) const {
  for (std::int64_t i = 0; i < NumParts(); ++i)
    parts_[i]->ProjectPoint(Block(x, i));
}

template <typename T>
void Product<T>::ProjectImpl(ConstView x, View u) const {
  for (std::int64_t i = 0; i < NumParts(); ++i) {
    parts_[i]->Project(Block(x, i), Block(u, i));
  }
}

template <typename T>
void Product<T>::EgradToRgradImpl(ConstView x, View g) const {
  for (std::int64_t i = 0; i < NumParts(); ++i) {
    parts_[i]->EgradToRgrad(Block(x, i), Block(g, i));
  }
}

template <typename T>
RetractReport Product<T>::RetractImpl(View x, ConstView v) const {
  RetractReport report;
  for (std::int64_t i = 0; i < NumParts(); ++i) {
    report.Merge(parts_[i]->Retract(Block(x, i), Block(v, i)), row_offsets_[i]);
  }
  return report;
}

template <typename T>
void Product<T>::InverseRetractImpl(ConstView x, ConstView y, View v) const {
  for (std::int64_t i = 0; i < NumParts(); ++i) {
    parts_[i]->InverseRetract(Block(x, i), Block(y, i), Block(v, i));
  }
}

template <typename T>
void Product<T>::TransportImpl(ConstView x_old, ConstView x_new, View v) const {
  for (std::int64_t i = 0; i < NumParts(); ++i) {
    parts_[i]->Transport(Block(x_old, i), Block(x_new, i), Block(v, i));
  }
}

template <typename T>
double Product<T>::InnerImpl(ConstView x, ConstView u, ConstView v) const {
  double s = 0.0;
  for (std::int64_t i = 0; i < NumParts(); ++i) {
    s += parts_[i]->Inner(Block(x, i), Block(u, i), Block(v, i));
  }
  return s;
}

template <typename T>
double Product<T>::DistanceToManifoldImpl(ConstView x) const {
  double s = 0.0;
  for (std::int64_t i = 0; i < NumParts(); ++i) {
    const double d = parts_[i]->DistanceToManifold(Block(x, i));
    s += d * d;
  }
  return std::sqrt(s);
}

template <typename T>
void Product<T>::RandomPointImpl(View x, std::uint64_t seed) const {
  for (std::int64_t i = 0; i < NumParts(); ++i) {
    parts_[i]->RandomPoint(Block(x, i),
                           seed + std::uint64_t(i) * 0x9E3779B97F4A7C15ull);
  }
}

template <typename T>
void Product<T>::TangentBasisMultiplyImpl(ConstView x,
                                          const T* coeffs,
                                          View v) const {
  for (std::int64_t i = 0; i < NumParts(); ++i) {
    parts_[i]->TangentBasisMultiply(
        Block(x, i), coeffs + coeff_offsets_[i], Block(v, i));
  }
}

template <typename T>
void Product<T>::TangentBasisTransposeMultiplyImpl(ConstView x,
                                                   ConstView u,
                                                   T* coeffs) const {
  for (std::int64_t i = 0; i < NumParts(); ++i) {
    parts_[i]->TangentBasisTransposeMultiply(
        Block(x, i), Block(u, i), coeffs + coeff_offsets_[i]);
  }
}

// Each part takes its own fused step; with momentum 0 the buffer may be empty
// and the parts get empty buffers too.
template <typename T>
RetractReport Product<T>::StepImpl(View x,
                                   ConstView g,
                                   View m,
                                   const StepOptions& options) const {
  const bool momentum = options.momentum > 0.0;
  RetractReport report;
  for (std::int64_t i = 0; i < NumParts(); ++i) {
    report.Merge(
        parts_[i]->Step(
            Block(x, i), Block(g, i), momentum ? Block(m, i) : View(), options),
        row_offsets_[i]);
  }
  return report;
}

template class Product<float>;
template class Product<double>;

}  // namespace symopt
