// Oblique(m, n): the oblique manifold OB(m, n) of m x n matrices whose rows
// have unit 2-norm,
//
//   OB(m, n) = { W in R^{m x n} : ||w_r||_2 = 1 for every row r },
//
// a product of m unit spheres S^{n-1}, with the embedded (Frobenius) metric.
// A conv weight [out, in, kh, kw] is the m = out filters (rows) of length
// n = in*kh*kw (ForConv). Badrinarayanan, Mishra & Cipolla (papers/001_*):
// batch norm makes the loss invariant to per-filter scaling, and constraining
// every filter to unit norm removes that symmetry. DESIGN.md section 2.
//
// Operations (row r; <.,.> and ||.|| are per row, accumulated in double):
//   tangent space       T_W = { Z : <w_r, z_r> = 0 for every r }, dim m(n-1)
//   projection          P_W(Z)_r = z_r - <w_r, z_r> w_r
//   Riemannian gradient P_W(egrad)
//   retraction          R_W(xi)_r = (w_r + xi_r) / ||w_r + xi_r||
//   inverse retraction  v_r = y_r / <w_r, y_r> - w_r   (needs <w_r, y_r> > 0)
//   transport           T_{W->W'}(xi) = P_{W'}(xi)
//   metric              <U, V> = sum_ij U_ij V_ij
//   ProjectPoint        w_r <- w_r / ||w_r||; a zero row becomes e_0 =
//                       (1, 0, ..., 0); a non-finite row is an error
//   distance            sqrt(sum_r (||w_r|| - 1)^2)
//   tangent basis       per row the Householder reflector H_r = I - 2 u u^T /
//                       (u^T u), u = w_r - s e_0, s = -sign(w_r0) (s = -1 when
//                       w_r0 = 0), maps w_r to s e_0, so its columns 1..n-1
//                       are an orthonormal basis of w_r's tangent space. The
//                       Dim() = m(n-1) coefficients are laid out as a row-major
//                       m x (n-1) block: coefficient (r, j) multiplies column
//                       j+1 of H_r. (|u_0| = 1 + |w_r0| >= 1: no cancellation.)
// With n == 1 every row is +-1, the tangent space is {0} and Dim() == 0.
//
// Collapse (a defined event, never a NaN). A row whose candidate w_r + xi_r
// has 2-norm <= collapse_tol (or is not finite) cannot be normalised: the
// retraction keeps the row unchanged and counts it in the returned
// RetractReport (collapsed_rows, first_collapsed_row). In the fused Step such
// a row keeps both its point row and its momentum row unchanged; so does a
// row whose gradient or momentum holds a NaN or Inf. (In
// StepComposed the momentum row of a collapsed row has already been updated
// and is projected onto the unchanged point; with x on the manifold and m
// tangent, a step cannot collapse: ||x_r - lr d_r||^2 = 1 + lr^2 ||d_r||^2.)
// The default tolerance is sqrt(machine epsilon of T): 3.5e-4 for float,
// 1.5e-8 for double.
//
// Weight decay has no effect on this manifold. The step descends along
// P_W(g + wd W) = P_W(g) + wd (W - diag(<w_r, w_r>) W) = P_W(g) on OB: the
// decay term is normal to the manifold and projected away. (The scale of a
// filter is fixed at 1, which is exactly the symmetry weight decay fights.)
//
// The fused Step (Manifold<T>::Step) runs one pass over memory per row: with
// the 6 row dot products of x, g and m (their Gram matrix, accumulated in
// double), the new point and the transported momentum are linear combinations
//   x'_r = a_x x_r + a_g g_r + a_m m_r,   m'_r = b_x x_r + b_g g_r + b_m m_r,
// whose coefficients follow in closed form (ObliqueOps::StepCandidate,
// StepUpdate). So a row is read once to accumulate the sums and once more
// (from cache) to write x and m. Per row, the stages are:
//   1. s = AccumulateGram(x, g, m)                       (a reduction)
//   2. c = StepCandidate(s.xx, s.xg); yy = GramInner(s, c.y, c.y),
//      ymp = GramInner(s, c.y, c.mp); if NeedsDirect(yy, s.xx) recompute
//      both with AccumulateDirect (a reduction; only when the candidate
//      shrank, i.e. m is not tangent or x not unit, where the Gram form
//      could cancel)
//   3. u = StepUpdate(c, yy, ymp, collapse_tol); nothing more if collapsed
//   4. ApplyStep (increments in T: the cheap form) if IncrementIsAccurate(s,
//      u), else ApplyStepExact (double)
// The result equals StepComposed to rounding; float rows stay unit-norm to
// ~1e-8 at any row length. The CPU kernel (src/oblique.cpp) overlaps stage 4
// of one row with stage 1 of the next.
//
// ObliqueOps is that maths once for the CPU loops and the CUDA kernels
// (STYLE M1): no Eigen/CUDA includes, raw pointers, and every reduction split
// into an "accumulate" stage over a strided range [begin, end) (so one thread
// block can share a row, each thread calling it on its own stride and the
// caller reducing the partial sums) and an "apply" stage that takes the sums.
// Ops never read thread indices (STYLE M2).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "manifolds/manifold.h"

namespace symopt {

// The dot products of one row of x, g and m (the symmetric 3x3 Gram matrix),
// accumulated in double. Partial sums of disjoint element ranges Add up.
struct ObliqueGram {
  double xx = 0, xg = 0, xm = 0, gg = 0, gm = 0, mm = 0;

  SYMOPT_HD void Add(const ObliqueGram& o) {
    xx += o.xx;
    xg += o.xg;
    xm += o.xm;
    gg += o.gg;
    gm += o.gm;
    mm += o.mm;
  }
};

// A row vector written as a combination c_x x + c_g g + c_m m of the row's x,
// g and m.
struct ObliqueCombination {
  double cx = 0, cg = 0, cm = 0;
};

// One row's step before normalisation: the candidate y = x - lr d and the
// updated (not yet transported) momentum mp = beta m + r.
struct ObliqueCandidate {
  ObliqueCombination y;
  ObliqueCombination mp;
};

// One row's result: x' = x_new (combination), m' = m_new; or, when
// collapsed, nothing changes.
struct ObliqueRowUpdate {
  ObliqueCombination x_new;
  ObliqueCombination m_new;
  bool collapsed = false;
};

// A row update as increments in T (ObliqueOps::Increment): x' = x + (ax1 x +
// ag g + am m), m' = m + (bx x + bg g + bm1 m).
template <typename T>
struct ObliqueIncrement {
  T ax1, ag, am, bx, bg, bm1;
};

struct ObliqueOps {
  // Below kDirectFraction * <x, x> the Gram-based ||y||^2 may cancel; the
  // caller then accumulates ||y||^2 and <y, mp> directly (AccumulateDirect).
  static constexpr double kDirectFraction = 0.5;

  // ---- reductions: partial sums over i = begin, begin + stride, ... < end --

  // sum a_i b_i in double.
  template <typename T>
  static SYMOPT_HD double Dot(const T* a,
                              const T* b,
                              std::int64_t begin,
                              std::int64_t end,
                              std::int64_t stride) {
    double s = 0;
    for (std::int64_t i = begin; i < end; i += stride) {
      s += double(a[i]) * double(b[i]);
    }
    return s;
  }

  // sum (x_i + v_i)^2 in double: the squared norm of a retraction candidate.
  template <typename T>
  static SYMOPT_HD double CandidateNorm2(const T* x,
                                         const T* v,
                                         std::int64_t begin,
                                         std::int64_t end,
                                         std::int64_t stride) {
    double s = 0;
    for (std::int64_t i = begin; i < end; i += stride) {
      const double y = double(x[i]) + double(v[i]);
      s += y * y;
    }
    return s;
  }

  // The Gram sums of a row. m may be null (no momentum): xm, gm, mm stay 0.
  template <typename T>
  static SYMOPT_HD ObliqueGram AccumulateGram(const T* x,
                                              const T* g,
                                              const T* m,
                                              std::int64_t begin,
                                              std::int64_t end,
                                              std::int64_t stride) {
    ObliqueGram s;
    if (m == nullptr) {
      for (std::int64_t i = begin; i < end; i += stride) {
        const double xi = x[i], gi = g[i];
        s.xx += xi * xi;
        s.xg += xi * gi;
        s.gg += gi * gi;
      }
      return s;
    }
    for (std::int64_t i = begin; i < end; i += stride) {
      const double xi = x[i], gi = g[i], mi = m[i];
      s.xx += xi * xi;
      s.xg += xi * gi;
      s.xm += xi * mi;
      s.gg += gi * gi;
      s.gm += gi * mi;
      s.mm += mi * mi;
    }
    return s;
  }

  // Direct sums {||y||^2, <y, mp>} of a candidate (m may be null).
  template <typename T>
  static SYMOPT_HD void AccumulateDirect(const T* x,
                                         const T* g,
                                         const T* m,
                                         const ObliqueCandidate& c,
                                         std::int64_t begin,
                                         std::int64_t end,
                                         std::int64_t stride,
                                         double* yy,
                                         double* ymp) {
    double s_yy = 0, s_ymp = 0;
    for (std::int64_t i = begin; i < end; i += stride) {
      const double xi = x[i], gi = g[i], mi = m ? double(m[i]) : 0.0;
      const double y = c.y.cx * xi + c.y.cg * gi + c.y.cm * mi;
      const double mp = c.mp.cx * xi + c.mp.cg * gi + c.mp.cm * mi;
      s_yy += y * y;
      s_ymp += y * mp;
    }
    *yy = s_yy;
    *ymp = s_ymp;
  }

  // ---- per-row scalar maths ----------------------------------------------

  // The candidate of the fused step from xx = <x, x> and xg = <x, g>:
  //   r  = P_x(g + wd x) = g + (wd - xg - wd xx) x
  //   mp = beta m + r
  //   d  = nesterov ? r + beta mp : (beta > 0 ? mp : r)
  //   y  = x - lr d
  static SYMOPT_HD ObliqueCandidate StepCandidate(double xx,
                                                  double xg,
                                                  const StepOptions& p) {
    const double beta = p.momentum;
    const double rx = p.weight_decay - xg - p.weight_decay * xx;
    ObliqueCandidate c;
    c.mp.cx = rx;
    c.mp.cg = 1;
    c.mp.cm = beta;
    ObliqueCombination d;
    if (beta > 0 && p.nesterov) {
      d.cx = rx + beta * rx;
      d.cg = 1 + beta;
      d.cm = beta * beta;
    } else if (beta > 0) {
      d = c.mp;
    } else {
      d.cx = rx;
      d.cg = 1;
      d.cm = 0;
    }
    c.y.cx = 1 - p.lr * d.cx;
    c.y.cg = -p.lr * d.cg;
    c.y.cm = -p.lr * d.cm;
    return c;
  }

  // <a, b> for two combinations, from the Gram sums.
  static SYMOPT_HD double GramInner(const ObliqueGram& s,
                                    const ObliqueCombination& a,
                                    const ObliqueCombination& b) {
    return a.cx * (b.cx * s.xx + b.cg * s.xg + b.cm * s.xm) +
           a.cg * (b.cx * s.xg + b.cg * s.gg + b.cm * s.gm) +
           a.cm * (b.cx * s.xm + b.cg * s.gm + b.cm * s.mm);
  }

  // True when the Gram-based yy may have cancelled (see kDirectFraction).
  static SYMOPT_HD bool NeedsDirect(double yy, double xx) {
    return !(yy >= kDirectFraction * xx);
  }

  // The row's update from yy = ||y||^2 and ymp = <y, mp>:
  //   x' = y / ||y||,  m' = mp - <x', mp> x' = mp - (ymp / yy) y.
  // Collapsed (nothing changes) when ||y|| <= collapse_tol or a sum is not
  // finite.
  static SYMOPT_HD ObliqueRowUpdate StepUpdate(const ObliqueCandidate& c,
                                               double yy,
                                               double ymp,
                                               double collapse_tol) {
    ObliqueRowUpdate u;
    const double kMax = 1.7976931348623157e308;
    if (!(yy > collapse_tol * collapse_tol && yy <= kMax && ymp >= -kMax &&
          ymp <= kMax)) {
      u.collapsed = true;
      return u;
    }
    const double inv = 1.0 / std::sqrt(yy);
    u.x_new.cx = c.y.cx * inv;
    u.x_new.cg = c.y.cg * inv;
    u.x_new.cm = c.y.cm * inv;
    const double t = ymp / yy;
    u.m_new.cx = c.mp.cx - t * c.y.cx;
    u.m_new.cg = c.mp.cg - t * c.y.cg;
    u.m_new.cm = c.mp.cm - t * c.y.cm;
    return u;
  }

  // ---- apply stages: elementwise over i = begin, begin + stride, ... < end -

  // The update of one element, in increment form and in T:
  //   x_i <- x_i + ((ax - 1) x_i + ag g_i + am m_i)
  //   m_i <- m_i + (bx x_i + bg g_i + (bm - 1) m_i)      (old values on the
  // right). The increment is small next to x_i, so rounding the coefficients
  // and the arithmetic to T costs only the final rounding of each element:
  // float rows stay unit-norm to ~1e-7 at any length, at the price of float
  // arithmetic (half that of double on SIMD hardware).
  template <typename T>
  static SYMOPT_HD ObliqueIncrement<T> Increment(const ObliqueRowUpdate& u) {
    ObliqueIncrement<T> k;
    k.ax1 = T(u.x_new.cx - 1);
    k.ag = T(u.x_new.cg);
    k.am = T(u.x_new.cm);
    k.bx = T(u.m_new.cx);
    k.bg = T(u.m_new.cg);
    k.bm1 = T(u.m_new.cm - 1);
    return k;
  }

  template <typename T>
  static SYMOPT_HD void ApplyElement(
      T* x, const T* g, T* m, const ObliqueIncrement<T>& k, std::int64_t i) {
    const T xi = x[i], gi = g[i], mi = m[i];
    x[i] = xi + (k.ax1 * xi + k.ag * gi + k.am * mi);
    m[i] = mi + (k.bx * xi + k.bg * gi + k.bm1 * mi);
  }

  // The same without a momentum buffer (am == 0).
  template <typename T>
  static SYMOPT_HD void ApplyElement(T* x,
                                     const T* g,
                                     const ObliqueIncrement<T>& k,
                                     std::int64_t i) {
    const T xi = x[i];
    x[i] = xi + (k.ax1 * xi + k.ag * g[i]);
  }

  // Whether the increment form is accurate for this row: the terms of x's
  // increment are at most kIncrementBound times ||x|| in size,
  //   |ax - 1| ||x|| + |ag| ||g|| + |am| ||m|| <= kIncrementBound ||x||,
  // so rounding them to T costs no more than rounding x itself. This holds
  // for ordinary steps (lr ||d|| small); it fails when g has a large normal
  // component times lr, or the candidate nearly cancelled. Such rows use
  // ApplyStepExact.
  static constexpr double kIncrementBound = 1.0;
  static SYMOPT_HD bool IncrementIsAccurate(const ObliqueGram& s,
                                            const ObliqueRowUpdate& u) {
    const double a = u.x_new.cx - 1, b = u.x_new.cg, c = u.x_new.cm;
    const double terms = (a < 0 ? -a : a) * std::sqrt(s.xx) +
                         (b < 0 ? -b : b) * std::sqrt(s.gg) +
                         (c < 0 ? -c : c) * std::sqrt(s.mm);
    return terms <= kIncrementBound * std::sqrt(s.xx);
  }

  // ApplyElement over i = begin, begin + stride, ... < end. m may be null
  // (then u.m_new is ignored and u.x_new.cm must be 0). x, g, m must not
  // alias. Requires: IncrementIsAccurate (else use ApplyStepExact).
  template <typename T>
  static SYMOPT_HD void ApplyStep(T* x,
                                  const T* g,
                                  T* m,
                                  const ObliqueRowUpdate& u,
                                  std::int64_t begin,
                                  std::int64_t end,
                                  std::int64_t stride) {
    const ObliqueIncrement<T> k = Increment<T>(u);
    if (m == nullptr) {
      for (std::int64_t i = begin; i < end; i += stride) {
        ApplyElement(x, g, k, i);
      }
      return;
    }
    for (std::int64_t i = begin; i < end; i += stride) {
      ApplyElement(x, g, m, k, i);
    }
  }

  // x_i <- ax x_i + ag g_i + am m_i;  m_i <- bx x_i + bg g_i + bm m_i (old
  // values on the right), computed in double and rounded once to T: accurate
  // whatever the coefficients. m may be null (then u.m_new is ignored and
  // u.x_new.cm must be 0). x, g, m must not alias.
  template <typename T>
  static SYMOPT_HD void ApplyStepExact(T* x,
                                       const T* g,
                                       T* m,
                                       const ObliqueRowUpdate& u,
                                       std::int64_t begin,
                                       std::int64_t end,
                                       std::int64_t stride) {
    const double ax = u.x_new.cx, ag = u.x_new.cg, am = u.x_new.cm;
    const double bx = u.m_new.cx, bg = u.m_new.cg, bm = u.m_new.cm;
    if (m == nullptr) {
      for (std::int64_t i = begin; i < end; i += stride) {
        x[i] = T(ax * double(x[i]) + ag * double(g[i]));
      }
      return;
    }
    for (std::int64_t i = begin; i < end; i += stride) {
      const double xi = x[i], gi = g[i], mi = m[i];
      x[i] = T(ax * xi + ag * gi + am * mi);
      m[i] = T(bx * xi + bg * gi + bm * mi);
    }
  }

  // u_i <- u_i - d x_i, with d = <x, u> (the projection P_x).
  template <typename T>
  static SYMOPT_HD void ApplyProject(const T* x,
                                     T* u,
                                     double d,
                                     std::int64_t begin,
                                     std::int64_t end,
                                     std::int64_t stride) {
    for (std::int64_t i = begin; i < end; i += stride) {
      u[i] = T(double(u[i]) - d * double(x[i]));
    }
  }

  // x_i <- (x_i + v_i) * inv_norm, inv_norm = 1 / ||x + v||.
  template <typename T>
  static SYMOPT_HD void ApplyRetract(T* x,
                                     const T* v,
                                     double inv_norm,
                                     std::int64_t begin,
                                     std::int64_t end,
                                     std::int64_t stride) {
    for (std::int64_t i = begin; i < end; i += stride) {
      x[i] = T((double(x[i]) + double(v[i])) * inv_norm);
    }
  }

  // True when a retraction candidate of squared norm yy can be normalised.
  static SYMOPT_HD bool Normalisable(double yy, double collapse_tol) {
    return yy > collapse_tol * collapse_tol && yy <= 1.7976931348623157e308;
  }

  // ---- Householder tangent basis of one row (n entries, sequential) -------

  // The sign s = -sign(x_0) (s = -1 when x_0 = 0) of the reflector.
  template <typename T>
  static SYMOPT_HD double HouseholderSign(const T* x) {
    return x[0] < T(0) ? 1.0 : -1.0;
  }

  // v = H (0, c_0, ..., c_{n-2}),  H = I - 2 u u^T / (u^T u), u = x - s e_0.
  template <typename T>
  static SYMOPT_HD void BasisMultiply(const T* x,
                                      const T* c,
                                      T* v,
                                      std::int64_t n) {
    const double s = HouseholderSign(x);
    double uu = (double(x[0]) - s) * (double(x[0]) - s);
    double uc = 0;  // <u, (0, c)>
    for (std::int64_t i = 1; i < n; ++i) {
      uu += double(x[i]) * double(x[i]);
      uc += double(x[i]) * double(c[i - 1]);
    }
    const double k = 2 * uc / uu;
    v[0] = T(-k * (double(x[0]) - s));
    for (std::int64_t i = 1; i < n; ++i) {
      v[i] = T(double(c[i - 1]) - k * double(x[i]));
    }
  }

  // c = (H w)_{1..n-1}: the coefficients of w in the row's basis.
  template <typename T>
  static SYMOPT_HD void BasisTransposeMultiply(const T* x,
                                               const T* w,
                                               T* c,
                                               std::int64_t n) {
    const double s = HouseholderSign(x);
    const double u0 = double(x[0]) - s;
    double uu = u0 * u0;
    double uw = u0 * double(w[0]);
    for (std::int64_t i = 1; i < n; ++i) {
      uu += double(x[i]) * double(x[i]);
      uw += double(x[i]) * double(w[i]);
    }
    const double k = 2 * uw / uu;
    for (std::int64_t i = 1; i < n; ++i) {
      c[i - 1] = T(double(w[i]) - k * double(x[i]));
    }
  }
};

template <typename T>
class Oblique final : public Manifold<T> {
 public:
  using typename Manifold<T>::View;
  using typename Manifold<T>::ConstView;

  // sqrt(machine epsilon of T).
  static T DefaultCollapseTol();

  // OB(rows, cols).
  // Requires: rows >= 1, cols >= 1, collapse_tol finite and >= 0.
  Oblique(std::int64_t rows,
          std::int64_t cols,
          T collapse_tol = DefaultCollapseTol());

  // The manifold of a conv weight [out, in, kh, kw] (row-major, as stored by
  // nn::Conv2d): rows = out filters, cols = in * kh * kw.
  // Requires: every extent >= 1.
  static Oblique ForConv(std::int64_t out,
                         std::int64_t in,
                         std::int64_t kh,
                         std::int64_t kw,
                         T collapse_tol = DefaultCollapseTol());

  std::int64_t Dim() const override {
    return this->rows() * (this->cols() - 1);
  }
  std::string Name() const override { return "oblique"; }
  T collapse_tol() const { return collapse_tol_; }

 protected:
  // Throws InvalidArgument naming the first row that is not finite; x is
  // untouched then.
  void ProjectPointImpl(View x) const override;
  void ProjectImpl(ConstView x, View u) const override;
  RetractReport RetractImpl(View x, ConstView v) const override;
  // Throws InvalidArgument naming the first row with <x_r, y_r> <= 0; v is
  // untouched then.
  void InverseRetractImpl(ConstView x, ConstView y, View v) const override;
  double DistanceToManifoldImpl(ConstView x) const override;
  void TangentBasisMultiplyImpl(ConstView x,
                                const T* coeffs,
                                View v) const override;
  void TangentBasisTransposeMultiplyImpl(ConstView x,
                                         ConstView u,
                                         T* coeffs) const override;
  // One pass over memory per row (see above). OpenMP over rows.
  RetractReport StepImpl(View x,
                         ConstView g,
                         View m,
                         const StepOptions& options) const override;

 private:
  T collapse_tol_;
};

extern template class Oblique<float>;
extern template class Oblique<double>;

}  // namespace symopt
