#include "manifolds/manifold.h"

#include <random>
#include <sstream>
#include <vector>

#include "backend/dispatch.h"
#include "blas1.h"

namespace symopt {

bool StepOptions::IsValid(std::string* error) const {
  // The message is built only on failure: Step calls this every time.
  auto fail = [error](const char* what, double got, bool show) {
    if (error) {
      std::ostringstream os;
      os << what;
      if (show) os << ", got " << got;
      *error = os.str();
    }
    return false;
  };
  if (!(lr >= 0.0) || !std::isfinite(lr)) {
    return fail("learning rate must be finite and >= 0", lr, true);
  }
  if (!(momentum >= 0.0 && momentum < 1.0)) {
    return fail("momentum must be in [0, 1)", momentum, true);
  }
  if (nesterov && momentum == 0.0) {
    return fail("Nesterov momentum needs momentum > 0", 0.0, false);
  }
  if (!(weight_decay >= 0.0) || !std::isfinite(weight_decay)) {
    return fail("weight decay must be finite and >= 0", weight_decay, true);
  }
  if (error) error->clear();
  return true;
}

void RetractReport::Merge(const RetractReport& other, std::int64_t row_offset) {
  if (other.collapsed_rows == 0) return;
  if (first_collapsed_row < 0) {
    first_collapsed_row = other.first_collapsed_row + row_offset;
  }
  collapsed_rows += other.collapsed_rows;
}

template <typename T>
Manifold<T>::Manifold(std::int64_t rows, std::int64_t cols)
    : rows_(rows), cols_(cols) {
  SYMOPT_CHECK(
      rows >= 1 && cols >= 1,
      "manifold shape must be at least 1x1, got " << rows << "x" << cols);
}

template <typename T>
std::string Manifold<T>::Describe() const {
  std::ostringstream os;
  os << Name() << "(" << rows_ << "x" << cols_ << ")";
  return os.str();
}

template <typename T>
template <typename U>
void Manifold<T>::CheckView(const TensorView<U>& v, const char* what) const {
  SYMOPT_CHECK(v.data != nullptr, Describe() << ": " << what << " is null");
  SYMOPT_CHECK(v.rows == rows_ && v.cols == cols_,
               Describe() << ": " << what << " has shape " << v.rows << "x"
                          << v.cols << ", expected " << rows_ << "x" << cols_);
  SYMOPT_CHECK(v.device == Device::kCpu || v.device == Device::kCuda,
               Describe() << ": " << what << " has an unknown device");
}

template <typename T>
bool Manifold<T>::OnGpu(const char* op,
                        std::initializer_list<Device> devices) const {
  const Device first = *devices.begin();
  for (const Device d : devices) {
    SYMOPT_CHECK(d == first,
                 Describe()
                     << ": " << op << " got views on different devices ("
                     << DeviceName(first) << " and " << DeviceName(d) << ")");
  }
  return first == Device::kCuda;
}

template <typename T>
void Manifold<T>::ProjectPoint(View x) const {
  CheckView(x, "x");
  if (OnGpu("ProjectPoint", {x.device})) return backend::ProjectPoint(*this, x);
  ProjectPointImpl(x);
}

template <typename T>
void Manifold<T>::Project(ConstView x, View u) const {
  CheckView(x, "x");
  CheckView(u, "u");
  if (OnGpu("Project", {x.device, u.device})) {
    return backend::Project(*this, x, u);
  }
  ProjectImpl(x, u);
}

template <typename T>
void Manifold<T>::EgradToRgrad(ConstView x, View g) const {
  CheckView(x, "x");
  CheckView(g, "g");
  if (OnGpu("EgradToRgrad", {x.device, g.device})) {
    return backend::EgradToRgrad(*this, x, g);
  }
  EgradToRgradImpl(x, g);
}

template <typename T>
RetractReport Manifold<T>::Retract(View x, ConstView v) const {
  CheckView(x, "x");
  CheckView(v, "v");
  if (OnGpu("Retract", {x.device, v.device})) {
    return backend::Retract(*this, x, v);
  }
  return RetractImpl(x, v);
}

template <typename T>
void Manifold<T>::InverseRetract(ConstView x, ConstView y, View v) const {
  CheckView(x, "x");
  CheckView(y, "y");
  CheckView(v, "v");
  if (OnGpu("InverseRetract", {x.device, y.device, v.device})) {
    backend::Unsupported(*this, "InverseRetract");
  }
  InverseRetractImpl(x, y, v);
}

template <typename T>
void Manifold<T>::Transport(ConstView x_old, ConstView x_new, View v) const {
  CheckView(x_old, "x_old");
  CheckView(x_new, "x_new");
  CheckView(v, "v");
  if (OnGpu("Transport", {x_old.device, x_new.device, v.device})) {
    return backend::Transport(*this, x_old, x_new, v);
  }
  TransportImpl(x_old, x_new, v);
}

template <typename T>
double Manifold<T>::Inner(ConstView x, ConstView u, ConstView v) const {
  CheckView(x, "x");
  CheckView(u, "u");
  CheckView(v, "v");
  if (OnGpu("Inner", {x.device, u.device, v.device})) {
    backend::Unsupported(*this, "Inner");
  }
  return InnerImpl(x, u, v);
}

template <typename T>
double Manifold<T>::DistanceToManifold(ConstView x) const {
  CheckView(x, "x");
  if (OnGpu("DistanceToManifold", {x.device})) {
    backend::Unsupported(*this, "DistanceToManifold");
  }
  return DistanceToManifoldImpl(x);
}

template <typename T>
void Manifold<T>::RandomPoint(View x, std::uint64_t seed) const {
  CheckView(x, "x");
  if (OnGpu("RandomPoint", {x.device})) {
    backend::Unsupported(*this, "RandomPoint");
  }
  RandomPointImpl(x, seed);
}

template <typename T>
void Manifold<T>::TangentBasisMultiply(ConstView x,
                                       const T* coeffs,
                                       View v) const {
  CheckView(x, "x");
  CheckView(v, "v");
  SYMOPT_CHECK(coeffs != nullptr || Dim() == 0,
               Describe() << ": coefficients are null");
  if (OnGpu("TangentBasisMultiply", {x.device, v.device})) {
    backend::Unsupported(*this, "TangentBasisMultiply");
  }
  TangentBasisMultiplyImpl(x, coeffs, v);
}

template <typename T>
void Manifold<T>::TangentBasisTransposeMultiply(ConstView x,
                                                ConstView u,
                                                T* coeffs) const {
  CheckView(x, "x");
  CheckView(u, "u");
  SYMOPT_CHECK(coeffs != nullptr || Dim() == 0,
               Describe() << ": coefficients are null");
  if (OnGpu("TangentBasisTransposeMultiply", {x.device, u.device})) {
    backend::Unsupported(*this, "TangentBasisTransposeMultiply");
  }
  TangentBasisTransposeMultiplyImpl(x, u, coeffs);
}

template <typename T>
RetractReport Manifold<T>::Step(View x,
                                ConstView g,
                                View m,
                                const StepOptions& options) const {
  std::string error;
  SYMOPT_CHECK(options.IsValid(&error), Describe() << ": " << error);
  CheckView(x, "x");
  CheckView(g, "gradient");
  if (options.momentum > 0.0) CheckView(m, "momentum buffer");
  const bool gpu = options.momentum > 0.0
                       ? OnGpu("Step", {x.device, g.device, m.device})
                       : OnGpu("Step", {x.device, g.device});
  if (gpu) return backend::Step(*this, x, g, m, options);
  return StepImpl(x, g, m, options);
}

template <typename T>
RetractReport Manifold<T>::StepComposed(View x,
                                        ConstView g,
                                        View m,
                                        const StepOptions& options,
                                        View scratch) const {
  std::string error;
  SYMOPT_CHECK(options.IsValid(&error), Describe() << ": " << error);
  CheckView(x, "x");
  CheckView(g, "gradient");
  if (options.momentum > 0.0) CheckView(m, "momentum buffer");
  const std::int64_t n = AmbientSize();
  SYMOPT_CHECK(scratch.data != nullptr && scratch.size() >= 2 * n,
               Describe() << ": scratch needs " << 2 * n << " elements, has "
                          << scratch.size());
  if (OnGpu("StepComposed", {x.device, g.device, scratch.device})) {
    backend::Unsupported(*this, "StepComposed (the CPU reference)");
  }
  View r(scratch.data, rows_, cols_, scratch.device);
  View x_old(scratch.data + n, rows_, cols_, scratch.device);
  // r = rgrad(x, g + wd x)
  cpu::Copy(g.data, r.data, n);
  if (options.weight_decay != 0.0) {
    cpu::Axpby(T(options.weight_decay), x.data, T(1), r.data, n);
  }
  EgradToRgradImpl(x, r);
  const T beta = T(options.momentum);
  if (options.momentum > 0.0) {
    cpu::Axpby(T(1), r.data, beta, m.data, n);  // m = beta m + r
    if (options.nesterov) {
      cpu::Axpby(beta, m.data, T(1), r.data, n);  // d = r + beta m
    } else {
      cpu::Copy(m.data, r.data, n);  // d = m
    }
  }
  cpu::Scale(T(-options.lr), r.data, n);  // r = -lr d
  cpu::Copy(x.data, x_old.data, n);
  RetractReport report = RetractImpl(x, r);
  if (options.momentum > 0.0) TransportImpl(x_old, x, m);
  return report;
}

template <typename T>
void Manifold<T>::TransportImpl(ConstView /*x_old*/,
                                ConstView x_new,
                                View v) const {
  ProjectImpl(x_new, v);
}

template <typename T>
double Manifold<T>::InnerImpl(ConstView /*x*/, ConstView u, ConstView v) const {
  return cpu::Dot(u.data, v.data, u.size());
}

template <typename T>
void Manifold<T>::RandomPointImpl(View x, std::uint64_t seed) const {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (std::int64_t i = 0; i < x.size(); ++i) x.data[i] = T(normal(rng));
  ProjectPointImpl(x);
}

template <typename T>
RetractReport Manifold<T>::StepImpl(View x,
                                    ConstView g,
                                    View m,
                                    const StepOptions& options) const {
  std::vector<T> scratch(2 * AmbientSize());
  return StepComposed(
      x, g, m, options, View(scratch.data(), 2 * rows_, cols_, x.device));
}

template class Manifold<float>;
template class Manifold<double>;
template void Manifold<float>::CheckView(const TensorView<float>&,
                                         const char*) const;
template void Manifold<float>::CheckView(const TensorView<const float>&,
                                         const char*) const;
template void Manifold<double>::CheckView(const TensorView<double>&,
                                          const char*) const;
template void Manifold<double>::CheckView(const TensorView<const double>&,
                                          const char*) const;

}  // namespace symopt
