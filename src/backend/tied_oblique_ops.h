// Per-row maths of TiedOblique (include/manifolds/tied_oblique.h), written
// once for the CPU loops of src/tied_oblique.cpp and the CUDA kernels of
// cuda/tied_oblique.cu (STYLE M1): stateless SYMOPT_HD functions on raw
// pointers, no CUDA/Eigen headers, no thread indices (the caller passes the
// row, STYLE M2).
//
// A row r of a TiedOblique owns the classes at positions
// row_start[r] .. row_start[r + 1]; class position q has the members
// members[member_start[q] .. member_start[q + 1]) (flat indices, int32 as the
// pattern has < 2^31 entries). In compact coordinates (one value per class,
// the class mean) with n_k the class size, row r's squared norm is
// sum_k n_k theta_k^2, so every operation is: (1) per-row sums over the
// row's classes, (2) a per-row scalar decision, (3) one value per class
// written to every member (tied entries stay bitwise equal).
//
// The functions keep no per-row scratch: each pass recomputes the class
// means it needs (a deterministic recomputation, so the values are the same
// every time), which lets a GPU thread run a row of any length in registers.
// The arithmetic (types, order, rounding to T) is the CPU reference's, so
// with FMA contraction off on both sides (-ffp-contract=off, nvcc
// --fmad=false) the GPU gives the CPU's bits: each row is summed in the
// same order by one thread.
//
// Writes happen only in a row's last pass, class by class, after that
// class's members were read: classes are disjoint, so no pass reads a value
// the row already overwrote.
#pragma once

#include <cmath>
#include <cstdint>

#include "backend/step_ops.h"
#include "manifolds/check.h"

namespace symopt {

// The CSR layout of a TiedOblique (host or device arrays).
struct TiedObliqueLayout {
  const std::int64_t* row_start = nullptr;     // rows + 1
  const std::int64_t* member_start = nullptr;  // classes + 1
  const std::int32_t* members = nullptr;       // flat indices, by class
  std::int64_t rows = 0;
};

struct TiedObliqueOps {
  // Largest finite double: a row norm above it (inf) or NaN is a collapse.
  static constexpr double kMaxFinite = 1.7976931348623157e308;

  // sum of a over class q's members, in double, in member order.
  template <typename T>
  static SYMOPT_HD double Sum(const TiedObliqueLayout& l,
                              const T* a,
                              std::int64_t q) {
    double s = 0.0;
    for (std::int64_t j = l.member_start[q]; j < l.member_start[q + 1]; ++j) {
      s += double(a[l.members[j]]);
    }
    return s;
  }
  static SYMOPT_HD double Size(const TiedObliqueLayout& l, std::int64_t q) {
    return double(l.member_start[q + 1] - l.member_start[q]);
  }
  template <typename T>
  static SYMOPT_HD double Mean(const TiedObliqueLayout& l,
                               const T* a,
                               std::int64_t q) {
    return Sum(l, a, q) / Size(l, q);
  }
  template <typename T>
  static SYMOPT_HD void Write(const TiedObliqueLayout& l,
                              T value,
                              T* a,
                              std::int64_t q) {
    for (std::int64_t j = l.member_start[q]; j < l.member_start[q + 1]; ++j) {
      a[l.members[j]] = value;
    }
  }
  // True when a row whose candidate has norm `norm` collapses (also when the
  // norm is not finite): the row is then left unchanged.
  static SYMOPT_HD bool Collapsed(double norm, double tol) {
    return !(norm > tol && norm <= kMaxFinite);
  }

  // x_r <- Pi_E x_r / |Pi_E x_r|, or the constant unit row in E when that
  // norm is <= tol. Requires: x_r finite (the caller checks).
  template <typename T>
  static SYMOPT_HD void ProjectPointRow(const TiedObliqueLayout& l,
                                        std::int64_t r,
                                        T* x,
                                        double tol) {
    const std::int64_t b = l.row_start[r], e = l.row_start[r + 1];
    double xx = 0.0, entries = 0.0;
    for (std::int64_t q = b; q < e; ++q) {
      const double n = Size(l, q), xt = Mean(l, x, q);
      xx += n * xt * xt;
      entries += n;
    }
    const double norm = std::sqrt(xx);
    for (std::int64_t q = b; q < e; ++q) {
      const double xt = Mean(l, x, q);
      Write(l, T(norm > tol ? xt / norm : 1.0 / std::sqrt(entries)), x, q);
    }
  }

  // u_r <- Pi_E u_r - c x_r, c = <x_r, Pi_E u_r> / <x_r, x_r> (in E).
  template <typename T>
  static SYMOPT_HD void ProjectRow(const TiedObliqueLayout& l,
                                   std::int64_t r,
                                   const T* x,
                                   T* u) {
    const std::int64_t b = l.row_start[r], e = l.row_start[r + 1];
    double xu = 0.0, xx = 0.0;
    for (std::int64_t q = b; q < e; ++q) {
      const double n = Size(l, q), xt = Mean(l, x, q), ut = Mean(l, u, q);
      xu += n * xt * ut;
      xx += n * xt * xt;
    }
    const double c = xu / xx;
    for (std::int64_t q = b; q < e; ++q) {
      const double xt = Mean(l, x, q), ut = Mean(l, u, q);
      Write(l, T(ut - c * xt), u, q);
    }
  }

  // x_r <- (x_r + v_r) / |x_r + v_r| in compact coordinates. Returns true
  // (and leaves x_r unchanged) when the row collapses.
  template <typename T>
  static SYMOPT_HD bool RetractRow(const TiedObliqueLayout& l,
                                   std::int64_t r,
                                   T* x,
                                   const T* v,
                                   double tol) {
    const std::int64_t b = l.row_start[r], e = l.row_start[r + 1];
    double cc = 0.0;
    for (std::int64_t q = b; q < e; ++q) {
      const double n = Size(l, q), ct = RetractCandidate(l, x, v, q);
      cc += n * ct * ct;
    }
    const double norm = std::sqrt(cc);
    if (Collapsed(norm, tol)) return true;
    for (std::int64_t q = b; q < e; ++q) {
      Write(l, T(RetractCandidate(l, x, v, q) / norm), x, q);
    }
    return false;
  }

  // The fused step of one row (Manifold::Step's formula, in compact
  // coordinates): r = P_x(mean of g + wd x), m = beta m + r, d = nesterov ?
  // r + beta m : m, x' = normalise(x - lr d), m = P_x'(m). m may be null
  // when p.momentum == 0. Returns true (x_r and m_r unchanged) on collapse.
  template <typename T>
  static SYMOPT_HD bool StepRow(const TiedObliqueLayout& l,
                                std::int64_t r,
                                T* x,
                                const T* g,
                                T* m,
                                const StepOptions& p,
                                double tol) {
    const std::int64_t b = l.row_start[r], e = l.row_start[r + 1];
    const bool momentum = p.momentum > 0.0;
    // Pass 1: <x, x> and <x, g + wd x> -> the tangent coefficient cr.
    double xx = 0.0, xr = 0.0;
    for (std::int64_t q = b; q < e; ++q) {
      double xt, rt;
      Means(l, x, g, p, q, &xt, &rt);
      const double n = Size(l, q);
      xx += n * xt * xt;
      xr += n * xt * rt;
    }
    const double cr = xr / xx;
    // Pass 2: the candidate's norm.
    double cc = 0.0;
    for (std::int64_t q = b; q < e; ++q) {
      double ct, mk;
      Candidate(l, x, g, m, p, cr, q, &ct, &mk);
      const double n = Size(l, q);
      cc += n * ct * ct;
    }
    const double norm = std::sqrt(cc);
    if (Collapsed(norm, tol)) return true;
    if (!momentum) {
      for (std::int64_t q = b; q < e; ++q) {
        double ct, mk;
        Candidate(l, x, g, m, p, cr, q, &ct, &mk);
        Write(l, T(ct / norm), x, q);
      }
      return false;
    }
    // Pass 3: <x', x'> and <x', m> for the transport of m.
    double yy = 0.0, ym = 0.0;
    for (std::int64_t q = b; q < e; ++q) {
      double ct, mk;
      Candidate(l, x, g, m, p, cr, q, &ct, &mk);
      const double n = Size(l, q), yt = double(T(ct / norm));
      yy += n * yt * yt;
      ym += n * yt * mk;
    }
    const double cm = ym / yy;
    // Pass 4: write x' and m = P_x'(m), class by class.
    for (std::int64_t q = b; q < e; ++q) {
      double ct, mk;
      Candidate(l, x, g, m, p, cr, q, &ct, &mk);
      const double yt = double(T(ct / norm));
      Write(l, T(yt), x, q);
      Write(l, T(mk - cm * yt), m, q);
    }
    return false;
  }

 private:
  // double(T(mean x)) + double(T(mean v)) of class q (the retraction's
  // candidate, rounded where the composed operations store a T).
  template <typename T>
  static SYMOPT_HD double RetractCandidate(const TiedObliqueLayout& l,
                                           const T* x,
                                           const T* v,
                                           std::int64_t q) {
    return double(T(Mean(l, x, q))) + double(T(Mean(l, v, q)));
  }

  // Class q's mean of x and of g + wd x (each member's sum rounded to T as
  // the composed step stores it).
  template <typename T>
  static SYMOPT_HD void Means(const TiedObliqueLayout& l,
                              const T* x,
                              const T* g,
                              const StepOptions& p,
                              std::int64_t q,
                              double* xt,
                              double* rt) {
    const bool decay = p.weight_decay != 0.0;
    const T wd = T(p.weight_decay);
    double sx = 0.0, sg = 0.0;
    for (std::int64_t j = l.member_start[q]; j < l.member_start[q + 1]; ++j) {
      const T xi = x[l.members[j]];
      sx += double(xi);
      sg += double(decay ? T(wd * xi + g[l.members[j]]) : g[l.members[j]]);
    }
    const double n = Size(l, q);
    *xt = sx / n;
    *rt = sg / n;
  }

  // Class q's candidate ct = x - lr d (as double(T) sums) and its new
  // momentum value mk (0 without momentum).
  template <typename T>
  static SYMOPT_HD void Candidate(const TiedObliqueLayout& l,
                                  const T* x,
                                  const T* g,
                                  const T* m,
                                  const StepOptions& p,
                                  double cr,
                                  std::int64_t q,
                                  double* ct,
                                  double* mk) {
    const bool momentum = p.momentum > 0.0;
    const T beta = T(p.momentum), neg_lr = T(-p.lr);
    double xt, rt;
    Means(l, x, g, p, q, &xt, &rt);
    const T rk = T(rt - cr * xt);
    T d = rk;
    *mk = 0.0;
    if (momentum) {
      const T mnew = T(rk + beta * T(Mean(l, m, q)));
      d = p.nesterov ? T(beta * mnew + rk) : mnew;
      *mk = double(mnew);
    }
    *ct = double(T(xt)) + double(T(d * neg_lr));
  }
};

}  // namespace symopt
