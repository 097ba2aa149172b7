#include "manifolds/parallel.h"

#include <omp.h>

#include "manifolds/check.h"

namespace symopt {

void SetNumThreads(int n) {
  SYMOPT_CHECK(n >= 1, "thread count must be >= 1, got " << n);
  omp_set_num_threads(n);
}

int NumThreads() { return omp_get_max_threads(); }

}  // namespace symopt
