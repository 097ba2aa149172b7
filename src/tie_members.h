// Member index sets of tie classes (private to the library).
//
// A class's members are visited through a small value type with size() and
// operator[](j) -> flat index. Classes stored as runs use RunMembers; member
// lists use Members<S>; for both, S > 0 fixes the class size at compile time
// (so the loops over pairs, triples, ... have a constant trip count and unroll)
// and S = 0 is the general case. The accessors are SYMOPT_HD: TieOps
// (backend/step_ops.h) takes them on the CPU and on the GPU.
#pragma once

#include <cstdint>
#include <type_traits>

#include "manifolds/check.h"

namespace symopt {
namespace tie_internal {

// Members start, start + 1, ..., start + S - 1 (S = 0: n members).
template <int S>
struct RunMembers {
  std::int64_t start;
  SYMOPT_HD static constexpr std::int64_t size() { return S; }
  SYMOPT_HD std::int64_t operator[](std::int64_t j) const { return start + j; }
};

template <>
struct RunMembers<0> {
  std::int64_t start;
  std::int64_t n;
  SYMOPT_HD std::int64_t size() const { return n; }
  SYMOPT_HD std::int64_t operator[](std::int64_t j) const { return start + j; }
};

template <int S>
inline RunMembers<S> MakeRun(std::int64_t start, std::int64_t n) {
  if constexpr (S == 0) {
    return RunMembers<0>{start, n};
  } else {
    (void)n;
    return RunMembers<S>{start};
  }
}

// Members base + m[0], ..., base + m[S - 1].
template <int S>
struct Members {
  const std::int32_t* m;
  std::int64_t base;
  SYMOPT_HD static constexpr std::int64_t size() { return S; }
  SYMOPT_HD std::int64_t operator[](std::int64_t j) const {
    return base + m[j];
  }
};

template <>
struct Members<0> {
  const std::int32_t* m;
  std::int64_t base;
  std::int64_t n;
  SYMOPT_HD std::int64_t size() const { return n; }
  SYMOPT_HD std::int64_t operator[](std::int64_t j) const {
    return base + m[j];
  }
};

template <int S>
inline Members<S> MakeMembers(const std::int32_t* m,
                              std::int64_t base,
                              std::int64_t n) {
  if constexpr (S == 0) {
    return Members<0>{m, base, n};
  } else {
    (void)n;
    return Members<S>{m, base};
  }
}

// Members i0 and i1 of a pair.
struct PairMembers {
  std::int64_t i0;
  std::int64_t i1;
  SYMOPT_HD static constexpr std::int64_t size() { return 2; }
  SYMOPT_HD std::int64_t operator[](std::int64_t j) const {
    return j == 0 ? i0 : i1;
  }
};

// The compile-time class size of a member type (0: known only at run time).
template <typename M>
struct FixedSize : std::integral_constant<int, 0> {};
template <int S>
struct FixedSize<RunMembers<S>> : std::integral_constant<int, S> {};
template <int S>
struct FixedSize<Members<S>> : std::integral_constant<int, S> {};
template <>
struct FixedSize<PairMembers> : std::integral_constant<int, 2> {};

// Calls fn(std::integral_constant<int, S>) with S = size for the sizes that
// get their own loops, S = 0 otherwise; returns what fn returns.
template <typename Fn>
inline auto DispatchSize(std::int64_t size, Fn&& fn) {
  switch (size) {
    case 1:
      return fn(std::integral_constant<int, 1>());
    case 2:
      return fn(std::integral_constant<int, 2>());
    case 3:
      return fn(std::integral_constant<int, 3>());
    case 4:
      return fn(std::integral_constant<int, 4>());
    default:
      return fn(std::integral_constant<int, 0>());
  }
}

}  // namespace tie_internal
}  // namespace symopt
