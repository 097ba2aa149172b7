// Loops over [0, n) that enter an OpenMP parallel region only when it is
// wanted and can use more than one thread. libgomp makes a futex system call
// even for a region whose if() clause is false (GCC 12), which costs more
// than a small layer's work: Oblique<float>::Step on one row of 16 entries
// took 626 ns with such a region and 110 ns without (bench/step_call_bench,
// bench/RESULTS.md). nn's ParallelRows asks UseParallelRegion too.
#pragma once

#include <omp.h>

#include <cstdint>

namespace symopt {
namespace internal {

// Whether a loop that asks for threads (`wanted`) should open a region:
// more than one thread is available and none is open already.
inline bool UseParallelRegion(bool wanted) {
  return wanted && omp_get_max_threads() > 1 && !omp_in_parallel();
}

// body(i, sum) for i in [0, n), each adding its part into sum; returns the
// total (schedule(static) and a + reduction when parallel).
template <typename Body>
double SumLoop(std::int64_t n, bool parallel, Body&& body) {
  double total = 0.0;
  if (UseParallelRegion(parallel)) {
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (std::int64_t i = 0; i < n; ++i) body(i, total);
  } else {
    for (std::int64_t i = 0; i < n; ++i) body(i, total);
  }
  return total;
}

// body(i) for i in [0, n) (schedule(static) when parallel).
template <typename Body>
void ForLoop(std::int64_t n, bool parallel, Body&& body) {
  if (UseParallelRegion(parallel)) {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) body(i);
  } else {
    for (std::int64_t i = 0; i < n; ++i) body(i);
  }
}

}  // namespace internal
}  // namespace symopt
