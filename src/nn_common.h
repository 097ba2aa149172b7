// Private helpers shared by the CPU layers (src/nn_*.cpp): shape checks that
// name the layer and both shapes, Eigen maps of row-major tensors, and seeded
// uniform initialisation.
#pragma once

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>

#include "manifolds/check.h"
#include "nn/tensor.h"
#include "omp_loops.h"

namespace symopt {
namespace nn {
namespace internal {

template <typename T>
using RowMatrix =
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <typename T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
template <typename T>
using VectorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstVectorMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;

// "[N, 784]" for a pattern where -1 means "any".
inline std::string PatternString(const Shape& pattern) {
  std::string s = "[";
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (i) s += ", ";
    s += pattern[i] < 0 ? (i == 0 ? std::string("N") : std::string("*"))
                        : std::to_string(pattern[i]);
  }
  return s + "]";
}

// Throws InvalidArgument "<layer>: input shape [..] does not match expected
// [..]" unless `input` matches `pattern` (same rank; -1 entries match any
// positive size; the batch dimension must be >= 1).
inline void CheckInputShape(const std::string& layer,
                            const Shape& input,
                            const Shape& pattern) {
  bool ok = input.size() == pattern.size();
  for (size_t i = 0; ok && i < input.size(); ++i) {
    ok = input[i] >= 1 && (pattern[i] < 0 || pattern[i] == input[i]);
  }
  SYMOPT_CHECK(ok,
               layer << ": input shape " << ShapeString(input)
                     << " does not match expected " << PatternString(pattern));
}

// Throws unless two tensors that must agree (dy vs y, x vs the forward input)
// have the same shape.
inline void CheckSameShape(const std::string& layer,
                           const char* what,
                           const Shape& got,
                           const Shape& expected) {
  SYMOPT_CHECK(got == expected,
               layer << ": " << what << " has shape " << ShapeString(got)
                     << ", expected " << ShapeString(expected));
}

// Runs fn(begin, end) over [0, rows) split into one contiguous chunk per
// OpenMP thread, or in one call when the work (flops) is too small to pay for
// a parallel region. GEMMs inside fn run single-threaded (Eigen does not nest
// its own OpenMP parallelism), so a product has one fork/join and no
// spin-waiting between Eigen's packing stages, which costs dearly on a busy
// machine.
template <typename Fn>
void ParallelRows(std::int64_t rows, double flops, Fn fn) {
  if (rows <= 1 || !symopt::internal::UseParallelRegion(flops >= 2e6)) {
    fn(std::int64_t(0), rows);
    return;
  }
  const int threads = int(std::min<std::int64_t>(omp_get_max_threads(), rows));
#pragma omp parallel num_threads(threads)
  {
    const std::int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const std::int64_t begin = rows * t / nt, end = rows * (t + 1) / nt;
    if (end > begin) fn(begin, end);
  }
}

// Fills n values uniform in [-bound, bound] from mt19937_64(seed).
template <typename T>
void FillUniform(T* data, std::int64_t n, double bound, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-bound, bound);
  for (std::int64_t i = 0; i < n; ++i) data[i] = T(u(rng));
}

}  // namespace internal
}  // namespace nn
}  // namespace symopt
