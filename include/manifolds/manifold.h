// Manifold<T>: the one interface every constraint manifold implements.
//
// A manifold M here is a set of row-major rows x cols blocks of T (the
// "ambient" space R^{rows x cols} with the Frobenius inner product), together
// with the operations Riemannian optimizers need (Absil, Mahony & Sepulchre,
// "Optimization Algorithms on Matrix Manifolds", ch. 3-4):
//
//   ProjectPoint(x)          x <- nearest point of M (initialisation, repair)
//   Project(x, u)            u <- P_x(u), orthogonal projection onto T_x M
//   EgradToRgrad(x, g)       g <- Riemannian gradient from the Euclidean one
//                            (defaults to Project: embedded metric)
//   Retract(x, v)            x <- R_x(v), a first-order retraction
//   InverseRetract(x, y, v)  v <- the tangent v with R_x(v) = y (y near x)
//   Transport(x, y, v)       v <- T_{x->y}(v), a vector transport into T_y M
//   Inner(x, u, v)           <u, v>_x, the Riemannian metric
//   DistanceToManifold(x)    Frobenius distance from x to M
//   RandomPoint(x, seed)     a reproducible random point
//   TangentBasisMultiply     v = B(x) c, B(x) an orthonormal basis of T_x M
//   TangentBasisTransposeMultiply   c = B(x)^T u   (intrinsic coordinates)
//   Step(x, g, m, options)   the fused optimizer step, below
//
// Invariants every implementation satisfies (checked for each manifold by
// tests/manifold_checks.h): R_x(0) = x; R_x(v) is on M; P_x is idempotent and
// symmetric; T_{x->y}(v) lies in T_y M; Inner is symmetric; R_x(InverseRetract
// (x, y)) = y; B(x)^T B(x) = I and B(x) B(x)^T = P_x.
//
// The fused step (DESIGN.md section 3, STYLE M6) with learning rate lr,
// momentum beta, weight decay wd:
//
//   r  = EgradToRgrad(x, g + wd * x)
//   m  = beta * m + r                      (m is already in T_x M)
//   d  = nesterov ? r + beta * m : m       (d = r when beta == 0)
//   x' = R_x(-lr * d)
//   m  = T_{x->x'}(m)
//
// It must equal the composition of the individual operations (StepComposed,
// the reference the tests compare against), while a leaf may compute it in
// one pass over x, g and m (reading each once and writing x and m once).
// With momentum == 0 the buffer m may be an empty view and is not touched.
//
// Views: every view passed must have the manifold's shape (rows x cols) and
// the same device. Outputs never alias inputs unless a function says so.
// Device::kCuda views are routed to the CUDA backend (src/backend/dispatch.cpp,
// docs/cuda.md) for the operations it implements (Euclidean, Oblique,
// TieSubspace and Products of them: ProjectPoint, Project, EgradToRgrad,
// Retract, Transport, Step);
// any other operation or manifold throws NotCompiledError naming both, and a
// build without CUDA throws NotCompiledError for every kCuda view.
// All operations are const: a manifold holds only its description, never
// per-step state, so one instance can serve many parameters and threads.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>

#include "manifolds/check.h"
#include "manifolds/tensor_view.h"

namespace symopt {

// Hyper-parameters of one fused step. See the formula above. Plain data: the
// CPU loops, the shared Ops and the CUDA kernels take it by value.
struct StepOptions {
  double lr = 0.01;
  double momentum = 0.0;      // beta in [0, 1)
  bool nesterov = false;      // requires momentum > 0
  double weight_decay = 0.0;  // added to the Euclidean gradient: g + wd * x

  // True if the options are usable; otherwise false and *error says why.
  bool IsValid(std::string* error) const;
};

// What a retraction did besides moving the point. A row (of an oblique-type
// manifold) whose candidate x + v has norm <= the manifold's collapse
// tolerance cannot be normalised: it is kept unchanged (its momentum row too,
// in a fused step) and counted here. This is a defined event, never a NaN.
struct RetractReport {
  std::int64_t collapsed_rows = 0;
  std::int64_t first_collapsed_row = -1;  // -1 when none collapsed

  bool ok() const { return collapsed_rows == 0; }
  // Accumulates another block's report; its row indices are shifted by
  // row_offset.
  void Merge(const RetractReport& other, std::int64_t row_offset = 0);
};

namespace internal {
// Backend data derived from a manifold's description (e.g. the device copy of
// a tie pattern), built on first use by src/backend/dispatch.cpp.
struct DeviceState;
struct DeviceStateAccess;
}  // namespace internal

template <typename T>
class Manifold {
 public:
  using Scalar = T;
  using View = TensorView<T>;
  using ConstView = TensorView<const T>;

  // Requires: rows >= 1, cols >= 1.
  Manifold(std::int64_t rows, std::int64_t cols);
  virtual ~Manifold() = default;
  Manifold(const Manifold&) = delete;
  Manifold& operator=(const Manifold&) = delete;

  std::int64_t rows() const { return rows_; }
  std::int64_t cols() const { return cols_; }
  std::int64_t AmbientSize() const { return rows_ * cols_; }
  // Intrinsic dimension: the number of free parameters.
  virtual std::int64_t Dim() const = 0;
  // Short kind name, stored in checkpoints: "euclidean", "oblique", ...
  virtual std::string Name() const = 0;
  // Kind and shape, for messages: "oblique(64x784)".
  std::string Describe() const;

  // ---- Operations (validate shapes and devices, then call the *Impl) ----
  void ProjectPoint(View x) const;
  void Project(ConstView x, View u) const;
  void EgradToRgrad(ConstView x, View g) const;
  // Requires: x on M. v may alias nothing. Returns collapsed rows, if any.
  RetractReport Retract(View x, ConstView v) const;
  // Requires: x, y on M and y in the image of R_x (e.g. for a sphere,
  // <x, y> > 0 per row).
  void InverseRetract(ConstView x, ConstView y, View v) const;
  // Requires: v in T_{x_old} M. x_new on M.
  void Transport(ConstView x_old, ConstView x_new, View v) const;
  double Inner(ConstView x, ConstView u, ConstView v) const;
  double DistanceToManifold(ConstView x) const;
  void RandomPoint(View x, std::uint64_t seed) const;
  // coeffs: Dim() host values. v = B(x) coeffs.
  void TangentBasisMultiply(ConstView x, const T* coeffs, View v) const;
  // coeffs: Dim() host values written. coeffs = B(x)^T u.
  void TangentBasisTransposeMultiply(ConstView x, ConstView u, T* coeffs) const;

  // The fused step above. g is read only. m: the momentum buffer, in T_x M on
  // entry and in T_{x'} M on exit; may be empty when options.momentum == 0.
  // Requires: g finite (optimizers check this before any parameter moves).
  RetractReport Step(View x,
                     ConstView g,
                     View m,
                     const StepOptions& options) const;

  // The same step as a composition of the individual operations; the
  // reference for tests and the "unfused" baseline of the benchmarks.
  // scratch: at least 2 * AmbientSize() elements on x's device.
  RetractReport StepComposed(View x,
                             ConstView g,
                             View m,
                             const StepOptions& options,
                             View scratch) const;

 protected:
  virtual void ProjectPointImpl(View x) const = 0;
  virtual void ProjectImpl(ConstView x, View u) const = 0;
  virtual void EgradToRgradImpl(ConstView x, View g) const {
    ProjectImpl(x, g);
  }
  virtual RetractReport RetractImpl(View x, ConstView v) const = 0;
  virtual void InverseRetractImpl(ConstView x, ConstView y, View v) const = 0;
  // Default: projection onto the new tangent space.
  virtual void TransportImpl(ConstView x_old, ConstView x_new, View v) const;
  // Default: the embedded (Frobenius) metric.
  virtual double InnerImpl(ConstView x, ConstView u, ConstView v) const;
  virtual double DistanceToManifoldImpl(ConstView x) const = 0;
  // Default: i.i.d. N(0, 1) entries, then ProjectPointImpl.
  virtual void RandomPointImpl(View x, std::uint64_t seed) const;
  virtual void TangentBasisMultiplyImpl(ConstView x,
                                        const T* coeffs,
                                        View v) const = 0;
  virtual void TangentBasisTransposeMultiplyImpl(ConstView x,
                                                 ConstView u,
                                                 T* coeffs) const = 0;
  // Default: StepComposed with scratch allocated per call. Leaves override
  // this with a one-pass version.
  virtual RetractReport StepImpl(View x,
                                 ConstView g,
                                 View m,
                                 const StepOptions& options) const;

  // Throws InvalidArgument naming `what` unless v has this manifold's shape
  // and is on a supported device. Instantiated for U = T and U = const T.
  template <typename U>
  void CheckView(const TensorView<U>& v, const char* what) const;

 private:
  friend struct internal::DeviceStateAccess;

  // Throws InvalidArgument unless every view of `op` is on one device;
  // returns true when that device is the GPU.
  bool OnGpu(const char* op, std::initializer_list<Device> devices) const;

  std::int64_t rows_;
  std::int64_t cols_;
  // See internal::DeviceState; the mutex keeps const operations thread-safe.
  mutable std::mutex device_state_mutex_;
  mutable std::shared_ptr<internal::DeviceState> device_state_;
};

extern template class Manifold<float>;
extern template class Manifold<double>;

}  // namespace symopt
