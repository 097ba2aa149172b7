// Seeded random numbers for the data pipeline: shuffles, augmentation draws and
// rotation angles are pure functions of a 64-bit seed, identical on every
// platform and compiler.
//
// The standard library's distributions (std::uniform_real_distribution,
// std::shuffle) are implementation-defined, so they are not used. Instead:
//
//   SplitMix64(x)       the finaliser of Steele, Lea & Flood, "Fast splittable
//                       pseudorandom number generators" (OOPSLA 2014): a
//                       bijective 64-bit mix with good avalanche.
//   RandomBits(s, a, b) = SplitMix64(SplitMix64(SplitMix64(s) ^ a) ^ b):
//                       counter-based draws, so the draw for sample i does not
//                       depend on how many draws came before it (batches can
//                       be processed in any order or in parallel).
//   Rng                 a sequential SplitMix64 stream (state += golden ratio,
//                       output = mix(state)) for Fisher-Yates shuffles.
//   Uniform01(bits)     = (bits >> 11) * 2^-53, uniform on [0, 1), exact in
//                       double.
//   Rng::Below(n)       uniform on {0, ..., n-1} by rejection (no modulo bias).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "manifolds/check.h"

namespace symopt {
namespace data {

inline std::uint64_t SplitMix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Counter-based draw number b of stream a under seed s.
inline std::uint64_t RandomBits(std::uint64_t seed,
                                std::uint64_t a,
                                std::uint64_t b = 0) {
  return SplitMix64(SplitMix64(SplitMix64(seed) ^ a) ^ b);
}

// Uniform on [0, 1).
inline double Uniform01(std::uint64_t bits) {
  return double(bits >> 11) * 0x1.0p-53;
}

// Sequential generator. Same seed => same stream on every platform.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(SplitMix64(seed)) {}

  std::uint64_t Next() {
    state_ += 0x9E3779B97F4A7C15ull;
    return SplitMix64(state_);
  }
  double Uniform() { return Uniform01(Next()); }

  // Uniform on {0, ..., n-1}. Requires: n >= 1.
  std::uint64_t Below(std::uint64_t n) {
    SYMOPT_CHECK(n >= 1, "Rng::Below needs n >= 1, got " << n);
    // Reject the top partial block of 2^64 mod n values.
    const std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % n);
    std::uint64_t r = Next();
    while (r >= limit) r = Next();
    return r % n;
  }

 private:
  std::uint64_t state_;
};

// A uniformly random permutation of {0, ..., n-1} (Fisher-Yates, drawing from
// Rng(seed)). Same (n, seed) => same permutation everywhere.
// Requires: n >= 0.
inline std::vector<std::int64_t> ShuffledIndices(std::int64_t n,
                                                 std::uint64_t seed) {
  SYMOPT_CHECK(n >= 0, "ShuffledIndices: negative count " << n);
  std::vector<std::int64_t> order(n);
  for (std::int64_t i = 0; i < n; ++i) order[i] = i;
  Rng rng(seed);
  for (std::int64_t i = n - 1; i > 0; --i) {
    const std::int64_t j = std::int64_t(rng.Below(std::uint64_t(i) + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

}  // namespace data
}  // namespace symopt
