#include "adapters/ceres_manifold.h"

#include <cmath>
#include <exception>
#include <limits>
#include <sstream>
#include <utility>
#include <vector>

#include "blas1.h"

namespace symopt {
namespace ceres {

namespace {

using View = TensorView<double>;
using ConstView = TensorView<const double>;

// Thrown inside a Guard body for a failure that is not a symopt exception
// (non-finite data, a collapsed row); the guard turns it into false.
class AdapterFailure : public std::exception {
 public:
  explicit AdapterFailure(std::string message) : message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

void RequireFinite(const double* values, std::int64_t n, const char* what) {
  const std::int64_t bad = cpu::FirstNonFinite(values, n);
  if (bad >= 0) {
    std::ostringstream os;
    os << what << " has a non-finite entry at index " << bad << " ("
       << values[bad] << ")";
    throw AdapterFailure(os.str());
  }
}

// Per-thread scratch arrays, reused across calls: GradientProblemSolver calls
// Plus and RightMultiplyByPlusJacobian every iteration, and a fresh vector of
// a network-sized block per call costs more in page faults than the
// arithmetic. Slot k is one array; it only grows. (Not for the N x d
// Jacobians: those would stay allocated for good.)
double* Scratch(int slot, std::size_t n) {
  thread_local std::vector<double> buffers[2];
  std::vector<double>& b = buffers[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// Writes the row-major out_size x in_size matrix of the linear map `apply`
// (apply(in, out) with in_size and out_size doubles) to `matrix`, column j
// being apply(e_j). Built in scratch, copied out only when finite.
template <typename Apply>
void MatrixOf(int in_size,
              int out_size,
              Apply&& apply,
              double* matrix,
              const char* what) {
  std::vector<double> m(std::size_t(out_size) * in_size);
  std::vector<double> e(in_size, 0.0), column(out_size);
  for (int j = 0; j < in_size; ++j) {
    e[j] = 1.0;
    apply(static_cast<const double*>(e.data()), column.data());
    e[j] = 0.0;
    for (int i = 0; i < out_size; ++i)
      m[std::size_t(i) * in_size + j] = column[i];
  }
  RequireFinite(m.data(), std::int64_t(m.size()), what);
  cpu::Copy(m.data(), matrix, std::int64_t(m.size()));
}

void RequireNonNull(const void* p, const char* what) {
  if (p == nullptr) throw AdapterFailure(std::string(what) + " is null");
}

}  // namespace

std::string ErrorLog::LastError() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_;
}

// ---- ManifoldAdapter --------------------------------------------------------

ManifoldAdapter::ManifoldAdapter(
    std::shared_ptr<const symopt::Manifold<double>> manifold)
    : manifold_(std::move(manifold)), ambient_size_(0), tangent_size_(0) {
  SYMOPT_CHECK(manifold_ != nullptr, "ManifoldAdapter: manifold is null");
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  SYMOPT_CHECK(
      manifold_->AmbientSize() <= kIntMax && manifold_->Dim() <= kIntMax,
      "ManifoldAdapter: " << manifold_->Describe()
                          << " is too large for Ceres (ambient size "
                          << manifold_->AmbientSize() << ", dim "
                          << manifold_->Dim() << ", int sizes)");
  ambient_size_ = static_cast<int>(manifold_->AmbientSize());
  tangent_size_ = static_cast<int>(manifold_->Dim());
}

template <typename Body>
bool ManifoldAdapter::Guard(const char* method, Body&& body) const {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    errors_.Record([&] {
      return std::string(method) + " on " + manifold_->Describe() + ": " +
             e.what();
    });
  } catch (...) {
    errors_.Record([&] {
      return std::string(method) + " on " + manifold_->Describe() +
             ": unknown exception";
    });
  }
  return false;
}

bool ManifoldAdapter::Plus(const double* x,
                           const double* delta,
                           double* x_plus_delta) const {
  return Guard("Plus", [&] {
    RequireNonNull(x, "x");
    RequireNonNull(x_plus_delta, "x_plus_delta");
    if (tangent_size_ > 0) RequireNonNull(delta, "delta");
    RequireFinite(delta, tangent_size_, "delta");
    const symopt::Manifold<double>& m = *manifold_;
    const ConstView xv(x, m.rows(), m.cols());
    // v = B(x) delta, then y = R_x(v) in scratch: the output (which may be x
    // itself) is written only once everything succeeded.
    double* v = Scratch(0, ambient_size_);
    double* y = Scratch(1, ambient_size_);
    const View vv(v, m.rows(), m.cols());
    m.TangentBasisMultiply(xv, delta, vv);
    cpu::Copy(x, y, ambient_size_);
    const RetractReport report = m.Retract(View(y, m.rows(), m.cols()), vv);
    if (!report.ok()) {
      std::ostringstream os;
      os << "retraction collapsed " << report.collapsed_rows
         << " row(s), first row " << report.first_collapsed_row;
      throw AdapterFailure(os.str());
    }
    RequireFinite(y, ambient_size_, "x_plus_delta");
    cpu::Copy(y, x_plus_delta, ambient_size_);
  });
}

// PlusJacobian = B. The Jacobians and the maps are computed by different
// routes (B here; B^+ for Minus and MinusJacobian; B^+ rgrad for
// RightMultiplyByPlusJacobian), so Ceres's invariant tests check each against
// the others.
bool ManifoldAdapter::PlusJacobian(const double* x, double* jacobian) const {
  return Guard("PlusJacobian", [&] {
    RequireNonNull(x, "x");
    RequireNonNull(jacobian, "jacobian");
    const symopt::Manifold<double>& m = *manifold_;
    const ConstView xv(x, m.rows(), m.cols());
    MatrixOf(
        tangent_size_,
        ambient_size_,
        [&](const double* e, double* b_e) {
          m.TangentBasisMultiply(xv, e, View(b_e, m.rows(), m.cols()));
        },
        jacobian,
        "PlusJacobian");
  });
}

bool ManifoldAdapter::RightMultiplyByPlusJacobian(
    const double* x,
    const int num_rows,
    const double* ambient_matrix,
    double* tangent_matrix) const {
  return Guard("RightMultiplyByPlusJacobian", [&] {
    if (num_rows < 0) throw AdapterFailure("num_rows is negative");
    if (num_rows == 0) return;
    RequireNonNull(x, "x");
    RequireNonNull(ambient_matrix, "ambient_matrix");
    RequireNonNull(tangent_matrix, "tangent_matrix");
    const symopt::Manifold<double>& m = *manifold_;
    const ConstView xv(x, m.rows(), m.cols());
    // (A B)_r = (B^T a_r)^T for each row a_r of A, and B^T a = B^+ rgrad(a):
    // the Riemannian gradient r of the linear function <a, .> satisfies
    // <r, b_j>_x = <a, b_j> for every basis vector, and as B is orthonormal
    // in <.,.>_x, its coefficients B^+ r are exactly those <a, b_j>. Results
    // go to scratch and are copied out once all rows succeeded.
    const std::int64_t size = std::int64_t(num_rows) * tangent_size_;
    double* out = Scratch(0, std::size_t(size));
    double* rgrad = Scratch(1, ambient_size_);
    const View rv(rgrad, m.rows(), m.cols());
    for (int r = 0; r < num_rows; ++r) {
      cpu::Copy(ambient_matrix + std::int64_t(r) * ambient_size_,
                rgrad,
                ambient_size_);
      m.EgradToRgrad(xv, rv);
      m.TangentBasisTransposeMultiply(
          xv, rv, out + std::int64_t(r) * tangent_size_);
    }
    RequireFinite(out, size, "tangent_matrix");
    cpu::Copy(out, tangent_matrix, size);
  });
}

bool ManifoldAdapter::Minus(const double* y,
                            const double* x,
                            double* y_minus_x) const {
  return Guard("Minus", [&] {
    RequireNonNull(y, "y");
    RequireNonNull(x, "x");
    if (tangent_size_ > 0) RequireNonNull(y_minus_x, "y_minus_x");
    const symopt::Manifold<double>& m = *manifold_;
    double* v = Scratch(0, ambient_size_);
    double* c = Scratch(1, tangent_size_);
    m.InverseRetract(ConstView(x, m.rows(), m.cols()),
                     ConstView(y, m.rows(), m.cols()),
                     View(v, m.rows(), m.cols()));
    RequireFinite(v, ambient_size_, "InverseRetract(x, y)");
    m.TangentBasisTransposeMultiply(
        ConstView(x, m.rows(), m.cols()), ConstView(v, m.rows(), m.cols()), c);
    RequireFinite(c, tangent_size_, "y_minus_x");
    cpu::Copy(c, y_minus_x, tangent_size_);
  });
}

// MinusJacobian = B^+ (D_y InverseRetract(x, x) = P_x, and B^+ P_x = B^+).
bool ManifoldAdapter::MinusJacobian(const double* x, double* jacobian) const {
  return Guard("MinusJacobian", [&] {
    RequireNonNull(x, "x");
    RequireNonNull(jacobian, "jacobian");
    const symopt::Manifold<double>& m = *manifold_;
    const ConstView xv(x, m.rows(), m.cols());
    MatrixOf(
        ambient_size_,
        tangent_size_,
        [&](const double* e, double* b_plus_e) {
          m.TangentBasisTransposeMultiply(
              xv, ConstView(e, m.rows(), m.cols()), b_plus_e);
        },
        jacobian,
        "MinusJacobian");
  });
}

// ---- FirstOrderLoss ---------------------------------------------------------

FirstOrderLoss::FirstOrderLoss(int num_parameters, Callback callback)
    : num_parameters_(num_parameters), callback_(std::move(callback)) {
  SYMOPT_CHECK(
      num_parameters_ >= 1,
      "FirstOrderLoss: num_parameters must be >= 1, got " << num_parameters_);
  SYMOPT_CHECK(static_cast<bool>(callback_), "FirstOrderLoss: no callback");
}

bool FirstOrderLoss::Evaluate(const double* parameters,
                              double* cost,
                              double* gradient) const {
  try {
    RequireNonNull(parameters, "parameters");
    RequireNonNull(cost, "cost");
    const double value = callback_(parameters, gradient);
    if (!std::isfinite(value)) {
      std::ostringstream os;
      os << "loss is not finite (" << value << ")";
      throw AdapterFailure(os.str());
    }
    if (gradient != nullptr) {
      RequireFinite(gradient, num_parameters_, "gradient");
    }
    *cost = value;
    return true;
  } catch (const std::exception& e) {
    errors_.Record(
        [&] { return std::string("FirstOrderLoss::Evaluate: ") + e.what(); });
  } catch (...) {
    errors_.Record([] {
      return std::string("FirstOrderLoss::Evaluate: unknown exception");
    });
  }
  return false;
}

// ---- ModelParameters
// ----------------------------------------------------------

namespace {

std::vector<Product<double>::Part> PartsOf(
    const std::vector<Parameter<double>>& parameters) {
  SYMOPT_CHECK(!parameters.empty(), "ModelParameters: no parameters");
  std::vector<Product<double>::Part> parts;
  std::int64_t total = 0;
  for (const Parameter<double>& p : parameters) {
    SYMOPT_CHECK(
        p.manifold != nullptr,
        "ModelParameters: parameter '" << p.name << "' has no manifold");
    const std::int64_t rows = p.manifold->rows(), cols = p.manifold->cols();
    for (const TensorView<double>* v : {&p.value, &p.grad}) {
      const char* what = v == &p.value ? "value" : "gradient";
      SYMOPT_CHECK(v->data != nullptr,
                   "ModelParameters: parameter '" << p.name << "' " << what
                                                  << " is null");
      SYMOPT_CHECK(v->rows == rows && v->cols == cols,
                   "ModelParameters: parameter '"
                       << p.name << "' " << what << " has shape " << v->rows
                       << "x" << v->cols << " but its manifold is "
                       << p.manifold->Describe());
      SYMOPT_CHECK(v->device == Device::kCpu,
                   "ModelParameters: parameter '"
                       << p.name << "' " << what
                       << " is on the GPU; Ceres needs host memory");
    }
    total += rows * cols;
    parts.push_back(p.manifold);
  }
  SYMOPT_CHECK(
      total <= std::numeric_limits<int>::max(),
      "ModelParameters: " << total << " values are too many for Ceres (int)");
  return parts;
}

// flat[Offset(i) ...] <- the `member` view (value or grad) of parameter i.
void CopyBlocks(const std::vector<Parameter<double>>& parameters,
                const Product<double>& product,
                TensorView<double> Parameter<double>::*member,
                double* flat) {
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    const TensorView<double>& v = parameters[i].*member;
    cpu::Copy(v.data, flat + product.Offset(std::int64_t(i)), v.size());
  }
}

}  // namespace

ModelParameters::ModelParameters(std::vector<Parameter<double>> parameters)
    : parameters_(std::move(parameters)),
      manifold_(std::make_shared<Product<double>>(PartsOf(parameters_))) {}

void ModelParameters::Gather(double* x) const {
  CopyBlocks(parameters_, *manifold_, &Parameter<double>::value, x);
}

void ModelParameters::Scatter(const double* x) const {
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const TensorView<double>& v = parameters_[i].value;
    cpu::Copy(x + manifold_->Offset(std::int64_t(i)), v.data, v.size());
  }
}

FirstOrderLoss::Callback ModelParameters::Loss(
    std::function<double(bool need_gradient)> forward_backward) const {
  SYMOPT_CHECK(static_cast<bool>(forward_backward),
               "ModelParameters::Loss: no forward_backward function");
  // The callback holds its own copies (views and shared manifolds), so it
  // stays valid whatever becomes of this object.
  return [model = *this, fb = std::move(forward_backward)](const double* x,
                                                           double* egrad) {
    model.Scatter(x);
    const double value = fb(egrad != nullptr);
    if (egrad != nullptr) {
      CopyBlocks(
          model.parameters_, *model.manifold_, &Parameter<double>::grad, egrad);
    }
    return value;
  };
}

}  // namespace ceres
}  // namespace symopt
