// Per-element and per-class maths of the Euclidean and TieSubspace steps,
// written once for the CPU loops and the CUDA kernels (STYLE M1): stateless
// structs of SYMOPT_HD functions on raw pointers, no CUDA/Eigen headers, no
// thread indices (STYLE M2). ObliqueOps (manifolds/oblique.h) is the oblique
// counterpart.
//
// The arithmetic repeats the CPU reference operation for operation (types,
// order, rounding), so that with FMA contraction off on both sides
// (-ffp-contract=off, nvcc --fmad=false) a GPU result differs from the CPU
// one only where a double-precision sum is accumulated in a different order.
#pragma once

#include <cstdint>

#include "manifolds/check.h"

namespace symopt {

// StepOptions as plain scalars (device-copyable).
struct StepParams {
  double lr = 0;
  double momentum = 0;  // 0: the momentum buffer is never read
  bool nesterov = false;
  double weight_decay = 0;
};

// Euclidean(rows, cols): with r = g + wd x,
//   plain     x <- x - lr r
//   momentum  m <- beta m + r;  x <- x - lr m
//   Nesterov  m <- beta m + r;  x <- x - lr (r + beta m)
// all in T (the CPU loops of src/euclidean.cpp).
struct EuclideanOps {
  template <typename T>
  static SYMOPT_HD void Step(T* x,
                             const T* g,
                             T* m,
                             T lr,
                             T beta,
                             T wd,
                             bool momentum,
                             bool nesterov,
                             std::int64_t i) {
    if (!momentum) {
      x[i] -= lr * (g[i] + wd * x[i]);
    } else if (nesterov) {
      const T r = g[i] + wd * x[i];
      const T mi = beta * m[i] + r;
      m[i] = mi;
      x[i] -= lr * (r + beta * mi);
    } else {
      const T mi = beta * m[i] + (g[i] + wd * x[i]);
      m[i] = mi;
      x[i] -= lr * mi;
    }
  }
};

// Which per-class operation of TieSubspace a pass computes. Every one reads
// the members of a class (accumulating double sums a, b, c), computes ONE
// value per written array from the sums, and stores it in every member, so
// tied entries stay bitwise equal; zeroed entries are set to 0 separately.
enum class TieMode : int {
  kMean = 0,     // u <- mean_k(u)                    (Pi_E, embedded rgrad)
  kSum = 1,      // u <- sum_k(u)                     (shared-metric rgrad)
  kRetract = 2,  // x <- T(mean(x)) + T(mean(v))      (x + v in E)
  kStep = 3,     // the fused step below
};

// The fused tie step on one class of n members (src/tie_subspace.cpp):
//   a = sum x,  b = sum T(wd x + g) (or sum g without decay),  c = sum m
//   r  = shared ? T(b) : T(b / n)
//   mk = T(r + beta T(c / n)),  d = nesterov ? T(beta mk + r) : mk  (d = r
//   without momentum)
//   x <- T(T(a / n) + T(d * (-lr))),  m <- mk
struct TieStepScalars {
  double lr = 0;
  double momentum = 0;
  bool nesterov = false;
  double weight_decay = 0;
  bool shared = false;  // TieMetric::kShared
};

template <typename T>
struct TieClassValues {
  T first{};   // the value written to the first array (u or x)
  T second{};  // the momentum value (kStep with momentum)
};

struct TieOps {
  // Adds member i's contributions to the sums (a, b, c) of `mode`.
  // kMean/kSum: a += u_i (p0 = u). kRetract: a += x_i, b += v_i (p0 = x,
  // p1 = v). kStep: p0 = x, p1 = g, p2 = m (null without momentum).
  template <typename T>
  static SYMOPT_HD void Accumulate(TieMode mode,
                                   const T* p0,
                                   const T* p1,
                                   const T* p2,
                                   const TieStepScalars& s,
                                   std::int64_t i,
                                   double* a,
                                   double* b,
                                   double* c) {
    switch (mode) {
      case TieMode::kMean:
      case TieMode::kSum:
        *a += double(p0[i]);
        break;
      case TieMode::kRetract:
        *a += double(p0[i]);
        *b += double(p1[i]);
        break;
      case TieMode::kStep: {
        const T xi = p0[i];
        *a += double(xi);
        *b += double(s.weight_decay != 0 ? T(T(s.weight_decay) * xi + p1[i])
                                         : p1[i]);
        if (s.momentum > 0) *c += double(p2[i]);
        break;
      }
    }
  }

  // The class values from the sums of a class of n members.
  template <typename T>
  static SYMOPT_HD TieClassValues<T> Values(TieMode mode,
                                            const TieStepScalars& s,
                                            double a,
                                            double b,
                                            double c,
                                            std::int64_t n) {
    TieClassValues<T> v;
    const double dn = double(n);
    switch (mode) {
      case TieMode::kMean:
        v.first = T(a / dn);
        break;
      case TieMode::kSum:
        v.first = T(a);
        break;
      case TieMode::kRetract:
        v.first = T(T(a / dn) + T(b / dn));
        break;
      case TieMode::kStep: {
        const T r = s.shared ? T(b) : T(b / dn);
        T d = r;
        if (s.momentum > 0) {
          const T beta = T(s.momentum);
          const T mk = T(r + beta * T(c / dn));
          d = s.nesterov ? T(beta * mk + r) : mk;
          v.second = mk;
        }
        v.first = T(T(a / dn) + T(d * T(-s.lr)));
        break;
      }
    }
    return v;
  }
};

}  // namespace symopt
