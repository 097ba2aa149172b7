// An experiment, not a benchmark of the library: variants of the fused
// oblique step's CPU kernels (src/oblique.cpp) timed next to those kernels
// and the bandwidth floor, for the record in docs/oblique.md ("How close the
// fused step gets to the bandwidth floor"). Not built by default:
//
//   cmake --build build --target oblique_variants
//   taskset -c 1 ./build/bench/oblique_variants ROWS COLS [ROUNDS] [KINDS]
//
// (target oblique_variants_one_prefetch: the same with the library built to
// prefetch each line once, at the start of its block, instead of twice; see
// Pass in src/oblique.cpp).
// KINDS is a string of letters, each a loop (heavy-ball momentum 0.9, lr
// 0.01):
//   F  the floor (m = beta m + g; x -= lr m), on its own copies of the data
//   C  the library's AVX2 kernel (StepRowsAvx2: blocks of 256 entries, the
//      update of row r then the Gram sums of row r + 1, software prefetch)
//   H  the library's heavy-ball kernel (StepRowsHeavyBall: four sums in the
//      basis (x, u = beta m + g), C's blocked order), whatever the row length
//   U  H's maths in one loop per 16 entries, as R (OneLoopPass)
//   V  H with u = beta m + g stored by the Gram pass in a row buffer, so the
//      update reads x and u only (UStorePass; bitwise H's results)
//   L  Oblique<float>::Step, the library's public entry point (one thread)
//   S  C's maths in one loop per 16 entries: update row r and add row
//      r + 1's six sums in the same iteration (32 registers)
//   R  S with row r + 1's sums taken in rotated order where the row length is
//      within 64 floats of a multiple of 1024 (4 KiB), so a load never shares
//      its low 12 address bits with a store still in flight
//   G  the library's Gram pass alone (Pass<..., kApply = false>)
//   g  S's Gram pass alone
//   A  the library's update pass alone, with fixed tiny increments
// Every round runs each kind once, in random order, over its copies and
// times it by the thread's CPU time; the table gives the best and median
// time per step and the median and least of the per-round ratios to F.
// Environment:
//   HOT=1    one copy of the data (in cache when it fits); implies FTZ=1
//   COPIES=K K copies of the data (default: enough to fill 128 MB, at
//            least 2; oblique_bench fills 4x the last-level cache)
//   REPS=K   K passes over the copies per timing (default: about 800 MB of
//            traffic)
//   FTZ=1|0  flush subnormals to zero, or not (see Run)
//   CHECK=1  first compare 10 steps of C and H on the same data
//   HUGE=1   ask for 2 MiB pages for the data (madvise)
//   SHIFT=K  start g K floats and m 2K floats further past a 2 MiB boundary
//            than x (default 0: the three arrays alike modulo 4 KiB)
//   MSCALE=S scale the initial momentum by S (default 1)
//   ALIGN=K  align the arrays to K bytes (default 2 MiB)
//   MISALIGN=K  start all three arrays K floats past the boundary (4: 16
//            bytes, where malloc puts large blocks such as std::vector's)
//   THREADS=N  run F, C, H, U, S, R on N OpenMP threads, each a contiguous
//            block of rows (the floor: of entries), as the library's Step
//            does; timed by the wall clock (one thread: by its CPU time)
// Requires an x86-64 CPU with AVX-512F/VL (S, R, g, U) and AVX2+FMA.
#include <omp.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "oblique.cpp"  // NOLINT(bugprone-suspicious-include): the kernel's internals

namespace symopt {
namespace {

#define SYMOPT_EXP_TARGET __attribute__((target("avx2,fma,avx512f,avx512vl")))

// Entries [t0, t1) (a multiple of 16 long) of row 0 are updated by k, and the
// Gram sums of entries [t0 + delta, t1 + delta) of row 1 are added to d[6]
// in float sub-blocks of kSub entries (GramBlockAvx2's error bound).
template <bool kApply, bool kGram>
SYMOPT_EXP_TARGET SYMOPT_ALWAYS_INLINE void Segment(
    float* __restrict x0,
    const float* __restrict g0,
    float* __restrict m0,
    const ObliqueIncrement<float>& k,
    const float* __restrict x1,
    const float* __restrict g1,
    const float* __restrict m1,
    std::int64_t t0,
    std::int64_t t1,
    std::int64_t delta,
    __m256d* d) {
  const __m256 ax = _mm256_set1_ps(k.ax1), ag = _mm256_set1_ps(k.ag),
               am = _mm256_set1_ps(k.am), bx = _mm256_set1_ps(k.bx),
               bg = _mm256_set1_ps(k.bg), bm = _mm256_set1_ps(k.bm1);
  std::int64_t t = t0;
  while (t < t1) {
    const std::int64_t stop = std::min(t1, t + kSub);
    __m256 acc[2][6];
    for (auto& set : acc) {
      for (auto& a : set) a = _mm256_setzero_ps();
    }
    for (; t < stop; t += 16) {
      if (kGram) {
        // One line of each array kAhead entries on (into the next row).
        Prefetch(x1, t + kAhead, t + kAhead + 1);
        Prefetch(g1, t + kAhead, t + kAhead + 1);
        Prefetch(m1, t + kAhead, t + kAhead + 1);
      }
      if (kApply) {
        for (int h = 0; h < 16; h += 8) {
          const __m256 xv = _mm256_loadu_ps(x0 + t + h),
                       gv = _mm256_loadu_ps(g0 + t + h),
                       mv = _mm256_loadu_ps(m0 + t + h);
          // ApplyElement's order of operations (no contraction).
          const __m256 dx = _mm256_add_ps(
              _mm256_add_ps(_mm256_mul_ps(ax, xv), _mm256_mul_ps(ag, gv)),
              _mm256_mul_ps(am, mv));
          const __m256 dm = _mm256_add_ps(
              _mm256_add_ps(_mm256_mul_ps(bx, xv), _mm256_mul_ps(bg, gv)),
              _mm256_mul_ps(bm, mv));
          _mm256_storeu_ps(x0 + t + h, _mm256_add_ps(xv, dx));
          _mm256_storeu_ps(m0 + t + h, _mm256_add_ps(mv, dm));
        }
      }
      if (kGram) {
        for (int h = 0; h < 2; ++h) {
          const std::int64_t j = t + delta + 8 * h;
          const __m256 xv = _mm256_loadu_ps(x1 + j),
                       gv = _mm256_loadu_ps(g1 + j),
                       mv = _mm256_loadu_ps(m1 + j);
          __m256* a = acc[h];
          a[0] = _mm256_fmadd_ps(xv, xv, a[0]);
          a[1] = _mm256_fmadd_ps(xv, gv, a[1]);
          a[2] = _mm256_fmadd_ps(gv, gv, a[2]);
          a[3] = _mm256_fmadd_ps(xv, mv, a[3]);
          a[4] = _mm256_fmadd_ps(gv, mv, a[4]);
          a[5] = _mm256_fmadd_ps(mv, mv, a[5]);
        }
      }
    }
    if (kGram) {
      for (int s = 0; s < 6; ++s) {
        d[s] =
            _mm256_add_pd(d[s], WidenSum(_mm256_add_ps(acc[0][s], acc[1][s])));
      }
    }
  }
}

bool g_rotate = false;
float g_mscale = 1;  // MSCALE: the initial momentum's scale (default 1)

// U: the library's heavy-ball maths (StepRowsHeavyBall, kind H) in one loop
// per 16 entries, as S: the update of row 0 and the four sums of row 1 in
// the same iteration, row 1 in rotated order as R, each line prefetched
// once, in the loop. Its 8 accumulators, 5 coefficients and the loads take
// the 32 vector registers of the AVX-512VL encoding.
#define SYMOPT_ONE_LOOP_TARGET SYMOPT_EXP_TARGET

std::int64_t Rotation(std::int64_t n16);

template <bool kApply, bool kGram>
SYMOPT_ONE_LOOP_TARGET SYMOPT_ALWAYS_INLINE void OneLoopHeavyBallSegment(
    float* __restrict x0,
    const float* __restrict g0,
    float* __restrict m0,
    const HeavyBallIncrement& k,
    const float* __restrict x1,
    const float* __restrict g1,
    const float* __restrict m1,
    float beta,
    std::int64_t t0,
    std::int64_t t1,
    std::int64_t delta,
    __m256d* d) {
  const __m256 vb = _mm256_set1_ps(beta), ax = _mm256_set1_ps(k.ax1),
               au = _mm256_set1_ps(k.au), bx = _mm256_set1_ps(k.bx),
               bu = _mm256_set1_ps(k.bu);
  std::int64_t t = t0;
  while (t < t1) {
    const std::int64_t stop = std::min(t1, t + kSub);
    __m256 acc[2][4];
    for (auto& set : acc) {
      for (auto& a : set) a = _mm256_setzero_ps();
    }
    for (; t < stop; t += 16) {
      if (kGram) {
        const std::int64_t ahead = t + delta + kAhead;
        Prefetch(x1, ahead, ahead + 1);
        Prefetch(g1, ahead, ahead + 1);
        Prefetch(m1, ahead, ahead + 1);
      }
      if (kApply) {
        HeavyBallUpdate8(x0, g0, m0, vb, ax, au, bx, bu, t);
        HeavyBallUpdate8(x0, g0, m0, vb, ax, au, bx, bu, t + 8);
      }
      if (kGram) {
        HeavyBallAccumulate8(x1, g1, m1, vb, t + delta, acc[0]);
        HeavyBallAccumulate8(x1, g1, m1, vb, t + delta + 8, acc[1]);
      }
    }
    if (kGram) {
      for (int q = 0; q < 4; ++q) {
        d[q] =
            _mm256_add_pd(d[q], WidenSum(_mm256_add_ps(acc[0][q], acc[1][q])));
      }
    }
  }
}

// BlockedHeavyBallPass::Run's contract in one loop (its ragged tail by
// BlockedHeavyBallPass::Run).
template <bool kApply, bool kGram>
SYMOPT_ONE_LOOP_TARGET SYMOPT_ALWAYS_INLINE HeavyBallSums
OneLoopHeavyBallPass(float* __restrict x0,
                     const float* __restrict g0,
                     float* __restrict m0,
                     const HeavyBallIncrement& k,
                     const float* __restrict x1,
                     const float* __restrict g1,
                     const float* __restrict m1,
                     float beta,
                     std::int64_t n) {
  const std::int64_t n16 = n & ~std::int64_t(15);
  const std::int64_t s = kApply && kGram ? Rotation(n16) : 0;
  __m256d d[4];
  for (auto& v : d) v = _mm256_setzero_pd();
  OneLoopHeavyBallSegment<kApply, kGram>(
      x0, g0, m0, k, x1, g1, m1, beta, 0, n16 - s, s, d);
  if (s > 0) {
    OneLoopHeavyBallSegment<kApply, kGram>(
        x0, g0, m0, k, x1, g1, m1, beta, n16 - s, n16, s - n16, d);
  }
  const HeavyBallSums tail =
      BlockedHeavyBallPass::Run<kApply, kGram>(kApply ? x0 + n16 : nullptr,
                                               kApply ? g0 + n16 : nullptr,
                                               kApply ? m0 + n16 : nullptr,
                                               k,
                                               kGram ? x1 + n16 : nullptr,
                                               kGram ? g1 + n16 : nullptr,
                                               kGram ? m1 + n16 : nullptr,
                                               beta,
                                               n - n16);
  HeavyBallSums sums;
  if (kGram) {
    sums = HeavyBallLaneSums(d);
    sums.xx += tail.xx;
    sums.xg += tail.xg;
    sums.xu += tail.xu;
    sums.uu += tail.uu;
  }
  return sums;
}

// The library's heavy-ball pipeline over OneLoopHeavyBallPass (called once
// per row, not inlined: its instruction set is not the pipeline's).
struct OneLoopPass {
  template <bool kApply, bool kGram>
  SYMOPT_ONE_LOOP_TARGET static HeavyBallSums Run(float* __restrict x0,
                                                  const float* __restrict g0,
                                                  float* __restrict m0,
                                                  const HeavyBallIncrement& k,
                                                  const float* __restrict x1,
                                                  const float* __restrict g1,
                                                  const float* __restrict m1,
                                                  float beta,
                                                  std::int64_t n) {
    return OneLoopHeavyBallPass<kApply, kGram>(
        x0, g0, m0, k, x1, g1, m1, beta, n);
  }
};

// V: H with u = fma(beta, m, g) kept by the Gram pass in a row-sized
// buffer (two, alternating), so the update reads x and u (2 loads, no fma)
// instead of x, g, m; bitwise the same results as H.
struct UStorePass {
  static thread_local std::vector<float> buf[2];
  static thread_local int cur;

  template <bool kApply, bool kGram>
  __attribute__((target("avx2,fma"), always_inline)) static HeavyBallSums Run(
      float* __restrict x0,
      const float* __restrict /*g0*/,
      float* __restrict m0,
      const HeavyBallIncrement& k,
      const float* __restrict x1,
      const float* __restrict g1,
      const float* __restrict m1,
      float beta,
      std::int64_t n) {
    for (auto& b : buf) {
      if (std::int64_t(b.size()) < n) b.resize(std::size_t(n));
    }
    const float* __restrict u0 = buf[cur].data();
    float* __restrict u1 = buf[1 - cur].data();
    const std::int64_t n16 = n & ~std::int64_t(15);
    const __m256 vb = _mm256_set1_ps(beta), ax = _mm256_set1_ps(k.ax1),
                 au = _mm256_set1_ps(k.au), bx = _mm256_set1_ps(k.bx),
                 bu = _mm256_set1_ps(k.bu);
    __m256d d[4];
    for (auto& v : d) v = _mm256_setzero_pd();
    for (std::int64_t i0 = 0; i0 < n16; i0 += kBlock) {
      const std::int64_t end = std::min(n16, i0 + kBlock);
      if (kGram) {
        Prefetch(x1, i0 + kAhead, end + kAhead);
        Prefetch(g1, i0 + kAhead, end + kAhead);
        Prefetch(m1, i0 + kAhead, end + kAhead);
      }
      if (kApply) {
        for (std::int64_t t = i0; t < end; t += 8) {
          HeavyBallWrite8(x0,
                          m0,
                          _mm256_loadu_ps(x0 + t),
                          _mm256_loadu_ps(u0 + t),
                          ax,
                          au,
                          bx,
                          bu,
                          t);
        }
      }
      if (kGram) {
        for (std::int64_t t = i0; t < end;) {
          const std::int64_t stop = std::min(end, t + kSub);
          __m256 acc[2][4];
          for (auto& set : acc) {
            for (auto& a : set) a = _mm256_setzero_ps();
          }
          for (; t < stop; t += 16) {
            if (kSecondPrefetch) {
              Prefetch(x1, t + kAhead, t + kAhead + 1);
              Prefetch(g1, t + kAhead, t + kAhead + 1);
              Prefetch(m1, t + kAhead, t + kAhead + 1);
            }
            for (int h = 0; h < 2; ++h) {
              const std::int64_t j = t + 8 * h;
              const __m256 xv = _mm256_loadu_ps(x1 + j),
                           gv = _mm256_loadu_ps(g1 + j),
                           mv = _mm256_loadu_ps(m1 + j);
              const __m256 uv = _mm256_fmadd_ps(vb, mv, gv);
              _mm256_storeu_ps(u1 + j, uv);
              __m256* a = acc[h];
              a[0] = _mm256_fmadd_ps(xv, xv, a[0]);
              a[1] = _mm256_fmadd_ps(xv, gv, a[1]);
              a[2] = _mm256_fmadd_ps(xv, uv, a[2]);
              a[3] = _mm256_fmadd_ps(uv, uv, a[3]);
            }
          }
          for (int q = 0; q < 4; ++q) {
            d[q] = _mm256_add_pd(d[q],
                                 WidenSum(_mm256_add_ps(acc[0][q], acc[1][q])));
          }
        }
      }
    }
    if (kApply) {
      for (std::int64_t i = n16; i < n; ++i) k.Apply(x0 + i, m0 + i, u0[i]);
    }
    HeavyBallSums sums;
    if (kGram) {
      sums = HeavyBallLaneSums(d);
      for (std::int64_t i = n16; i < n; ++i) {
        u1[i] = std::fma(beta, m1[i], g1[i]);
        sums.Add(x1[i], g1[i], u1[i]);
      }
      cur = 1 - cur;
    }
    return sums;
  }
};
thread_local std::vector<float> UStorePass::buf[2];
thread_local int UStorePass::cur = 0;

// The rotation R uses: none unless n16 is within 64 of a multiple of 1024.
std::int64_t Rotation(std::int64_t n16) {
  if (!g_rotate || n16 < 1024) return 0;
  const std::int64_t r = n16 % 1024;
  if (r >= 64 && r <= 960) return 0;
  return (384 - r + 1024) % 1024 & ~std::int64_t(15);
}

template <bool kApply, bool kGram>
SYMOPT_EXP_TARGET SYMOPT_ALWAYS_INLINE ObliqueGram
OnePass(float* __restrict x0,
        const float* __restrict g0,
        float* __restrict m0,
        const ObliqueIncrement<float>& k,
        const float* __restrict x1,
        const float* __restrict g1,
        const float* __restrict m1,
        std::int64_t n) {
  const std::int64_t n16 = n & ~std::int64_t(15);
  const std::int64_t s = kApply && kGram ? Rotation(n16) : 0;
  __m256d d[6];
  for (auto& v : d) v = _mm256_setzero_pd();
  Segment<kApply, kGram>(x0, g0, m0, k, x1, g1, m1, 0, n16 - s, s, d);
  if (s > 0) {
    Segment<kApply, kGram>(x0, g0, m0, k, x1, g1, m1, n16 - s, n16, s - n16, d);
  }
  ObliqueGram r;
  if (kGram) {
    r.xx = SumLanes(d[0]);
    r.xg = SumLanes(d[1]);
    r.gg = SumLanes(d[2]);
    r.xm = SumLanes(d[3]);
    r.gm = SumLanes(d[4]);
    r.mm = SumLanes(d[5]);
  }
  for (std::int64_t i = n16; i < n; ++i) {
    if (kApply) ObliqueOps::ApplyElement(x0, g0, m0, k, i);
  }
  if (kGram)
    r.Add(GramBlock<float, true, GramLoop::kSplit>(x1, g1, m1, n16, n));
  return r;
}

// StepRows (with momentum) over OnePass.
SYMOPT_EXP_TARGET void StepRowsOneLoop(float* x,
                                       const float* g,
                                       float* m,
                                       RowRange& rr) {
  const std::int64_t n = rr.n;
  const ObliqueIncrement<float> none{};
  ObliqueGram s = OnePass<false, true>(nullptr,
                                       nullptr,
                                       nullptr,
                                       none,
                                       x + rr.r0 * n,
                                       g + rr.r0 * n,
                                       m + rr.r0 * n,
                                       n);
  for (std::int64_t r = rr.r0; r < rr.r1; ++r) {
    float* xr = x + r * n;
    const float* gr = g + r * n;
    float* mr = m + r * n;
    bool done = false;
    const ObliqueRowUpdate u = SolveRow<float, true, GramLoop::kAvx2>(
        xr, gr, mr, n, s, rr.p, rr.tol, &done);
    const bool last = r + 1 == rr.r1;
    if (u.collapsed || done) {
      if (!last) {
        s = OnePass<false, true>(
            nullptr, nullptr, nullptr, none, xr + n, gr + n, mr + n, n);
      }
      continue;
    }
    const ObliqueIncrement<float> k = ObliqueOps::Increment<float>(u);
    if (last) {
      OnePass<true, false>(xr, gr, mr, k, nullptr, nullptr, nullptr, n);
    } else {
      s = OnePass<true, true>(xr, gr, mr, k, xr + n, gr + n, mr + n, n);
    }
  }
}

// The Gram sums of every row, by OnePass (kOneLoop) or by the library's
// blocked Pass.
template <bool kOneLoop>
SYMOPT_EXP_TARGET double GramOnly(const float* x,
                                  const float* g,
                                  const float* m,
                                  std::int64_t rows,
                                  std::int64_t n) {
  const ObliqueIncrement<float> none{};
  double sum = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * n, *gr = g + r * n, *mr = m + r * n;
    const ObliqueGram s =
        kOneLoop ? OnePass<false, true>(
                       nullptr, nullptr, nullptr, none, xr, gr, mr, n)
                 : Pass<float, true, false, true, GramLoop::kAvx2>(
                       nullptr, nullptr, nullptr, none, xr, gr, mr, n);
    sum += s.xx + s.gm;
  }
  return sum;
}

__attribute__((target("avx2,fma"))) void ApplyOnlyLibrary(
    float* x, const float* g, float* m, std::int64_t rows, std::int64_t n) {
  const ObliqueIncrement<float> k{1e-7f, -1e-7f, 1e-7f, -1e-7f, 1e-7f, -1e-7f};
  for (std::int64_t r = 0; r < rows; ++r) {
    Pass<float, true, true, false, GramLoop::kAvx2>(
        x + r * n, g + r * n, m + r * n, k, nullptr, nullptr, nullptr, n);
  }
}

__attribute__((target("avx2,fma"))) void Floor(float* __restrict x,
                                               const float* __restrict g,
                                               float* __restrict m,
                                               std::int64_t n) {
  const float lr = 0.01f, beta = 0.9f;
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const float mi = beta * m[i] + g[i];
    m[i] = mi;
    x[i] -= lr * mi;
  }
}

double ThreadSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// With one thread its CPU time (which leaves out time the machine gave to
// others); with more, the wall-clock time.
double Seconds(int threads) {
  if (threads == 1) return ThreadSeconds();
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Kinds that can run on a range of rows (the others: whole data only).
bool SplitsByRows(char kind) {
  return std::string("FCHUSR").find(kind) != std::string::npos;
}

struct Data;

// One step of `kind` over rows [r0, r1) (the floor over their entries);
// returns what the Gram-only kinds sum, else 0.
double RunKind(char kind,
               Data& d,
               Data& f,
               const StepOptions& p,
               std::int64_t rows,
               std::int64_t cols,
               std::int64_t r0,
               std::int64_t r1);

// An array of floats; with HUGE=1 in the environment its memory is asked to
// be backed by 2 MiB pages (madvise before the first touch), to see whether
// 4 KiB pages (TLB misses, prefetchers stopping at page ends) set the gap.
class Array {
 public:
  Array() = default;
  // The data start `shift` floats past a 2 MiB boundary.
  explicit Array(std::int64_t n, std::int64_t shift = 0)
      : n_(n), shift_(shift) {
    // ALIGN=K: K-byte alignment instead (oblique_bench's allocations: 64).
    const char* align_env = std::getenv("ALIGN");
    const std::size_t align = align_env != nullptr
                                  ? std::size_t(std::atoll(align_env))
                                  : std::size_t(2) << 20;
    const std::size_t bytes =
        (std::size_t(n + shift) * sizeof(float) + align - 1) / align * align;
    p_.reset(static_cast<float*>(std::aligned_alloc(align, bytes)));
    if (!p_) throw std::bad_alloc();
    if (std::getenv("HUGE") != nullptr) madvise(p_.get(), bytes, MADV_HUGEPAGE);
    std::fill(data(), data() + n, 0.0f);
  }
  Array(const Array& o) : Array(o.n_, o.shift_) {
    std::copy(o.begin(), o.end(), data());
  }
  Array& operator=(const Array& o) {
    Array copy(o);
    std::swap(p_, copy.p_);
    std::swap(n_, copy.n_);
    std::swap(shift_, copy.shift_);
    return *this;
  }
  float* data() { return p_.get() + shift_; }
  float* begin() { return data(); }
  float* end() { return data() + n_; }
  const float* begin() const { return p_.get() + shift_; }
  const float* end() const { return begin() + n_; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float[], Free> p_;
  std::int64_t n_ = 0;
  std::int64_t shift_ = 0;
};

struct Data {
  Array x, g, m;
};

double RunKind(char kind,
               Data& d,
               Data& f,
               const StepOptions& p,
               std::int64_t rows,
               std::int64_t cols,
               std::int64_t r0,
               std::int64_t r1) {
  RowRange rr;
  rr.r0 = r0;
  rr.r1 = r1;
  rr.n = cols;
  rr.p = p;
  rr.tol = Oblique<float>::DefaultCollapseTol();
  switch (kind) {
    case 'F': {
      const std::int64_t o = r0 * cols;
      Floor(f.x.data() + o, f.g.data() + o, f.m.data() + o, (r1 - r0) * cols);
      return 0;
    }
    case 'C':
      StepRowsAvx2(d.x.data(), d.g.data(), d.m.data(), rr);
      return 0;
    case 'H':
      StepRowsHeavyBall(d.x.data(), d.g.data(), d.m.data(), rr);
      return 0;
    case 'L': {  // the public entry point, on all rows
      const Oblique<float> man(rows, cols);
      man.Step(TensorView<float>(d.x.data(), rows, cols),
               TensorView<const float>(d.g.data(), rows, cols),
               TensorView<float>(d.m.data(), rows, cols),
               p);
      return 0;
    }
    case 'U':
      HeavyBallRows<OneLoopPass>(d.x.data(), d.g.data(), d.m.data(), rr);
      return 0;
    case 'V':
      HeavyBallRows<UStorePass>(d.x.data(), d.g.data(), d.m.data(), rr);
      return 0;
    case 'S':
    case 'R':
      StepRowsOneLoop(d.x.data(), d.g.data(), d.m.data(), rr);
      return 0;
    case 'G':
      return GramOnly<false>(d.x.data(), d.g.data(), d.m.data(), rows, cols);
    case 'g':
      return GramOnly<true>(d.x.data(), d.g.data(), d.m.data(), rows, cols);
    case 'A':
      ApplyOnlyLibrary(d.x.data(), d.g.data(), d.m.data(), rows, cols);
      return 0;
    default:
      return 0;
  }
}

}  // namespace
}  // namespace symopt

int Run(int argc, char** argv) {
  using namespace symopt;  // NOLINT(google-build-using-namespace)
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s ROWS COLS [ROUNDS] [KINDS]\n", argv[0]);
    return 2;
  }
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("fma")) {
    std::fprintf(stderr, "needs AVX-512VL and FMA\n");
    return 2;
  }
  const std::int64_t rows = std::atoll(argv[1]), cols = std::atoll(argv[2]);
  if (rows < 1 || cols < 1) {
    std::fprintf(stderr, "ROWS and COLS must be >= 1\n");
    return 2;
  }
  const int rounds = argc > 3 ? std::max(1, std::atoi(argv[3])) : 15;
  const std::string kinds = argc > 4 ? argv[4] : "FCSR";
  if (kinds.find('F') == std::string::npos) {
    std::fprintf(stderr, "KINDS must include F (the floor)\n");
    return 2;
  }
  const char* threads_env = std::getenv("THREADS");
  const int threads = threads_env != nullptr ? std::atoi(threads_env) : 1;
  if (threads < 1) {
    std::fprintf(stderr, "THREADS must be >= 1\n");
    return 2;
  }
  for (const char k : kinds) {
    if (std::string("FCHLUVSRGgA").find(k) == std::string::npos) {
      std::fprintf(stderr, "unknown kind '%c'\n", k);
      return 2;
    }
    if (threads > 1 && !SplitsByRows(k)) {
      std::fprintf(stderr, "kind '%c' runs on one thread only\n", k);
      return 2;
    }
  }
  // Subnormal results and inputs are flushed to zero (MXCSR FTZ and DAZ)
  // with HOT=1 unless FTZ=0, and with FTZ=1. A step repeated thousands of
  // times on the same data with the same gradient (as HOT=1 does) makes the
  // rows converge, and with kind C some momentum entries fall into float's
  // subnormal range, where the arithmetic is slow; training never sees that
  // (its gradient changes every step). Out of cache (HOT unset) each copy
  // takes about one step per round and stays normal.
  const char* ftz = std::getenv("FTZ");
  if (ftz != nullptr ? std::atoi(ftz) != 0 : std::getenv("HOT") != nullptr) {
    _mm_setcsr(_mm_getcsr() | 0x8040);
  }
  const std::int64_t n = rows * cols;
  if (const char* e = std::getenv("MSCALE")) g_mscale = float(std::atof(e));
  const char* copies_env = std::getenv("COPIES");
  const std::int64_t copies =
      copies_env != nullptr ? std::max<std::int64_t>(1, std::atoll(copies_env))
      : std::getenv("HOT") != nullptr
          ? 1
          : std::max<std::int64_t>(2, (std::int64_t(128) << 20) / (12 * n) + 1);
  const char* reps_env = std::getenv("REPS");
  const std::int64_t passes = reps_env != nullptr ? std::atoll(reps_env) : 0;
  const std::int64_t reps =
      passes > 0 ? passes * copies
                 : std::max<std::int64_t>(8 * copies,
                                          (std::int64_t(800) << 20) / (20 * n));
  Oblique<float> man(rows, cols);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0, 1);
  std::vector<Data> data(copies), floor_data(copies);
  for (std::int64_t c = 0; c < copies; ++c) {
    Data& d = data[c];
    // SHIFT=K: g starts K floats and m 2K floats further past a 2 MiB
    // boundary than x (default 0: all three arrays alike modulo 4 KiB).
    const char* shift_env = std::getenv("SHIFT");
    const std::int64_t shift = shift_env != nullptr ? std::atoll(shift_env) : 0;
    // MISALIGN=K: all three arrays start K more floats past the boundary
    // (malloc's large blocks, std::vector's, start 16 bytes past a page).
    const char* misalign_env = std::getenv("MISALIGN");
    const std::int64_t misalign =
        misalign_env != nullptr ? std::atoll(misalign_env) : 0;
    d.x = Array(n, misalign);
    d.g = Array(n, misalign + shift);
    d.m = Array(n, misalign + 2 * shift);
    man.RandomPoint(TensorView<float>(d.x.data(), rows, cols), 7 + c);
    for (float& v : d.g) v = 0.1f * normal(rng);
    for (float& v : d.m) v = g_mscale * 0.1f * normal(rng);
    man.Project(TensorView<const float>(d.x.data(), rows, cols),
                TensorView<float>(d.m.data(), rows, cols));
    floor_data[c] = d;
  }
  StepOptions p;
  p.lr = 0.01;
  p.momentum = 0.9;
  if (std::getenv("CHECK") != nullptr) {
    // Ten steps of C and of H from the same data: the largest differences
    // of x and m, and the worst row norm of H's x.
    Data a = data[0], b = data[0];
    RowRange rr;
    rr.r1 = rows;
    rr.n = cols;
    rr.p = p;
    rr.tol = Oblique<float>::DefaultCollapseTol();
    for (int it = 0; it < 10; ++it) {
      StepRowsAvx2(a.x.data(), a.g.data(), a.m.data(), rr);
      StepRowsHeavyBall(b.x.data(), b.g.data(), b.m.data(), rr);
    }
    double dx = 0, dm = 0, mmax = 0, worst = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      dx = std::max(dx, double(std::abs(a.x.data()[i] - b.x.data()[i])));
      dm = std::max(dm, double(std::abs(a.m.data()[i] - b.m.data()[i])));
      mmax = std::max(mmax, double(std::abs(a.m.data()[i])));
    }
    for (std::int64_t r = 0; r < rows; ++r) {
      double q = 0;
      for (std::int64_t i = 0; i < cols; ++i) {
        q += double(b.x.data()[r * cols + i]) * b.x.data()[r * cols + i];
      }
      worst = std::max(worst, std::abs(std::sqrt(q) - 1));
    }
    std::printf(
        "check: max|dx| %.3g  max|dm| %.3g (max|m| %.3g)  H row norm error "
        "%.3g  collapsed %lld\n",
        dx,
        dm,
        mmax,
        worst,
        static_cast<long long>(rr.collapsed));
  }
  const std::size_t nk = kinds.size();
  std::vector<std::vector<double>> seconds(nk);
  std::vector<std::size_t> order(nk);
  for (std::size_t v = 0; v < nk; ++v) order[v] = v;
  double sink = 0;
  for (int round = 0; round <= rounds; ++round) {  // round 0 warms up
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t v : order) {
      g_rotate = kinds[v] == 'R' || kinds[v] == 'U';
      const double t0 = Seconds(threads);
      for (std::int64_t it = 0; it < reps; ++it) {
        Data& d = data[it % copies];
        Data& f = floor_data[it % copies];
        if (threads == 1) {
          sink += RunKind(kinds[v], d, f, p, rows, cols, 0, rows);
        } else {
#pragma omp parallel num_threads(threads)
          {
            const std::int64_t t = omp_get_thread_num(),
                               count = omp_get_num_threads();
            RunKind(kinds[v],
                    d,
                    f,
                    p,
                    rows,
                    cols,
                    rows * t / count,
                    rows * (t + 1) / count);
          }
        }
      }
      if (round > 0)
        seconds[v].push_back((Seconds(threads) - t0) / double(reps));
    }
  }
  std::printf(
      "%lld x %lld: %lld copies, %lld steps per timing, %d rounds (sink %g)\n",
      static_cast<long long>(rows),
      static_cast<long long>(cols),
      static_cast<long long>(copies),
      static_cast<long long>(reps),
      rounds,
      sink);
  const std::size_t f = kinds.find('F');
  for (std::size_t v = 0; v < nk; ++v) {
    std::vector<double> ratio(rounds), t = seconds[v];
    for (int r = 0; r < rounds; ++r) ratio[r] = seconds[v][r] / seconds[f][r];
    std::sort(ratio.begin(), ratio.end());
    std::sort(t.begin(), t.end());
    std::printf(
        "  %c  best %8.3f ms  median %8.3f ms  ratio to F: median %.3f  least "
        "%.3f\n",
        kinds[v],
        t[0] * 1e3,
        t[rounds / 2] * 1e3,
        ratio[rounds / 2],
        ratio[0]);
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {  // e.g. a shape symopt rejects
    std::fprintf(stderr, "oblique_variants: %s\n", e.what());
    return 2;
  }
}
