// Tie patterns for the tests of TieSubspace, TiedOblique and Product. Every
// pattern is computed from a rule (or a fixed seed), never typed in.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "manifolds/tie_subspace.h"

namespace symopt {
namespace testing {

// Renumbers the non-zero ids of p by first appearance (0, 1, ...) and sets
// num_classes: turns any labelling into a valid pattern.
inline TiePattern Canonical(TiePattern p) {
  std::vector<std::int32_t> map;
  std::int32_t next = 0;
  for (auto& k : p.class_of) {
    if (k == TiePattern::kZero) continue;
    if (std::size_t(k) >= map.size()) map.resize(std::size_t(k) + 1, -1);
    if (map[std::size_t(k)] < 0) map[std::size_t(k)] = next++;
    k = map[std::size_t(k)];
  }
  p.num_classes = next;
  return p;
}

// Mirror pairs in every row (flip invariance along the columns): entry (r, j)
// is tied to (r, cols - 1 - j). Columns listed in zero_cols are zeroed.
inline TiePattern MirrorPattern(std::int64_t rows,
                                std::int64_t cols,
                                std::vector<std::int64_t> zero_cols = {}) {
  TiePattern p;
  p.rows = rows;
  p.cols = cols;
  p.class_of.resize(std::size_t(rows * cols));
  const std::int64_t half = (cols + 1) / 2;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < cols; ++j) {
      const bool zero =
          std::find(zero_cols.begin(), zero_cols.end(), j) != zero_cols.end();
      p.class_of[std::size_t(r * cols + j)] =
          zero ? TiePattern::kZero
               : std::int32_t(r * half + std::min(j, cols - 1 - j));
    }
  }
  return Canonical(p);
}

// Mirror pairs inside every seg-wide segment of a row (what the constraint
// engine derives for a layer invariant to flipping the width of a
// [channels, height, seg] input): (r, s*seg + w) ~ (r, s*seg + seg-1-w).
// Columns j with j % seg in zero_ws are zeroed.
inline TiePattern MirrorSegmentPattern(std::int64_t rows,
                                       std::int64_t cols,
                                       std::int64_t seg,
                                       std::vector<std::int64_t> zero_ws = {}) {
  TiePattern p;
  p.rows = rows;
  p.cols = cols;
  p.class_of.resize(std::size_t(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < cols; ++j) {
      const std::int64_t s = j / seg, w = j % seg;
      const bool zero =
          std::find(zero_ws.begin(), zero_ws.end(), w) != zero_ws.end();
      p.class_of[std::size_t(r * cols + j)] =
          zero ? TiePattern::kZero
               : std::int32_t((r * cols + s * seg) + std::min(w, seg - 1 - w));
    }
  }
  return Canonical(p);
}

// Pairs at a fixed distance in every row: (r, j) ~ (r, j + cols / 2).
inline TiePattern ShiftPairPattern(std::int64_t rows, std::int64_t cols) {
  TiePattern p;
  p.rows = rows;
  p.cols = cols;
  p.class_of.resize(std::size_t(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < cols; ++j) {
      p.class_of[std::size_t(r * cols + j)] =
          std::int32_t(r * cols + j % (cols / 2));
    }
  }
  return Canonical(p);
}

// Each class a run of `run` consecutive entries (row-major), the last entry of
// every `zero_every`-th run zeroed (0: none).
inline TiePattern RunPattern(std::int64_t rows,
                             std::int64_t cols,
                             std::int64_t run,
                             std::int64_t zero_every = 0) {
  TiePattern p;
  p.rows = rows;
  p.cols = cols;
  p.class_of.resize(std::size_t(rows * cols));
  for (std::int64_t i = 0; i < rows * cols; ++i) {
    const std::int64_t k = i / run;
    const bool zero = zero_every > 0 && k % zero_every == 0 &&
                      (i % run == run - 1 || i == rows * cols - 1);
    p.class_of[std::size_t(i)] = zero ? TiePattern::kZero : std::int32_t(k);
  }
  return Canonical(p);
}

// Random ids in [0, max_classes) with probability zero_fraction of a zero.
inline TiePattern RandomPattern(std::int64_t rows,
                                std::int64_t cols,
                                std::int32_t max_classes,
                                double zero_fraction,
                                std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int32_t> pick(0, max_classes - 1);
  std::bernoulli_distribution zero(zero_fraction);
  TiePattern p;
  p.rows = rows;
  p.cols = cols;
  p.class_of.resize(std::size_t(rows * cols));
  for (auto& k : p.class_of) k = zero(rng) ? TiePattern::kZero : pick(rng);
  return Canonical(p);
}

// Relabels the classes of p by a random permutation (same partition).
inline TiePattern PermuteIds(TiePattern p, std::uint64_t seed) {
  std::vector<std::int32_t> perm(std::size_t(p.num_classes));
  for (std::size_t k = 0; k < perm.size(); ++k) perm[k] = std::int32_t(k);
  std::mt19937_64 rng(seed);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (auto& k : p.class_of) {
    if (k != TiePattern::kZero) k = perm[std::size_t(k)];
  }
  return p;
}

// True if the entries tied by p are bitwise equal in x and its zeroed
// entries are 0.
template <typename T>
bool TiedBitwiseEqual(const TiePattern& p, const std::vector<T>& x) {
  std::vector<T> first(static_cast<std::size_t>(p.num_classes));
  std::vector<char> seen(static_cast<std::size_t>(p.num_classes), 0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::int32_t k = p.class_of[i];
    if (k == TiePattern::kZero) {
      if (x[i] != T(0)) return false;
    } else if (!seen[std::size_t(k)]) {
      seen[std::size_t(k)] = 1;
      first[std::size_t(k)] = x[i];
      // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): by design
    } else if (std::memcmp(&first[std::size_t(k)], &x[i], sizeof(T)) != 0) {
      return false;
    }
  }
  return true;
}

}  // namespace testing
}  // namespace symopt
