// Errors and precondition checks shared by every part of symopt.
//
// Public preconditions use SYMOPT_CHECK(cond, message), which throws
// symopt::InvalidArgument carrying "file:line: message" (STYLE E1). The message
// is a stream expression, so it can name shapes and indices:
//
//   SYMOPT_CHECK(g.rows == rows_, "gradient has " << g.rows << " rows, expected
//   "
//                                 << rows_);
//
// Internal invariants use SYMOPT_DCHECK, compiled out under NDEBUG (STYLE E2).
// Expected outcomes (a rejected bold-driver step, a collapsed row) are values,
// not exceptions (STYLE E4).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

// SYMOPT_HD marks the per-element maths ("Ops") that both the CPU loops and the
// CUDA kernels run (STYLE M1). It is empty for the host compiler.
#if defined(__CUDACC__)
#define SYMOPT_HD __host__ __device__ __forceinline__
#else
#define SYMOPT_HD inline
#endif

namespace symopt {

// Base of every exception symopt throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A caller broke a documented precondition (shape, device, value range).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// A file could not be read or written, or its contents are corrupt. The
// message names the file and the problem.
class FileError : public Error {
 public:
  using Error::Error;
};

// A numerical failure that leaves the state untouched (e.g. NaN in a gradient).
class NumericalError : public Error {
 public:
  using Error::Error;
};

// The operation needs a backend (CUDA, Ceres) this build does not include.
class NotCompiledError : public Error {
 public:
  using Error::Error;
};

namespace internal {
[[noreturn]] inline void ThrowInvalidArgument(const char* file,
                                              int line,
                                              const std::string& message) {
  std::ostringstream os;
  os << file << ":" << line << ": " << message;
  throw InvalidArgument(os.str());
}
}  // namespace internal

}  // namespace symopt

#define SYMOPT_CHECK(cond, message)                    \
  do {                                                 \
    if (!(cond)) {                                     \
      std::ostringstream symopt_check_os_;             \
      symopt_check_os_ << message;                     \
      ::symopt::internal::ThrowInvalidArgument(        \
          __FILE__, __LINE__, symopt_check_os_.str()); \
    }                                                  \
  } while (0)

#ifdef NDEBUG
#define SYMOPT_DCHECK(cond) \
  do {                      \
  } while (0)
#else
#include <cassert>
#define SYMOPT_DCHECK(cond) assert(cond)
#endif
