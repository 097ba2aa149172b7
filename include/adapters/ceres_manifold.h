// Ceres Solver adapters: a symopt manifold as a ceres::Manifold
// (ManifoldAdapter), a loss as a ceres::FirstOrderFunction (FirstOrderLoss),
// and a model's parameters, living in its own buffers, as the one flat vector
// Ceres optimises (ModelParameters). So Ceres's GradientProblemSolver (L-BFGS,
// BFGS, nonlinear CG on a manifold) can run on symopt's constraint manifolds
// and polish a model in place (DESIGN.md section 9; STYLE C1-C6).
//
// The maths. Ceres works with intrinsic tangent coordinates delta in R^d,
// d = M.Dim(), while symopt works with ambient tangent vectors v in T_x M, a
// subspace of R^N, N = rows * cols. The bridge is the basis B(x) of T_x M
// (N x d) that every symopt manifold supplies, orthonormal in the manifold's
// metric <.,.>_x, with its metric adjoint B^+ (d x N; B^+ B = I_d and
// B B^+ = P_x, the tangent projector):
//   Manifold::TangentBasisMultiply           v = B c
//   Manifold::TangentBasisTransposeMultiply  c = B^+ u
// For the embedded (Frobenius) metric B^+ = B^T; for a TieSubspace with the
// kShared metric B is the class indicators and B^+ the per-class mean. Then
//
//   Plus(x, delta)              = R_x(B delta)             (R: the retraction)
//   PlusJacobian(x)             = D_delta Plus(x, 0) = B             (N x d)
//   Minus(y, x)                 = B^+ R_x^{-1}(y)          (InverseRetract)
//   MinusJacobian(x)            = D_y Minus(x, x) = B^+              (d x N)
//   RightMultiplyByPlusJacobian = A B, row by row as (B^T a_r)^T with
//                                 B^T a = B^+ rgrad_x(a): no N x d matrix.
//
// Why: D_v R_x(0) = I on T_x M, so D Plus = B. D_y R_x^{-1}(x) = P_x (for a
// sphere row, d/dy [y / <x, y>] = I - x x^T at y = x) and B^+ P_x = B^+. The
// Riemannian gradient r = rgrad_x(a) of the linear function <a, .> obeys
// <r, b_j>_x = <a, b_j> for every basis vector b_j, and B is orthonormal in
// <.,.>_x, so the coefficients B^+ r are (B^T a)_j: one EgradToRgrad and one
// B^+ per row, O(N). Because InverseRetract is the exact inverse of Retract,
// Minus(Plus(x, delta), x) = delta and Plus(x, Minus(y, x)) = y for y in the
// image of R_x: the invariants Ceres checks with
// EXPECT_THAT_MANIFOLD_INVARIANTS_HOLD (ceres/manifold_test_utils.h, after
// Hertzberg et al., "Integrating generic sensor fusion algorithms with sound
// state representations through encapsulation of manifolds", 2013).
//
// The gradient Ceres forms, B^T egrad, is therefore the coordinate vector of
// the Riemannian gradient in the manifold's own metric, and Ceres's line
// search and L-BFGS treat delta as Euclidean coordinates: the manifold's
// metric carries over. For a kShared TieSubspace, delta is the compact
// coordinates theta and the gradient is the per-class sum (weight sharing).
//
// Layout: every point is the manifold's rows x cols block flattened row-major
// (AmbientSize() = rows * cols doubles); every Jacobian is a row-major raw
// array. (Were it mapped with Eigen, a one-column Jacobian would need ColMajor,
// since Eigen rejects a row-major column vector: STYLE C4.)
//
// Errors: the adapter methods never throw (STYLE C4). A symopt exception, a
// non-finite result or a retraction that collapses a row makes the method
// return false, which Ceres treats as a failed step; LastError() says why.
//
// Requires Ceres >= 2.1 (ceres::Manifold) and a symopt built with its Ceres
// adapter (target symopt::ceres).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "symopt_config.h"
#if !SYMOPT_HAS_CERES
#error "this symopt was built without its Ceres adapter (SYMOPT_WITH_CERES)"
#endif

#include "ceres/first_order_function.h"
#include "ceres/manifold.h"
#include "ceres/version.h"
#include "manifolds/manifold.h"
#include "manifolds/product.h"
#include "optim/parameter.h"

// STYLE C5: one arithmetic gate, robust to a future 3.0.
#if CERES_VERSION_MAJOR * 100 + CERES_VERSION_MINOR < 201
#error "symopt's Ceres adapter needs Ceres >= 2.1 (ceres::Manifold)"
#endif

namespace symopt {
namespace ceres {

// Thread-safe record of the last failure of an adapter (Ceres may call a
// manifold from several threads; only failures take the lock).
class ErrorLog {
 public:
  // Counts a failure and stores make_message() as the last error. Never
  // throws: if the message cannot be built or stored (out of memory), the
  // failure is still counted.
  template <typename MakeMessage>
  void Record(MakeMessage&& make_message) const noexcept {
    num_failures_.fetch_add(1, std::memory_order_relaxed);
    try {
      std::string message = make_message();
      std::lock_guard<std::mutex> lock(mutex_);
      last_error_.swap(message);
    } catch (...) {
    }
  }
  // The message of the last failure ("" when none) and the failure count.
  std::string LastError() const;
  std::int64_t NumFailures() const {
    return num_failures_.load(std::memory_order_relaxed);
  }

 private:
  mutable std::mutex mutex_;
  mutable std::string last_error_;
  mutable std::atomic<std::int64_t> num_failures_{0};
};

// A symopt Manifold<double> seen by Ceres. Shares ownership of the manifold,
// so one symopt manifold can back many adapters (ceres::Problem and
// ceres::GradientProblem take ownership of the adapter object itself).
//
// All pointers are host memory. x, y and x_plus_delta: AmbientSize() doubles;
// delta and y_minus_x: TangentSize() doubles. Outputs may alias inputs of the
// same size (x_plus_delta may be x): results are computed in scratch space and
// copied out only on success, so on failure the output is left untouched.
// (Inside this class, plain "Manifold" names the Ceres base class, hence
// symopt::Manifold.)
class ManifoldAdapter final : public ::ceres::Manifold {
 public:
  // Requires: manifold non-null; AmbientSize() and Dim() fit in an int.
  // Throws InvalidArgument otherwise (the constructor is not a Ceres method).
  explicit ManifoldAdapter(
      std::shared_ptr<const symopt::Manifold<double>> manifold);

  int AmbientSize() const override { return ambient_size_; }
  int TangentSize() const override { return tangent_size_; }

  // x_plus_delta = R_x(B(x) delta).
  // Returns false (output untouched) if a pointer is null, delta or the result
  // is not finite, the retraction collapses a row, or the manifold throws.
  bool Plus(const double* x,
            const double* delta,
            double* x_plus_delta) const override;

  // jacobian: row-major AmbientSize() x TangentSize(), = B(x). Forms the
  // whole matrix: O(N d) memory and time, for small blocks only.
  bool PlusJacobian(const double* x, double* jacobian) const override;

  // tangent_matrix = ambient_matrix * B(x), both row-major with num_rows rows
  // (AmbientSize() and TangentSize() columns), one EgradToRgrad and one B^+
  // per row: O(num_rows * N) time, no N x d matrix. The output is written
  // only on success. This is what GradientProblemSolver calls (num_rows = 1,
  // the gradient) on every evaluation.
  bool RightMultiplyByPlusJacobian(const double* x,
                                   const int num_rows,
                                   const double* ambient_matrix,
                                   double* tangent_matrix) const override;

  // y_minus_x = B(x)^+ InverseRetract(x, y).
  // Requires: y in the image of R_x (for a sphere row: <x_r, y_r> > 0);
  // otherwise this returns false (output untouched).
  bool Minus(const double* y,
             const double* x,
             double* y_minus_x) const override;

  // jacobian: row-major TangentSize() x AmbientSize(), = B(x)^+ (B(x)^T for
  // the embedded metric). O(N^2) time: for small blocks only.
  bool MinusJacobian(const double* x, double* jacobian) const override;

  const symopt::Manifold<double>& manifold() const { return *manifold_; }
  // Why the last method that returned false failed ("" when none did), e.g.
  // "Plus on oblique(4x3): retraction collapsed 1 row(s), first row 2".
  std::string LastError() const { return errors_.LastError(); }
  std::int64_t NumFailures() const { return errors_.NumFailures(); }

 private:
  // Runs body(); an exception becomes false plus a LastError() message.
  template <typename Body>
  bool Guard(const char* method, Body&& body) const;

  std::shared_ptr<const symopt::Manifold<double>> manifold_;
  int ambient_size_;
  int tangent_size_;
  ErrorLog errors_;
};

// A loss over a flat parameter vector as a ceres::FirstOrderFunction, for
// ceres::GradientProblem(new FirstOrderLoss(...), new ManifoldAdapter(...)).
//
// The callback returns f(x) for x: num_parameters doubles and, when egrad is
// not null, writes the Euclidean (ambient) gradient of f into egrad
// (num_parameters doubles). Ceres passes a null gradient when it needs only
// the value. For a model, x is the parameters flattened in the manifold's
// layout (see ManifoldAdapter) and egrad what backpropagation produces;
// Ceres itself maps it to tangent coordinates with the adapter.
class FirstOrderLoss final : public ::ceres::FirstOrderFunction {
 public:
  using Callback = std::function<double(const double* x, double* egrad)>;

  // Requires: num_parameters >= 1 (it must equal the manifold adapter's
  // AmbientSize(): ceres::GradientProblem aborts otherwise); callback set.
  // Throws InvalidArgument otherwise.
  FirstOrderLoss(int num_parameters, Callback callback);

  // Never throws. Returns false if the callback throws or returns a
  // non-finite value or gradient entry (reported by LastError() with the
  // index of the first bad entry); Ceres then shrinks the step.
  bool Evaluate(const double* parameters,
                double* cost,
                double* gradient) const override;
  int NumParameters() const override { return num_parameters_; }

  std::string LastError() const { return errors_.LastError(); }
  std::int64_t NumFailures() const { return errors_.NumFailures(); }

 private:
  int num_parameters_;
  Callback callback_;
  ErrorLog errors_;
};

// A model's parameters (each a view of the model's own buffers plus its
// manifold) as the one flat vector Ceres optimises (DESIGN.md s.9), so that
// GradientProblemSolver can polish a trained model in place:
//
//   ModelParameters model(params);
//   std::vector<double> x(model.Size());
//   model.Gather(x.data());
//   ceres::GradientProblem problem(
//       new FirstOrderLoss(model.Size(), model.Loss(forward_backward)),
//       new ManifoldAdapter(model.manifold()));
//   ceres::Solve(options, problem, x.data(), &summary);
//   if (summary.IsSolutionUsable()) model.Scatter(x.data());
//
// Layout: parameter i occupies entries [Offset(i), Offset(i) + rows_i cols_i)
// of the flat vector, its block row-major: the layout of manifold(), the
// Product of the parameters' manifolds in order.
class ModelParameters {
 public:
  // Requires: at least one parameter; each with a manifold, and value and
  // grad views of the manifold's shape, non-null, on the host; total size
  // fits in an int. Throws InvalidArgument naming the parameter otherwise.
  explicit ModelParameters(std::vector<Parameter<double>> parameters);

  int Size() const { return int(manifold_->AmbientSize()); }
  std::int64_t Offset(std::int64_t i) const { return manifold_->Offset(i); }
  const std::shared_ptr<const Product<double>>& manifold() const {
    return manifold_;
  }
  const std::vector<Parameter<double>>& parameters() const {
    return parameters_;
  }

  // x (Size() doubles) <- the parameters' values. x must not overlap them.
  void Gather(double* x) const;
  // The parameters' values <- x (Size() doubles).
  void Scatter(const double* x) const;

  // A FirstOrderLoss callback: Scatter(x); value = forward_backward(), which
  // reads the parameters' values and, when asked (its argument true), writes
  // each parameter's Euclidean gradient into its grad view; then the grads
  // are gathered into egrad. While Ceres runs, the parameters hold the point
  // being evaluated; Scatter the solution afterwards (Ceres's result is the
  // best point, not necessarily the last one evaluated). The callback keeps
  // its own copy of the views: the parameters' buffers must outlive it.
  FirstOrderLoss::Callback Loss(
      std::function<double(bool need_gradient)> forward_backward) const;

 private:
  std::vector<Parameter<double>> parameters_;
  std::shared_ptr<const Product<double>> manifold_;
};

}  // namespace ceres
}  // namespace symopt
