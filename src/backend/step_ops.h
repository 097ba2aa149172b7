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
#include "manifolds/manifold.h"
#include "tie_members.h"

namespace symopt {

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

// ---- TieSubspace ------------------------------------------------------------
//
// Which per-class operation of TieSubspace a pass computes. Every one reads
// the members of a class, computes ONE value per written array, and stores it
// in every member, so tied entries stay bitwise equal; zeroed entries are set
// to 0 separately.
enum class TieMode : int {
  kMean = 0,     // u <- mean_k(u)                    (Pi_E, embedded rgrad)
  kSum = 1,      // u <- sum_k(u)                     (shared-metric rgrad)
  kRetract = 2,  // x <- T(mean(x)) + T(mean(v))      (x + v in E)
  kStep = 3,     // the fused step below
};

// The fused tie step on one class of n members (TieOps::StepValues):
//   gd_i = T(wd x_i + g_i) (g_i without decay)
//   r  = shared ? sum(gd) : mean(gd)
//   mk = T(r + beta mean(m)),  d = nesterov ? T(beta mk + r) : mk  (d = r
//   without momentum)
//   x <- T(mean(x) + T(d * T(-lr))),  m <- mk
// where every mean and sum is rounded once to T (TieOps::Mean, TieOps::Sum).
struct TieStepScalars {
  double lr = 0;
  double momentum = 0;
  bool nesterov = false;
  double weight_decay = 0;
  bool shared = false;  // TieMetric::kShared

  // The scalars of a step with options o on a tie subspace of that metric.
  static TieStepScalars Of(const StepOptions& o, bool shared_metric) {
    TieStepScalars s;
    s.lr = o.lr;
    s.momentum = o.momentum;
    s.nesterov = o.nesterov;
    s.weight_decay = o.weight_decay;
    s.shared = shared_metric;
    return s;
  }
};

// The branches of a pass, read from the scalars at run time (the kernels: a
// branch uniform over the launch) ...
struct TieFlags {
  bool momentum = false;  // kStep reads and writes m
  bool decay = false;     // kStep adds wd x to g
  bool shared = false;    // kStep's r is the class sum (kShared metric)

  static SYMOPT_HD TieFlags Of(const TieStepScalars& s) {
    TieFlags f;
    f.momentum = s.momentum > 0;
    f.decay = s.weight_decay != 0;
    f.shared = s.shared;
    return f;
  }
};

// ... or fixed at compile time (the CPU loops: each combination is its own
// loop, and the pair loops vectorise). Must agree with TieFlags::Of(s).
template <bool kMomentum, bool kDecay, bool kShared>
struct TieFixedFlags {
  static constexpr bool momentum = kMomentum;
  static constexpr bool decay = kDecay;
  static constexpr bool shared = kShared;
};

template <typename T>
struct TieClassValues {
  T first{};   // the value written to the first array (u or x)
  T second{};  // the momentum value (kStep with momentum)
};

// The per-class maths, in two forms that give the same bits:
//   Class            one caller visits a whole class (the CPU loops; one
//                    thread per small class on the GPU). Pairs (a member type
//                    of compile-time size 2, tie_members.h) take PairValues,
//                    every other class Accumulate + Values.
//   Accumulate, Values   the split form for a class shared by a thread group:
//                    each thread accumulates its members' double sums, the
//                    group reduces them, Values turns them into the class
//                    values.
// Arrays: p0 is the array written (u, or x), p1 is read only (v for kRetract,
// g for kStep), p2 is the momentum buffer (kStep with flags.momentum, else
// unused and may be null). They never alias.
struct TieOps {
  // The mean of a class of n members from its double sum: one rounding.
  template <typename T>
  static SYMOPT_HD T MeanOfSum(double sum, std::int64_t n) {
    return T(sum / double(n));
  }

  // The mean of a pair, a/2 + b/2 in T: both halves are exact and the sum is
  // rounded once, so this is the correctly rounded mean (as the double sum
  // is), but it needs no conversions and vectorises; only subnormal members
  // (|a| < 2^-125 in float) round differently from MeanOfSum.
  template <typename T>
  static SYMOPT_HD T PairMean(T a, T b) {
    return T(a * T(0.5) + b * T(0.5));
  }

  // The mean and the sum of value(i) over the members of a class, rounded
  // once to T. For pairs the sum a + b in T is that rounding (double rounding
  // of a sum of two floats through double is innocuous).
  template <typename T, typename Members, typename Value>
  static SYMOPT_HD T Mean(const Members& mem, Value&& value) {
    if constexpr (tie_internal::FixedSize<Members>::value == 2) {
      return PairMean<T>(value(mem[0]), value(mem[1]));
    } else {
      double s = 0.0;
      for (std::int64_t j = 0; j < mem.size(); ++j) s += double(value(mem[j]));
      return MeanOfSum<T>(s, mem.size());
    }
  }
  template <typename T, typename Members, typename Value>
  static SYMOPT_HD T Sum(const Members& mem, Value&& value) {
    if constexpr (tie_internal::FixedSize<Members>::value == 2) {
      return T(value(mem[0]) + value(mem[1]));
    } else {
      double s = 0.0;
      for (std::int64_t j = 0; j < mem.size(); ++j) s += double(value(mem[j]));
      return T(s);
    }
  }

  // The gradient of member i with weight decay: T(wd x + g).
  template <typename T>
  static SYMOPT_HD T Decayed(T x, T g, T wd, bool decay) {
    return decay ? T(wd * x + g) : g;
  }

  // The step's class values from r (the class rgrad), the class means of m
  // and x.
  template <typename T, typename Flags>
  static SYMOPT_HD TieClassValues<T> StepValues(
      const TieStepScalars& s, Flags f, T r, T mean_m, T mean_x) {
    TieClassValues<T> v;
    T d = r;
    if (f.momentum) {
      const T beta = T(s.momentum);
      v.second = T(r + beta * mean_m);
      d = s.nesterov ? T(beta * v.second + r) : v.second;
    }
    v.first = T(mean_x + T(d * T(-s.lr)));
    return v;
  }

  // Adds member i's contributions to the sums (a, b, c) of the mode:
  // kMean/kSum: a += u_i. kRetract: a += x_i, b += v_i. kStep: a += x_i,
  // b += gd_i, c += m_i (with momentum).
  template <TieMode kMode, typename T, typename Flags>
  static SYMOPT_HD void Accumulate(const T* p0,
                                   const T* p1,
                                   const T* p2,
                                   const TieStepScalars& s,
                                   Flags f,
                                   std::int64_t i,
                                   double* a,
                                   double* b,
                                   double* c) {
    *a += double(p0[i]);
    if constexpr (kMode == TieMode::kRetract) {
      *b += double(p1[i]);
    } else if constexpr (kMode == TieMode::kStep) {
      *b += double(Decayed(p0[i], p1[i], T(s.weight_decay), f.decay));
      if (f.momentum) *c += double(p2[i]);
    }
  }

  // The class values from the sums of a class of n members.
  template <TieMode kMode, typename T, typename Flags>
  static SYMOPT_HD TieClassValues<T> Values(const TieStepScalars& s,
                                            Flags f,
                                            double a,
                                            double b,
                                            double c,
                                            std::int64_t n) {
    if constexpr (kMode == TieMode::kMean) {
      return {MeanOfSum<T>(a, n), T{}};
    } else if constexpr (kMode == TieMode::kSum) {
      return {T(a), T{}};
    } else if constexpr (kMode == TieMode::kRetract) {
      return {T(MeanOfSum<T>(a, n) + MeanOfSum<T>(b, n)), T{}};
    } else {
      const T r = f.shared ? T(b) : MeanOfSum<T>(b, n);
      return StepValues<T>(s, f, r, MeanOfSum<T>(c, n), MeanOfSum<T>(a, n));
    }
  }

  // The class values of the pair (i0, i1): Values with PairMean for every
  // mean and a + b in T for every sum.
  template <TieMode kMode, typename T, typename Flags>
  static SYMOPT_HD TieClassValues<T> PairValues(const T* p0,
                                                const T* p1,
                                                const T* p2,
                                                const TieStepScalars& s,
                                                Flags f,
                                                std::int64_t i0,
                                                std::int64_t i1) {
    if constexpr (kMode == TieMode::kMean) {
      return {PairMean(p0[i0], p0[i1]), T{}};
    } else if constexpr (kMode == TieMode::kSum) {
      return {T(p0[i0] + p0[i1]), T{}};
    } else if constexpr (kMode == TieMode::kRetract) {
      return {T(PairMean(p0[i0], p0[i1]) + PairMean(p1[i0], p1[i1])), T{}};
    } else {
      const T wd = T(s.weight_decay);
      const T g0 = Decayed(p0[i0], p1[i0], wd, f.decay);
      const T g1 = Decayed(p0[i1], p1[i1], wd, f.decay);
      const T r = f.shared ? T(g0 + g1) : PairMean(g0, g1);
      const T mean_m = f.momentum ? PairMean(p2[i0], p2[i1]) : T{};
      return StepValues<T>(s, f, r, mean_m, PairMean(p0[i0], p0[i1]));
    }
  }

  // One whole class: its values, stored in every member of p0 (and of p2 for
  // kStep with momentum). Members: size() and operator[](j) -> flat index.
  template <TieMode kMode, typename T, typename Members, typename Flags>
  static SYMOPT_HD void Class(const Members& mem,
                              T* p0,
                              const T* p1,
                              T* p2,
                              const TieStepScalars& s,
                              Flags f) {
    TieClassValues<T> v;
    if constexpr (tie_internal::FixedSize<Members>::value == 2) {
      v = PairValues<kMode, T>(p0, p1, p2, s, f, mem[0], mem[1]);
    } else {
      double a = 0.0, b = 0.0, c = 0.0;
      for (std::int64_t j = 0; j < mem.size(); ++j) {
        Accumulate<kMode, T>(p0, p1, p2, s, f, mem[j], &a, &b, &c);
      }
      v = Values<kMode, T>(s, f, a, b, c, mem.size());
    }
    if constexpr (kMode == TieMode::kStep) {
      if (f.momentum) {
        for (std::int64_t j = 0; j < mem.size(); ++j) p2[mem[j]] = v.second;
      }
    }
    for (std::int64_t j = 0; j < mem.size(); ++j) p0[mem[j]] = v.first;
  }
};

}  // namespace symopt
