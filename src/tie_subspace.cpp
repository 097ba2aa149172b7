#include "manifolds/tie_subspace.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <type_traits>
#include <unordered_map>

#include "backend/step_ops.h"
#include "omp_loops.h"
#include "tie_members.h"

namespace symopt {

bool TiePattern::IsValid(std::string* error) const {
  std::ostringstream os;
  const std::int64_t n = rows * cols;
  if (rows < 1 || cols < 1) {
    os << "tie pattern shape must be at least 1x1, got " << rows << "x" << cols;
  } else if (num_classes < 0) {
    os << "tie pattern has a negative class count " << num_classes;
  } else if (std::int64_t(class_of.size()) != n) {
    os << "tie pattern class_of has " << class_of.size()
       << " entries, expected rows*cols = " << rows << "*" << cols << " = "
       << n;
  } else {
    std::vector<bool> used(std::size_t(num_classes), false);
    const std::int32_t* id = class_of.data();
    std::int64_t bad = -1;
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int32_t k = id[i];
      if (k == kZero) continue;
      if (k < 0 || k >= num_classes) {
        bad = i;
        break;
      }
      used[std::size_t(k)] = true;
    }
    if (bad >= 0) {
      os << "tie pattern entry (" << bad / cols << ", " << bad % cols
         << ") (flat " << bad << ") has class id " << id[bad]
         << ", outside [0, " << num_classes << ") and not kZero (-1)";
    } else {
      const auto unused = std::find(used.begin(), used.end(), false);
      if (unused != used.end()) {
        os << "tie pattern class " << (unused - used.begin()) << " of "
           << num_classes << " has no member (ids must be 0..K-1, all used)";
      }
    }
  }
  const std::string message = os.str();
  if (error) *error = message;
  return message.empty();
}

const char* TieLayoutName(TieLayout layout) {
  switch (layout) {
    case TieLayout::kContiguous:
      return "contiguous";
    case TieLayout::kRowPeriodic:
      return "row_periodic";
    case TieLayout::kGeneral:
      return "general";
  }
  return "unknown";
}

namespace {

using tie_internal::DispatchSize;
using tie_internal::MakeMembers;
using tie_internal::MakeRun;
using tie_internal::PairMembers;

// Blocks at least this large run their loops on OpenMP threads.
constexpr std::int64_t kParallelMin = std::int64_t(1) << 16;
// Zero lists of the general layout are split into chunks this long.
constexpr std::int64_t kZeroChunk = 4096;
// Entries per block of runs in the contiguous layout.
constexpr std::int64_t kBlockEntries = 16384;
// Pair runs: used when they average at least kPairRunMin pairs; at most
// kPairRunMax pairs each, so that they spread over threads.
constexpr std::int64_t kPairRunMin = 8;
constexpr std::int64_t kPairRunMax = 4096;
// Pair blocks: at most this many pairs per repeated block, and at least
// kPairBlockMinRepeats repeats of it per row.
constexpr std::int64_t kPairBlockMaxK = 8;
constexpr std::int64_t kPairBlockMinRepeats = 4;
// Member-list layouts prefetch the members of the class this many ahead.
constexpr std::int64_t kPrefetchAhead = 16;

std::int64_t CheckedRows(const TiePattern& p) {
  std::string error;
  SYMOPT_CHECK(p.IsValid(&error), "invalid tie pattern: " << error);
  SYMOPT_CHECK(p.rows * p.cols <= std::numeric_limits<std::int32_t>::max(),
               "tie pattern " << p.rows << "x" << p.cols << " has "
                              << p.rows * p.cols
                              << " entries; at most 2^31 - 1 are supported");
  return p.rows;
}

// True if every class is one run of consecutive entries.
bool IsContiguous(const TiePattern& p) {
  std::vector<char> seen(std::size_t(p.num_classes), 0);
  const std::int32_t* id = p.class_of.data();
  const std::int64_t n = std::int64_t(p.class_of.size());
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t k = id[i];
    if (k == TiePattern::kZero || (i > 0 && id[i - 1] == k)) continue;
    if (seen[std::size_t(k)]) return false;  // a second run of class k
    seen[std::size_t(k)] = 1;
  }
  return true;
}

// Row-periodic detection. On success local0 holds row 0's classes renumbered
// 0..K_row-1 by first appearance (kZero kept), and phi[r * K_row + c] is the
// id of local class c in row r.
bool IsRowPeriodic(const TiePattern& p,
                   std::vector<std::int32_t>* local0,
                   std::vector<std::int32_t>* phi,
                   std::int64_t* classes_per_row) {
  const std::int64_t rows = p.rows, cols = p.cols;
  if (rows < 2) return false;
  const std::int32_t* id = p.class_of.data();
  // Row 0's classes, renumbered by first appearance (a map: row 0 is short).
  std::unordered_map<std::int32_t, std::int32_t> local_of;
  local0->assign(std::size_t(cols), TiePattern::kZero);
  std::int32_t k_row = 0;
  for (std::int64_t j = 0; j < cols; ++j) {
    const std::int32_t k = id[j];
    if (k == TiePattern::kZero) continue;
    const auto it = local_of.emplace(k, k_row).first;
    if (it->second == k_row) ++k_row;
    (*local0)[std::size_t(j)] = it->second;
  }
  if (std::int64_t(p.num_classes) != rows * k_row) return false;
  // Each class may be claimed by exactly one (row, local class). Transient
  // memory: phi (one int per class) and one bit per class.
  std::vector<bool> claimed(std::size_t(p.num_classes), false);
  phi->assign(std::size_t(rows * k_row), -1);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int32_t* phi_r = phi->data() + r * k_row;
    const std::int32_t* id_r = id + r * cols;
    for (std::int64_t j = 0; j < cols; ++j) {
      const std::int32_t c = (*local0)[std::size_t(j)];
      const std::int32_t k = id_r[j];
      if ((c == TiePattern::kZero) != (k == TiePattern::kZero)) return false;
      if (k == TiePattern::kZero) continue;
      if (phi_r[c] < 0) {
        if (claimed[std::size_t(k)]) return false;
        claimed[std::size_t(k)] = true;
        phi_r[c] = k;
      } else if (phi_r[c] != k) {
        return false;
      }
    }
  }
  *classes_per_row = k_row;
  return true;
}

}  // namespace

template <typename T>
TieSubspace<T>::TieSubspace(const TiePattern& pattern, TieMetric metric)
    : Manifold<T>(CheckedRows(pattern), pattern.cols), metric_(metric) {
  const TiePattern& p = pattern;
  const std::int64_t n = p.rows * p.cols;
  num_classes_ = p.num_classes;
  num_zeros_ =
      std::count(p.class_of.begin(), p.class_of.end(), TiePattern::kZero);
  const std::int32_t* id = p.class_of.data();

  if (IsContiguous(p)) {
    layout_ = TieLayout::kContiguous;
    // Consecutive runs of one length with consecutive ids share a block (at
    // most kBlockEntries entries, so that blocks spread over threads).
    std::int64_t i = 0;
    while (i < n) {
      std::int64_t end = i + 1;
      while (end < n && id[end] == id[i]) ++end;
      const std::int64_t length = end - i;
      RunBlock* last = blocks_.empty() ? nullptr : &blocks_.back();
      if (last != nullptr && id[i] != TiePattern::kZero &&
          last->first_id != TiePattern::kZero && last->length == length &&
          id[i] == last->first_id + last->count &&
          (last->count + 1) * length <= kBlockEntries) {
        ++last->count;
      } else {
        blocks_.push_back(RunBlock{i, length, 1, id[i]});
      }
      i = end;
    }
    return;
  }

  std::vector<std::int32_t> local0, phi;
  if (IsRowPeriodic(p, &local0, &phi, &row_classes_)) {
    layout_ = TieLayout::kRowPeriodic;
    BuildGroups(local0.data(), p.cols, row_classes_);
    BuildPairRuns();
    BuildPairBlocks();
    // class_ids_ holds local classes; turn phi into ids in group order, in
    // place row by row, and drop it when the ids are row 0's shifted.
    const std::vector<std::int32_t> local_at = class_ids_;
    const std::int64_t k_row = row_classes_;
    bool shifted = true;
    std::vector<std::int32_t> row(static_cast<std::size_t>(k_row));
    for (std::int64_t r = 0; r < p.rows; ++r) {
      std::int32_t* phi_r = phi.data() + r * k_row;
      std::copy(phi_r, phi_r + k_row, row.begin());
      for (std::int64_t c = 0; c < k_row; ++c) {
        phi_r[c] = row[std::size_t(local_at[std::size_t(c)])];
        shifted = shifted && phi_r[c] == phi[std::size_t(c)] + r * k_row;
      }
    }
    class_ids_.assign(phi.begin(), phi.begin() + k_row);
    if (!shifted) id_map_ = std::move(phi);
    return;
  }

  layout_ = TieLayout::kGeneral;
  BuildGroups(id, n, num_classes_);
  BuildPairRuns();
}

// Groups classes by size (ascending; ascending id within a size) and fills
// members_ (num_classes x size per group), class_ids_ and zero_members_.
template <typename T>
void TieSubspace<T>::BuildGroups(const std::int32_t* local_ids,
                                 std::int64_t n,
                                 std::int64_t num_local) {
  std::vector<std::int32_t> count(std::size_t(num_local), 0);
  std::int64_t zeros = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (local_ids[i] == TiePattern::kZero) {
      ++zeros;
    } else {
      ++count[std::size_t(local_ids[i])];
    }
  }
  std::map<std::int32_t, std::int64_t> classes_of_size;
  {
    // Most sizes are small: count those in an array, the rest in the map.
    constexpr std::int32_t kSmall = 256;
    std::vector<std::int64_t> small(kSmall, 0);
    for (std::int32_t c : count) {
      if (c < kSmall) {
        ++small[std::size_t(c)];
      } else {
        ++classes_of_size[c];
      }
    }
    for (std::int32_t s = 1; s < kSmall; ++s) {
      if (small[std::size_t(s)] > 0) classes_of_size[s] = small[std::size_t(s)];
    }
  }
  groups_.clear();
  std::int64_t first_class = 0, first_member = 0;
  std::map<std::int32_t, std::size_t> group_of_size;
  for (const auto& [size, num] : classes_of_size) {
    group_of_size[size] = groups_.size();
    groups_.push_back(Group{size, first_class, num, first_member});
    first_class += num;
    first_member += num * size;
  }
  // Class positions and member cursors, in id order within each group.
  class_ids_.assign(std::size_t(num_local), 0);
  std::vector<std::int32_t> cursor(static_cast<std::size_t>(num_local));
  {
    std::vector<std::int64_t> next_class(groups_.size());
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      next_class[g] = groups_[g].first_class;
    }
    for (std::int64_t k = 0; k < num_local; ++k) {
      const std::size_t g = group_of_size[count[std::size_t(k)]];
      const std::int64_t pos = next_class[g]++;
      class_ids_[std::size_t(pos)] = std::int32_t(k);
      cursor[std::size_t(k)] =
          std::int32_t(groups_[g].first_member +
                       (pos - groups_[g].first_class) * groups_[g].size);
    }
  }
  members_.assign(std::size_t(first_member), 0);
  zero_members_.clear();
  zero_members_.reserve(std::size_t(zeros));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t k = local_ids[i];
    if (k == TiePattern::kZero) {
      zero_members_.push_back(std::int32_t(i));
    } else {
      members_[std::size_t(cursor[std::size_t(k)]++)] = std::int32_t(i);
    }
  }
}

template <typename T>
void TieSubspace<T>::BuildPairRuns() {
  pair_runs_.clear();
  for (const Group& g : groups_) {
    if (g.size != 2) continue;
    const std::int32_t* m = members_.data() + g.first_member;
    for (std::int64_t c = 0; c < g.num_classes; ++c) {
      const std::int32_t a = m[2 * c], b = m[2 * c + 1];
      if (!pair_runs_.empty()) {
        PairRun& run = pair_runs_.back();
        const std::int64_t k = run.count;
        const bool first_step =
            k == 1 && (b == run.first1 + 1 || b == run.first1 - 1);
        const std::int32_t step = first_step ? b - run.first1 : run.step1;
        if (a == run.first0 + k && b == run.first1 + step * k &&
            k < kPairRunMax) {
          run.step1 = step;
          ++run.count;
          continue;
        }
      }
      pair_runs_.push_back(PairRun{g.first_class + c, 1, a, b, 1});
    }
    // Worth it only when the runs are long.
    if (std::int64_t(pair_runs_.size()) * kPairRunMin > g.num_classes) {
      pair_runs_.clear();
    }
  }
  pair_runs_.shrink_to_fit();
}

// Finds the smallest k <= kPairBlockMaxK such that the size-2 group is its
// first k pairs repeated with a fixed column period (row-periodic layout only,
// and only when the pair runs were not long enough to be used).
template <typename T>
void TieSubspace<T>::BuildPairBlocks() {
  pair_block_k_ = 0;
  pair_block_period_ = 0;
  if (layout_ != TieLayout::kRowPeriodic || !pair_runs_.empty()) return;
  for (const Group& g : groups_) {
    if (g.size != 2) continue;
    const std::int32_t* m = members_.data() + g.first_member;
    const std::int64_t n = g.num_classes;
    for (std::int64_t k = 1; k <= kPairBlockMaxK; ++k) {
      if (n % k != 0 || n / k < kPairBlockMinRepeats) continue;
      const std::int64_t period = std::int64_t(m[2 * k]) - m[0];
      if (period <= 0) continue;
      bool ok = true;
      for (std::int64_t c = k; c < n && ok; ++c) {
        ok = std::int64_t(m[2 * c]) == m[2 * (c - k)] + period &&
             std::int64_t(m[2 * c + 1]) == m[2 * (c - k) + 1] + period;
      }
      if (ok) {
        pair_block_k_ = std::int32_t(k);
        pair_block_period_ = std::int32_t(period);
        return;
      }
    }
  }
}

template <typename T>
template <bool kReduce, typename PerClass, typename PerZero>
double TieSubspace<T>::Visit(PerClass&& per_class,
                             PerZero&& per_zero,
                             std::initializer_list<const T*> prefetch) const {
  const bool parallel = this->AmbientSize() >= kParallelMin;
  // The loops below call local copies of the callbacks: a copy whose address
  // never escapes keeps its captured scalars in registers, where the caller's
  // object might alias the arrays being written (and block vectorisation).
  // Calls f(args...) and adds its value to acc when reducing.
  auto call = []([[maybe_unused]] double& acc, auto&& f, auto&&... args) {
    if constexpr (kReduce) {
      acc += f(args...);
    } else {
      f(args...);
    }
  };
  // Visits the pairs of one pair run in rows starting at `base`; id_of maps a
  // class position to its id.
  auto visit_pair_run =
      [&](double& acc, const PairRun& run, std::int64_t base, auto&& id_of) {
        auto loop = [&](auto step_tag) {
          constexpr int kStep = decltype(step_tag)::value;
          const std::int64_t b0 = base + run.first0, b1 = base + run.first1;
          const auto f = per_class;
      // Every entry belongs to one class, so the pairs of a run touch
      // distinct entries: no dependence between iterations.
#pragma GCC ivdep
          for (std::int64_t c = 0; c < run.count; ++c) {
            call(acc,
                 f,
                 id_of(run.first_class + c),
                 PairMembers{b0 + c, b1 + kStep * c});
          }
        };
        if (run.step1 == 1) {
          loop(std::integral_constant<int, 1>());
        } else {
          loop(std::integral_constant<int, -1>());
        }
      };
  // Visits the size-2 group g of one row (starting at `base`) as repeated
  // blocks of kK pairs (BuildPairBlocks): the 2 kK member offsets are read
  // once, the loop over blocks has a constant inner trip count.
  auto visit_pair_blocks =
      [&](double& acc, const Group& g, std::int64_t base, auto&& id_of) {
        auto loop = [&](auto k_tag) {
          constexpr int kK = decltype(k_tag)::value;
          const std::int32_t* m = members_.data() + g.first_member;
          std::int64_t a[kK], b[kK];
          for (int q = 0; q < kK; ++q) {
            a[q] = base + m[2 * q];
            b[q] = base + m[2 * q + 1];
          }
          const std::int64_t period = pair_block_period_;
          const std::int64_t blocks = g.num_classes / kK;
          const auto f = per_class;
          for (std::int64_t s = 0; s < blocks; ++s) {
            const std::int64_t off = s * period;
            const std::int64_t pos = g.first_class + s * kK;
            for (int q = 0; q < kK; ++q) {
              call(acc, f, id_of(pos + q), PairMembers{a[q] + off, b[q] + off});
            }
          }
        };
        switch (pair_block_k_) {
          case 1:
            return loop(std::integral_constant<int, 1>());
          case 2:
            return loop(std::integral_constant<int, 2>());
          case 3:
            return loop(std::integral_constant<int, 3>());
          case 4:
            return loop(std::integral_constant<int, 4>());
          case 5:
            return loop(std::integral_constant<int, 5>());
          case 6:
            return loop(std::integral_constant<int, 6>());
          case 7:
            return loop(std::integral_constant<int, 7>());
          default:
            return loop(std::integral_constant<int, 8>());
        }
      };
  const bool pair_runs = !pair_runs_.empty();
  double total = 0.0;
  switch (layout_) {
    case TieLayout::kContiguous: {
      const std::int64_t num_blocks = std::int64_t(blocks_.size());
      const RunBlock* blocks = blocks_.data();
      total += internal::SumLoop(
          num_blocks, parallel, [&](std::int64_t b, double& acc) {
            const RunBlock blk = blocks[b];
            if (blk.first_id == TiePattern::kZero) {
              call(acc, per_zero, MakeRun<0>(blk.start, blk.length));
              return;
            }
            DispatchSize(blk.length, [&](auto tag) {
              constexpr int kSize = decltype(tag)::value;
              const auto f = per_class;
              for (std::int64_t c = 0; c < blk.count; ++c) {
                call(acc,
                     f,
                     std::int64_t(blk.first_id) + c,
                     MakeRun<kSize>(blk.start + c * blk.length, blk.length));
              }
            });
          });
      break;
    }
    case TieLayout::kRowPeriodic: {
      const std::int64_t rows = this->rows(), cols = this->cols();
      const std::int64_t k_row = row_classes_;
      const std::int32_t* ids = class_ids_.data();
      const std::int32_t* map = id_map_.data();
      const bool mapped = !id_map_.empty();
      total +=
          internal::SumLoop(rows, parallel, [&](std::int64_t r, double& acc) {
            const std::int64_t base = r * cols;
            for (const Group& g : groups_) {
              if (g.size == 2 && pair_runs) {
                for (const PairRun& run : pair_runs_) {
                  visit_pair_run(acc, run, base, [&](std::int64_t pos) {
                    return mapped ? std::int64_t(map[r * k_row + pos])
                                  : ids[pos] + r * k_row;
                  });
                }
                continue;
              }
              if (g.size == 2 && pair_block_k_ > 0) {
                visit_pair_blocks(acc, g, base, [&](std::int64_t pos) {
                  return mapped ? std::int64_t(map[r * k_row + pos])
                                : ids[pos] + r * k_row;
                });
                continue;
              }
              DispatchSize(g.size, [&](auto tag) {
                constexpr int kSize = decltype(tag)::value;
                const std::int32_t* mem = members_.data() + g.first_member;
                const auto f = per_class;
                for (std::int64_t c = 0; c < g.num_classes; ++c) {
                  const std::int64_t pos = g.first_class + c;
                  call(acc,
                       f,
                       mapped ? std::int64_t(map[r * k_row + pos])
                              : ids[pos] + r * k_row,
                       MakeMembers<kSize>(mem + c * g.size, base, g.size));
                }
              });
            }
            if (!zero_members_.empty()) {
              call(acc,
                   per_zero,
                   MakeMembers<0>(zero_members_.data(),
                                  base,
                                  std::int64_t(zero_members_.size())));
            }
          });
      break;
    }
    case TieLayout::kGeneral: {
      const std::int32_t* ids = class_ids_.data();
      for (const Group& g : groups_) {
        if (g.size == 2 && pair_runs) {
          const std::int64_t num_runs = std::int64_t(pair_runs_.size());
          const PairRun* runs = pair_runs_.data();
          total += internal::SumLoop(
              num_runs, parallel, [&](std::int64_t k, double& acc) {
                visit_pair_run(acc, runs[k], 0, [ids](std::int64_t pos) {
                  return std::int64_t(ids[pos]);
                });
              });
          continue;
        }
        DispatchSize(g.size, [&](auto tag) {
          constexpr int kSize = decltype(tag)::value;
          const std::int32_t* mem = members_.data() + g.first_member;
          const std::int64_t first = g.first_class, size = g.size;
          const std::int64_t count = g.num_classes;
          total += internal::SumLoop(
              count, parallel, [&](std::int64_t c, double& acc) {
                // Random members cost a cache miss each: ask for them early.
                if (c + kPrefetchAhead < count) {
                  const std::int32_t* ahead = mem + (c + kPrefetchAhead) * size;
                  for (const T* a : prefetch) {
                    if (a == nullptr) continue;
                    for (std::int64_t j = 0; j < size; ++j) {
                      __builtin_prefetch(a + ahead[j], 1);
                    }
                  }
                }
                const auto f = per_class;
                call(acc,
                     f,
                     std::int64_t(ids[first + c]),
                     MakeMembers<kSize>(mem + c * size, 0, size));
              });
        });
      }
      const std::int64_t zeros = std::int64_t(zero_members_.size());
      const std::int64_t chunks = (zeros + kZeroChunk - 1) / kZeroChunk;
      const std::int32_t* zmem = zero_members_.data();
      total +=
          internal::SumLoop(chunks, parallel, [&](std::int64_t c, double& acc) {
            const std::int64_t begin = c * kZeroChunk;
            call(acc,
                 per_zero,
                 MakeMembers<0>(
                     zmem + begin, 0, std::min(kZeroChunk, zeros - begin)));
          });
      break;
    }
  }
  return total;
}

namespace {

// Sum of a[members] in double.
template <typename T, typename Members>
inline double SumOver(const T* a, const Members& mem) {
  double s = 0.0;
  for (std::int64_t j = 0; j < mem.size(); ++j) s += double(a[mem[j]]);
  return s;
}

template <typename T, typename Members>
inline void Fill(T value, T* a, const Members& mem) {
  for (std::int64_t j = 0; j < mem.size(); ++j) a[mem[j]] = value;
}

// The class mean and sum of a[members], rounded once to T (TieOps: pairs in
// T, larger classes through a double sum).
template <typename T, typename Members>
inline T MeanOver(const T* a, const Members& mem) {
  return TieOps::Mean<T>(mem, [a](std::int64_t i) { return a[i]; });
}

template <typename T, typename Members>
inline T SumOverT(const T* a, const Members& mem) {
  return TieOps::Sum<T>(mem, [a](std::int64_t i) { return a[i]; });
}

// Calls fn(std::integral_constant<bool, a>, ..., <bool, c>) for run-time
// flags a, b, c, so that loops see them as constants.
template <typename Fn>
inline void WithFlags(bool a, bool b, bool c, Fn&& fn) {
  auto with_c = [&](auto ta, auto tb) {
    if (c) {
      fn(ta, tb, std::true_type());
    } else {
      fn(ta, tb, std::false_type());
    }
  };
  auto with_b = [&](auto ta) {
    if (b) {
      with_c(ta, std::true_type());
    } else {
      with_c(ta, std::false_type());
    }
  };
  if (a) {
    with_b(std::true_type());
  } else {
    with_b(std::false_type());
  }
}

}  // namespace

template <typename T>
std::int64_t TieSubspace<T>::IndexBytes() const {
  return std::int64_t(sizeof(std::int32_t)) *
             std::int64_t(members_.size() + class_ids_.size() +
                          zero_members_.size() + id_map_.size()) +
         std::int64_t(sizeof(Group) * groups_.size() +
                      sizeof(RunBlock) * blocks_.size());
}

template <typename T>
TiePattern TieSubspace<T>::Pattern() const {
  TiePattern p;
  p.rows = this->rows();
  p.cols = this->cols();
  p.num_classes = std::int32_t(num_classes_);
  p.class_of.assign(std::size_t(this->AmbientSize()), TiePattern::kZero);
  std::int32_t* out = p.class_of.data();
  Visit<false>([out](std::int64_t id,
                     const auto& mem) { Fill(std::int32_t(id), out, mem); },
               [](const auto&) {});
  return p;
}

template <typename T>
void TieSubspace<T>::Expand(const T* theta, View x) const {
  this->CheckView(x, "x");
  SYMOPT_CHECK(theta != nullptr || num_classes_ == 0,
               this->Describe() << ": theta is null");
  T* xs = x.data;
  // theta is null only when num_classes_ == 0, and then Visit passes no class
  // id (an invariant the static analyzer cannot see).
  Visit<false>(
      [theta, xs](std::int64_t id, const auto& mem) {
        // NOLINTNEXTLINE(clang-analyzer-core.NullDereference): see above
        Fill(theta[id], xs, mem);
      },
      [xs](const auto& mem) { Fill(T(0), xs, mem); });
}

template <typename T>
void TieSubspace<T>::Fold(ConstView x, T* theta) const {
  this->CheckView(x, "x");
  SYMOPT_CHECK(theta != nullptr || num_classes_ == 0,
               this->Describe() << ": theta is null");
  const T* xs = x.data;
  // theta is null only when num_classes_ == 0, and then Visit passes no class
  // id (an invariant the static analyzer cannot see).
  Visit<false>(
      [theta, xs](std::int64_t id, const auto& mem) {
        // NOLINTNEXTLINE(clang-analyzer-core.NullDereference): see above
        theta[id] = MeanOver(xs, mem);
      },
      [](const auto&) {});
}

template <typename T>
void TieSubspace<T>::FoldSum(ConstView g, T* theta) const {
  this->CheckView(g, "g");
  SYMOPT_CHECK(theta != nullptr || num_classes_ == 0,
               this->Describe() << ": theta is null");
  const T* gs = g.data;
  // theta is null only when num_classes_ == 0, and then Visit passes no class
  // id (an invariant the static analyzer cannot see).
  Visit<false>(
      [theta, gs](std::int64_t id, const auto& mem) {
        // NOLINTNEXTLINE(clang-analyzer-core.NullDereference): see above
        theta[id] = SumOverT(gs, mem);
      },
      [](const auto&) {});
}

template <typename T>
void TieSubspace<T>::ProjectInPlace(View u) const {
  this->CheckView(u, "u");
  ProjectPointImpl(u);
}

// Pi_E: every entry becomes its class mean, zeros become 0.
template <typename T>
void TieSubspace<T>::ProjectPointImpl(View x) const {
  RunPass<TieMode::kMean>(x.data, nullptr, nullptr, {});
}

template <typename T>
void TieSubspace<T>::ProjectImpl(ConstView /*x*/, View u) const {
  ProjectPointImpl(u);
}

template <typename T>
void TieSubspace<T>::EgradToRgradImpl(ConstView /*x*/, View g) const {
  if (metric_ == TieMetric::kEmbedded) {
    ProjectPointImpl(g);
    return;
  }
  RunPass<TieMode::kSum>(g.data, nullptr, nullptr, {});
}

// x + v, computed as mean(x) + mean(v) per class so that the result is in E
// with one value per class even when x or v carry rounding noise.
template <typename T>
RetractReport TieSubspace<T>::RetractImpl(View x, ConstView v) const {
  RunPass<TieMode::kRetract>(x.data, v.data, nullptr, {});
  return {};
}

template <typename T>
void TieSubspace<T>::InverseRetractImpl(ConstView x,
                                        ConstView y,
                                        View v) const {
  const T* xs = x.data;
  const T* ys = y.data;
  T* vs = v.data;
  Visit<false>(
      [xs, ys, vs](std::int64_t, const auto& mem) {
        Fill(T(MeanOver(ys, mem) - MeanOver(xs, mem)), vs, mem);
      },
      [vs](const auto& mem) { Fill(T(0), vs, mem); });
}

template <typename T>
void TieSubspace<T>::TransportImpl(ConstView, ConstView, View) const {}

template <typename T>
double TieSubspace<T>::InnerImpl(ConstView x, ConstView u, ConstView v) const {
  if (metric_ == TieMetric::kEmbedded) return Manifold<T>::InnerImpl(x, u, v);
  const T* us = u.data;
  const T* vs = v.data;
  return Visit<true>(
      [us, vs](std::int64_t, const auto& mem) {
        const double n = double(mem.size());
        return (SumOver(us, mem) / n) * (SumOver(vs, mem) / n);
      },
      [](const auto&) { return 0.0; });
}

template <typename T>
double TieSubspace<T>::DistanceToManifoldImpl(ConstView x) const {
  const T* xs = x.data;
  const double sq = Visit<true>(
      [xs](std::int64_t, const auto& mem) {
        const double mean = SumOver(xs, mem) / double(mem.size());
        double s = 0.0;
        for (std::int64_t j = 0; j < mem.size(); ++j) {
          const double d = double(xs[mem[j]]) - mean;
          s += d * d;
        }
        return s;
      },
      [xs](const auto& mem) {
        double s = 0.0;
        for (std::int64_t j = 0; j < mem.size(); ++j) {
          s += double(xs[mem[j]]) * double(xs[mem[j]]);
        }
        return s;
      });
  return std::sqrt(sq);
}

// theta_k ~ N(0, 1), expanded: every class value has unit variance.
template <typename T>
void TieSubspace<T>::RandomPointImpl(View x, std::uint64_t seed) const {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<T> theta(static_cast<std::size_t>(num_classes_));
  for (T& t : theta) t = T(normal(rng));
  Expand(theta.data(), x);
}

template <typename T>
void TieSubspace<T>::TangentBasisMultiplyImpl(ConstView /*x*/,
                                              const T* coeffs,
                                              View v) const {
  T* vs = v.data;
  const bool embedded = metric_ == TieMetric::kEmbedded;
  Visit<false>(
      [coeffs, vs, embedded](std::int64_t id, const auto& mem) {
        const double c = double(coeffs[id]);
        Fill(T(embedded ? c / std::sqrt(double(mem.size())) : c), vs, mem);
      },
      [vs](const auto& mem) { Fill(T(0), vs, mem); });
}

template <typename T>
void TieSubspace<T>::TangentBasisTransposeMultiplyImpl(ConstView /*x*/,
                                                       ConstView u,
                                                       T* coeffs) const {
  const T* us = u.data;
  const bool embedded = metric_ == TieMetric::kEmbedded;
  Visit<false>(
      [coeffs, us, embedded](std::int64_t id, const auto& mem) {
        const double s = SumOver(us, mem), n = double(mem.size());
        coeffs[id] = T(embedded ? s / std::sqrt(n) : s / n);
      },
      [](const auto&) {});
}

// One pass of TieOps::Class<kMode> over every class, zeros cleared (in p2 too
// for a step with momentum). p0, p1, p2 as TieOps: they never alias
// (manifold.h), and telling the compiler lets the pair loops vectorise. The
// step's flags become compile-time constants, each combination its own loop.
template <typename T>
template <TieMode kMode>
void TieSubspace<T>::RunPass(T* p0,
                             const T* p1,
                             T* p2,
                             const TieStepScalars& s) const {
  T* __restrict a = p0;
  const T* __restrict b = p1;
  T* __restrict c = p2;
  auto run = [&](auto flags) {
    using Flags = decltype(flags);
    auto per_class = [=](std::int64_t, const auto& mem) {
      TieOps::Class<kMode>(mem, a, b, c, s, Flags());
    };
    auto per_zero = [=](const auto& mem) {
      Fill(T(0), a, mem);
      if constexpr (Flags::momentum) Fill(T(0), c, mem);
    };
    // Prefetch only the arrays the pass reads.
    if constexpr (kMode == TieMode::kStep) {
      Visit<false>(per_class, per_zero, {a, b, c});
    } else if constexpr (kMode == TieMode::kRetract) {
      Visit<false>(per_class, per_zero, {a, b});
    } else {
      Visit<false>(per_class, per_zero, {a});
    }
  };
  if constexpr (kMode == TieMode::kStep) {
    const TieFlags f = TieFlags::Of(s);
    WithFlags(f.momentum,
              f.decay,
              f.shared,
              [&](auto momentum_tag, auto decay_tag, auto shared_tag) {
                run(TieFixedFlags<decltype(momentum_tag)::value,
                                  decltype(decay_tag)::value,
                                  decltype(shared_tag)::value>());
              });
  } else {
    run(TieFixedFlags<false, false, false>());
  }
}

// The fused step: one visit of every class, reading x, g (and m) at each
// member once and writing x (and m) once. TieOps repeats StepComposed's
// arithmetic operation for operation (g + wd x in T; the same class means and
// sums; m = r + beta m; d = beta m + r; -lr d; mean(x) + step), so the two
// agree bitwise, and the CUDA kernels run the same TieOps.
template <typename T>
RetractReport TieSubspace<T>::StepImpl(View x,
                                       ConstView g,
                                       View m,
                                       const StepOptions& o) const {
  RunPass<TieMode::kStep>(x.data,
                          g.data,
                          o.momentum > 0.0 ? m.data : nullptr,
                          TieStepScalars::Of(o, metric_ == TieMetric::kShared));
  return {};
}

template class TieSubspace<float>;
template class TieSubspace<double>;

}  // namespace symopt
