// Host threading: how many threads symopt's CPU loops use (OpenMP).
// Defaults to OpenMP's own default (OMP_NUM_THREADS or the core count).
#pragma once

namespace symopt {

// Requires: n >= 1. Affects the calling thread's subsequent parallel loops.
void SetNumThreads(int n);
int NumThreads();

}  // namespace symopt
