// The one backend dispatch point (STYLE M4): Manifold<T>'s public wrappers
// hand Device::kCuda views here; this file picks the CUDA entry points
// (cuda/cuda_backend.h) for the manifold's kind. Without CUDA it throws
// NotCompiledError, and so does an operation or manifold kind that has no GPU
// path (naming both). It also holds the device side of MultiStep and the
// host-side layout of tie patterns for the kernels (backend/tie_plan.h).
#include "backend/dispatch.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <sstream>
#include <utility>

#include "backend/launch.h"
#include "backend/step_ops.h"
#include "backend/tie_plan.h"
#include "blas1.h"
#include "manifolds/device.h"
#include "manifolds/euclidean.h"
#include "manifolds/linear_subspace.h"
#include "manifolds/multi_step.h"
#include "manifolds/oblique.h"
#include "manifolds/product.h"
#include "manifolds/tie_subspace.h"
#include "manifolds/tied_oblique.h"
#include "symopt_config.h"
#if SYMOPT_WITH_CUDA
#include "cuda_backend.h"
#endif

namespace symopt {
namespace internal {

struct DeviceState {
  virtual ~DeviceState() = default;
};

// Builds a manifold's device state on first use, under its mutex, and shares
// it (the caller keeps the returned pointer alive while kernels use it).
struct DeviceStateAccess {
  template <typename T, typename Build>
  static std::shared_ptr<DeviceState> Get(const Manifold<T>& m, Build&& build) {
    std::lock_guard<std::mutex> lock(m.device_state_mutex_);
    if (!m.device_state_) m.device_state_ = build();
    return m.device_state_;
  }
};

}  // namespace internal

namespace backend {

// ---- tie pattern layout (host side, no CUDA)
// ----------------------------------

namespace {

// Row-periodic test: every class lies in one row and every row has row 0's
// partition (and zeros). local0[j] is the label (by first appearance) of
// column j's class in row 0, -1 for a zero.
bool RowPeriodic(const TiePattern& p,
                 std::vector<std::int32_t>* local0,
                 std::int32_t* row_classes) {
  const std::int64_t rows = p.rows, cols = p.cols;
  std::vector<std::int32_t> row_of(std::size_t(p.num_classes), -1);
  std::vector<std::int32_t> label(std::size_t(p.num_classes), -1);
  local0->assign(std::size_t(cols), -1);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int32_t next = 0;
    for (std::int64_t j = 0; j < cols; ++j) {
      const std::int32_t c = p.class_of[std::size_t(r * cols + j)];
      std::int32_t local = -1;
      if (c != TiePattern::kZero) {
        if (row_of[std::size_t(c)] < 0) {
          row_of[std::size_t(c)] = std::int32_t(r);
          label[std::size_t(c)] = next++;
        } else if (row_of[std::size_t(c)] != r) {
          return false;
        }
        local = label[std::size_t(c)];
      }
      if (r == 0) {
        (*local0)[std::size_t(j)] = local;
      } else if ((*local0)[std::size_t(j)] != local) {
        return false;
      }
    }
    if (r == 0) *row_classes = next;
  }
  return true;
}

int Category(std::int64_t size) {
  const int group = TieClassGroup(size);
  return group == 1 ? 0 : (group == 32 ? 1 : 2);
}

void AddToCategory(TieHostPlan* plan, int category, std::int64_t count) {
  (category == 0   ? plan->num_small
   : category == 1 ? plan->num_medium
                   : plan->num_large) += count;
}

}  // namespace

TieHostPlan BuildTieHostPlan(const TiePattern& pattern) {
  const std::int64_t n = pattern.rows * pattern.cols;
  const std::int32_t k = pattern.num_classes;
  TieHostPlan plan;
  plan.cols = pattern.cols;
  for (std::int64_t i = 0; i < n; ++i) {
    if (pattern.class_of[std::size_t(i)] == TiePattern::kZero) {
      plan.zeros.push_back(std::int32_t(i));
    }
  }
  std::vector<std::int32_t> local0;
  std::int32_t row_classes = 0;
  if (pattern.rows > 1 && k > 0 &&
      RowPeriodic(pattern, &local0, &row_classes)) {
    // Row 0's classes by label (= by first member), columns ascending.
    plan.row_classes = row_classes;
    std::vector<std::int32_t> count(static_cast<std::size_t>(row_classes), 0);
    std::vector<std::int32_t> first_col(static_cast<std::size_t>(row_classes),
                                        -1);
    for (std::int64_t j = 0; j < pattern.cols; ++j) {
      const std::int32_t c = local0[std::size_t(j)];
      if (c < 0) continue;
      if (first_col[std::size_t(c)] < 0)
        first_col[std::size_t(c)] = std::int32_t(j);
      ++count[std::size_t(c)];
    }
    plan.offsets.assign(std::size_t(row_classes) + 1, 0);
    std::int32_t largest = 0;
    for (std::int32_t c = 0; c < row_classes; ++c) {
      plan.offsets[std::size_t(c) + 1] =
          plan.offsets[std::size_t(c)] + count[std::size_t(c)];
      largest = std::max(largest, count[std::size_t(c)]);
    }
    plan.members.resize(std::size_t(plan.offsets.back()));
    std::vector<std::int32_t> next(plan.offsets.begin(),
                                   plan.offsets.end() - 1);
    for (std::int64_t j = 0; j < pattern.cols; ++j) {
      const std::int32_t c = local0[std::size_t(j)];
      if (c >= 0)
        plan.members[std::size_t(next[std::size_t(c)]++)] = std::int32_t(j);
    }
    plan.class_id.resize(std::size_t(k));
    for (std::int64_t q = 0; q < k; ++q) {
      const std::int64_t r = q / row_classes, c = q % row_classes;
      plan.class_id[std::size_t(q)] = pattern.class_of[std::size_t(
          r * pattern.cols + first_col[std::size_t(c)])];
    }
    // One launch for all classes, with the group of the largest.
    AddToCategory(&plan, Category(largest), k);
    return plan;
  }

  std::vector<std::int32_t> count(static_cast<std::size_t>(k), 0);
  std::vector<std::int32_t> first(static_cast<std::size_t>(k), -1);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t c = pattern.class_of[std::size_t(i)];
    if (c == TiePattern::kZero) continue;
    if (first[std::size_t(c)] < 0) first[std::size_t(c)] = std::int32_t(i);
    ++count[std::size_t(c)];
  }
  plan.class_id.resize(std::size_t(k));
  std::iota(plan.class_id.begin(), plan.class_id.end(), 0);
  std::sort(plan.class_id.begin(),
            plan.class_id.end(),
            [&](std::int32_t a, std::int32_t b) {
              const int ca = Category(count[std::size_t(a)]);
              const int cb = Category(count[std::size_t(b)]);
              if (ca != cb) return ca < cb;
              return first[std::size_t(a)] < first[std::size_t(b)];
            });
  std::vector<std::int32_t> position(static_cast<std::size_t>(k));
  plan.offsets.assign(std::size_t(k) + 1, 0);
  for (std::int32_t q = 0; q < k; ++q) {
    const std::int32_t c = plan.class_id[std::size_t(q)];
    position[std::size_t(c)] = q;
    plan.offsets[std::size_t(q) + 1] =
        plan.offsets[std::size_t(q)] + count[std::size_t(c)];
    AddToCategory(&plan, Category(count[std::size_t(c)]), 1);
  }
  // Contiguous when every member lies in [first, first + count) of its
  // class: then the members are exactly that run.
  plan.contiguous = true;
  for (std::int64_t i = 0; i < n && plan.contiguous; ++i) {
    const std::int32_t c = pattern.class_of[std::size_t(i)];
    if (c != TiePattern::kZero &&
        i - first[std::size_t(c)] >= count[std::size_t(c)]) {
      plan.contiguous = false;
    }
  }
  if (plan.contiguous) {
    plan.starts.resize(std::size_t(k));
    for (std::int32_t q = 0; q < k; ++q) {
      plan.starts[std::size_t(q)] =
          first[std::size_t(plan.class_id[std::size_t(q)])];
    }
  } else {
    plan.members.resize(std::size_t(plan.offsets.back()));
    std::vector<std::int32_t> next(plan.offsets.begin(),
                                   plan.offsets.end() - 1);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int32_t c = pattern.class_of[std::size_t(i)];
      if (c == TiePattern::kZero) continue;
      plan.members[std::size_t(next[std::size_t(position[std::size_t(c)])]++)] =
          std::int32_t(i);
    }
  }
  return plan;
}

namespace {

enum class Kind { kEuclidean, kOblique, kTie, kLinear, kTiedOblique, kOther };

template <typename T>
Kind KindOf(const Manifold<T>& m) {
  if (dynamic_cast<const Euclidean<T>*>(&m) != nullptr) return Kind::kEuclidean;
  if (dynamic_cast<const Oblique<T>*>(&m) != nullptr) return Kind::kOblique;
  if (dynamic_cast<const TieSubspace<T>*>(&m) != nullptr) return Kind::kTie;
  if (dynamic_cast<const LinearSubspace<T>*>(&m) != nullptr) {
    return Kind::kLinear;
  }
  if (dynamic_cast<const TiedOblique<T>*>(&m) != nullptr) {
    return Kind::kTiedOblique;
  }
  return Kind::kOther;
}

// A Product applies every operation part by part through the parts' public
// operations, which dispatch on the device themselves: it needs no kernel.
template <typename T>
const Product<T>* AsProduct(const Manifold<T>& m) {
  return dynamic_cast<const Product<T>*>(&m);
}

template <typename T>
void RequireKind(const Manifold<T>& m, const char* op) {
  if (KindOf(m) == Kind::kOther) Unsupported(m, op);
}

#if !SYMOPT_WITH_CUDA

[[noreturn]] void ThrowNoCuda(const std::string& who, const char* op) {
  throw NotCompiledError(who + ": " + op +
                         " got GPU views (Device::kCuda), but this build of "
                         "symopt has no CUDA backend (configure with "
                         "-DSYMOPT_WITH_CUDA=ON on a machine with nvcc)");
}

#else  // SYMOPT_WITH_CUDA

// Throws Error unless a device is present.
void RequireDevice(const std::string& who, const char* op) {
  if (cuda::DeviceCount() > 0) return;
  throw Error(
      who + ": " + op +
      " got GPU views (Device::kCuda), but no CUDA device is present (" +
      cuda::DeviceCountError() + ")");
}

// A kCuda view pointing to host memory would crash the kernel and poison the
// context: refuse it with a message instead.
void CheckDevicePointer(const std::string& who,
                        const char* op,
                        const void* data,
                        const char* name) {
  SYMOPT_CHECK(cuda::IsDevicePointer(data),
               who << ": " << op << ": " << name
                   << " is marked Device::kCuda but does not point to device "
                      "memory");
}

// The checks of every GPU operation; the manifold's description is formed
// only for a message (this runs on every step).
template <typename T>
void Prepare(const Manifold<T>& m,
             const char* op,
             std::initializer_list<std::pair<const void*, const char*>> views) {
  if (cuda::DeviceCount() == 0) RequireDevice(m.Describe(), op);
  for (const auto& [data, name] : views) {
    if (!cuda::IsDevicePointer(data)) {
      CheckDevicePointer(m.Describe(), op, data, name);
    }
  }
}

RetractReport ToReport(const cuda::HostRetractReport& r) {
  RetractReport report;
  report.collapsed_rows = r.collapsed_rows;
  report.first_collapsed_row =
      r.collapsed_rows > 0 ? r.first_collapsed_row : -1;
  return report;
}

template <typename T>
std::vector<T> Download(const DeviceBuffer<T>& b) {
  std::vector<T> host(static_cast<std::size_t>(b.size()));
  if (!host.empty()) b.CopyToHost(host.data());
  return host;
}

DeviceBuffer<std::int32_t> Upload(const std::vector<std::int32_t>& v) {
  DeviceBuffer<std::int32_t> b(std::int64_t(v.size()));
  if (!v.empty()) b.CopyFromHost(v.data());
  return b;
}

// The device copy of a tie pattern (cuda::TiePlan), one per TieSubspace,
// built on first use on the current device.
struct TieDeviceState : internal::DeviceState {
  DeviceBuffer<std::int32_t> offsets, members, starts, zeros;
  cuda::TiePlan plan;
};

template <typename T>
std::shared_ptr<internal::DeviceState> TieState(const TieSubspace<T>& tie) {
  return internal::DeviceStateAccess::Get(tie, [&tie] {
    const TieHostPlan h = BuildTieHostPlan(tie.Pattern());
    auto s = std::make_shared<TieDeviceState>();
    s->offsets = Upload(h.offsets);
    s->members = Upload(h.members);
    s->starts = Upload(h.starts);
    s->zeros = Upload(h.zeros);
    s->plan.d_offsets = s->offsets.data();
    s->plan.d_members = h.contiguous ? nullptr : s->members.data();
    s->plan.d_starts = h.contiguous ? s->starts.data() : nullptr;
    s->plan.d_zeros = s->zeros.data();
    s->plan.num_small = h.num_small;
    s->plan.num_medium = h.num_medium;
    s->plan.num_large = h.num_large;
    s->plan.num_zeros = std::int64_t(h.zeros.size());
    s->plan.row_classes = h.row_classes;
    s->plan.cols = h.cols;
    return std::shared_ptr<internal::DeviceState>(std::move(s));
  });
}

// One per-class pass over a tie pattern.
template <typename T>
void RunTie(const Manifold<T>& m,
            TieMode mode,
            T* a,
            const T* b,
            T* c,
            const TieStepScalars& s) {
  const auto& tie = static_cast<const TieSubspace<T>&>(m);
  const std::shared_ptr<internal::DeviceState> state = TieState(tie);
  cuda::TiePass<T>(static_cast<const TieDeviceState&>(*state).plan,
                   mode,
                   a,
                   b,
                   c,
                   s,
                   nullptr);
}

// The device copy of a linear subspace's basis, its scratch and cuBLAS
// handle. The mutex orders calls from several host threads (they share the
// scratch; the work itself is ordered on the default stream).
struct LinearDeviceState : internal::DeviceState {
  DeviceBuffer<double> basis, scratch;
  void* cublas = nullptr;
  std::mutex mutex;
  cuda::LinearPlan plan;
  ~LinearDeviceState() override { cuda::CublasDestroy(cublas); }
};

template <typename T, typename F>
void RunLinear(const Manifold<T>& m, F&& f) {
  const auto& linear = static_cast<const LinearSubspace<T>&>(m);
  const std::shared_ptr<internal::DeviceState> state =
      internal::DeviceStateAccess::Get(linear, [&linear] {
        auto s = std::make_shared<LinearDeviceState>();
        const std::vector<double>& b = linear.Basis();
        s->basis = DeviceBuffer<double>(std::int64_t(b.size()));
        if (!b.empty()) s->basis.CopyFromHost(b.data());
        s->scratch =
            DeviceBuffer<double>(linear.AmbientSize() + 3 * linear.Dim());
        s->cublas = cuda::CublasCreate();
        s->plan.d_basis = s->basis.data();
        s->plan.d_scratch = s->scratch.data();
        s->plan.cublas = s->cublas;
        s->plan.n = linear.AmbientSize();
        s->plan.k = linear.Dim();
        return std::shared_ptr<internal::DeviceState>(std::move(s));
      });
  auto& s = static_cast<LinearDeviceState&>(*state);
  std::lock_guard<std::mutex> lock(s.mutex);
  f(s.plan);
}

// ---- TiedOblique: its CSR layout in device memory, one per manifold, built
// on first use on the current device.
struct TiedObliqueDeviceState : internal::DeviceState {
  DeviceBuffer<std::int64_t> row_start, member_start;
  DeviceBuffer<std::int32_t> members, zeros;
  cuda::TiedObliquePlan plan;
};

template <typename T>
DeviceBuffer<T> UploadVector(const std::vector<T>& v) {
  DeviceBuffer<T> b(std::int64_t(v.size()));
  if (!v.empty()) b.CopyFromHost(v.data());
  return b;
}

// The plan of m (a TiedOblique) and a shared pointer keeping it alive.
template <typename T>
std::shared_ptr<internal::DeviceState> TiedObliqueState(const Manifold<T>& m) {
  const auto& to = static_cast<const TiedOblique<T>&>(m);
  return internal::DeviceStateAccess::Get(to, [&to] {
    auto s = std::make_shared<TiedObliqueDeviceState>();
    s->row_start = UploadVector(to.RowStart());
    s->member_start = UploadVector(to.MemberStart());
    s->members = UploadVector(to.Members());
    s->zeros = UploadVector(to.ZeroMembers());
    s->plan.layout.row_start = s->row_start.data();
    s->plan.layout.member_start = s->member_start.data();
    s->plan.layout.members = s->members.data();
    s->plan.layout.rows = to.rows();
    s->plan.d_zeros = s->zeros.data();
    s->plan.num_zeros = std::int64_t(to.ZeroMembers().size());
    return std::shared_ptr<internal::DeviceState>(std::move(s));
  });
}

const cuda::TiedObliquePlan& PlanOf(
    const std::shared_ptr<internal::DeviceState>& state) {
  return static_cast<const TiedObliqueDeviceState&>(*state).plan;
}

template <typename T>
double TiedTol(const Manifold<T>& m) {
  return static_cast<const TiedOblique<T>&>(m).collapse_tolerance();
}

#endif  // SYMOPT_WITH_CUDA

}  // namespace

template <typename T>
[[noreturn]] void Unsupported(const Manifold<T>& manifold,
                              const std::string& operation) {
  throw NotCompiledError(
      manifold.Describe() + ": " + operation +
      " has no GPU implementation (the views are Device::kCuda); the CUDA "
      "backend covers ProjectPoint, Project, EgradToRgrad, Retract, "
      "Transport and Step of euclidean, oblique, tie_subspace, "
      "linear_subspace, tied_oblique and products of them (docs/cuda.md)");
}

template <typename T>
void ProjectPoint(const Manifold<T>& m, [[maybe_unused]] TensorView<T> x) {
  if (const Product<T>* p = AsProduct(m)) {
    for (std::int64_t i = 0; i < p->NumParts(); ++i) {
      p->part(i).ProjectPoint(p->Block(x, i));
    }
    return;
  }
  RequireKind(m, "ProjectPoint");
#if !SYMOPT_WITH_CUDA
  ThrowNoCuda(m.Describe(), "ProjectPoint");
#else
  Prepare(m, "ProjectPoint", {{x.data, "x"}});
  switch (KindOf(m)) {
    case Kind::kEuclidean:
      return;
    case Kind::kOblique: {
      // Refuse a non-finite row before anything is written (as the CPU).
      const std::int64_t bad = cuda::FirstNonFinite(x.data, x.size(), nullptr);
      SYMOPT_CHECK(bad < 0,
                   m.Describe()
                       << ": ProjectPoint: row " << bad / x.cols
                       << " has a non-finite entry at column " << bad % x.cols);
      cuda::ObliqueProjectPoint(x.data, x.rows, x.cols, nullptr);
      return;
    }
    case Kind::kTie:
      RunTie<T>(m, TieMode::kMean, x.data, nullptr, nullptr, {});
      return;
    case Kind::kLinear:
      RunLinear(m, [&](const cuda::LinearPlan& p) {
        cuda::LinearProject(p, x.data, nullptr);
      });
      return;
    case Kind::kTiedOblique: {
      // Refuse a non-finite entry before anything is written (as the CPU).
      const std::int64_t bad = cuda::FirstNonFinite(x.data, x.size(), nullptr);
      SYMOPT_CHECK(bad < 0,
                   m.Describe() << ": ProjectPoint: entry (" << bad / x.cols
                                << ", " << bad % x.cols << ") is not finite");
      const auto state = TiedObliqueState(m);
      cuda::TiedObliqueProjectPoint(PlanOf(state), x.data, TiedTol(m), nullptr);
      return;
    }
    case Kind::kOther:
      break;
  }
  Unsupported(m, "ProjectPoint");
#endif
}

template <typename T>
void Project(const Manifold<T>& m,
             [[maybe_unused]] TensorView<const T> x,
             [[maybe_unused]] TensorView<T> u) {
  if (const Product<T>* p = AsProduct(m)) {
    for (std::int64_t i = 0; i < p->NumParts(); ++i) {
      p->part(i).Project(p->Block(x, i), p->Block(u, i));
    }
    return;
  }
  RequireKind(m, "Project");
#if !SYMOPT_WITH_CUDA
  ThrowNoCuda(m.Describe(), "Project");
#else
  Prepare(m, "Project", {{x.data, "x"}, {u.data, "u"}});
  switch (KindOf(m)) {
    case Kind::kEuclidean:
      return;
    case Kind::kOblique:
      cuda::ObliqueProject(x.data, u.data, x.rows, x.cols, nullptr);
      return;
    case Kind::kTie:
      RunTie<T>(m, TieMode::kMean, u.data, nullptr, nullptr, {});
      return;
    case Kind::kLinear:
      RunLinear(m, [&](const cuda::LinearPlan& p) {
        cuda::LinearProject(p, u.data, nullptr);
      });
      return;
    case Kind::kTiedOblique: {
      const auto state = TiedObliqueState(m);
      cuda::TiedObliqueProject(PlanOf(state), x.data, u.data, nullptr);
      return;
    }
    case Kind::kOther:
      break;
  }
  Unsupported(m, "Project");
#endif
}

template <typename T>
void EgradToRgrad(const Manifold<T>& m,
                  [[maybe_unused]] TensorView<const T> x,
                  [[maybe_unused]] TensorView<T> g) {
  if (const Product<T>* p = AsProduct(m)) {
    for (std::int64_t i = 0; i < p->NumParts(); ++i) {
      p->part(i).EgradToRgrad(p->Block(x, i), p->Block(g, i));
    }
    return;
  }
  RequireKind(m, "EgradToRgrad");
#if !SYMOPT_WITH_CUDA
  ThrowNoCuda(m.Describe(), "EgradToRgrad");
#else
  Prepare(m, "EgradToRgrad", {{x.data, "x"}, {g.data, "g"}});
  switch (KindOf(m)) {
    case Kind::kEuclidean:
      return;
    case Kind::kOblique:
      cuda::ObliqueProject(x.data, g.data, x.rows, x.cols, nullptr);
      return;
    case Kind::kTie: {
      const bool shared =
          static_cast<const TieSubspace<T>&>(m).metric() == TieMetric::kShared;
      RunTie<T>(m,
                shared ? TieMode::kSum : TieMode::kMean,
                g.data,
                nullptr,
                nullptr,
                {});
      return;
    }
    case Kind::kLinear:
      RunLinear(m, [&](const cuda::LinearPlan& p) {
        cuda::LinearProject(p, g.data, nullptr);
      });
      return;
    case Kind::kTiedOblique: {
      const auto state = TiedObliqueState(m);
      cuda::TiedObliqueProject(PlanOf(state), x.data, g.data, nullptr);
      return;
    }
    case Kind::kOther:
      break;
  }
  Unsupported(m, "EgradToRgrad");
#endif
}

template <typename T>
RetractReport Retract(const Manifold<T>& m,
                      [[maybe_unused]] TensorView<T> x,
                      [[maybe_unused]] TensorView<const T> v) {
  if (const Product<T>* p = AsProduct(m)) {
    RetractReport report;
    for (std::int64_t i = 0; i < p->NumParts(); ++i) {
      report.Merge(p->part(i).Retract(p->Block(x, i), p->Block(v, i)),
                   p->RowOffset(i));
    }
    return report;
  }
  RequireKind(m, "Retract");
#if !SYMOPT_WITH_CUDA
  ThrowNoCuda(m.Describe(), "Retract");
#else
  Prepare(m, "Retract", {{x.data, "x"}, {v.data, "v"}});
  switch (KindOf(m)) {
    case Kind::kEuclidean:
      cuda::AddInPlace(x.data, v.data, x.size(), nullptr);
      return {};
    case Kind::kOblique: {
      const double tol = static_cast<const Oblique<T>&>(m).collapse_tol();
      return ToReport(
          cuda::RunWithReport(nullptr, [&](cuda::DeviceRetractReport* r) {
            cuda::ObliqueRetract(
                x.data, v.data, x.rows, x.cols, tol, r, nullptr);
          }));
    }
    case Kind::kTie:
      RunTie<T>(m, TieMode::kRetract, x.data, v.data, nullptr, {});
      return {};
    case Kind::kLinear:
      RunLinear(m, [&](const cuda::LinearPlan& p) {
        cuda::LinearRetract(p, x.data, v.data, nullptr);
      });
      return {};
    case Kind::kTiedOblique: {
      const auto state = TiedObliqueState(m);
      return ToReport(
          cuda::RunWithReport(nullptr, [&](cuda::DeviceRetractReport* r) {
            cuda::TiedObliqueRetract(
                PlanOf(state), x.data, v.data, TiedTol(m), r, nullptr);
          }));
    }
    case Kind::kOther:
      break;
  }
  Unsupported(m, "Retract");
#endif
}

template <typename T>
void Transport(const Manifold<T>& m,
               [[maybe_unused]] TensorView<const T> x_old,
               [[maybe_unused]] TensorView<const T> x_new,
               [[maybe_unused]] TensorView<T> v) {
  if (const Product<T>* p = AsProduct(m)) {
    for (std::int64_t i = 0; i < p->NumParts(); ++i) {
      p->part(i).Transport(
          p->Block(x_old, i), p->Block(x_new, i), p->Block(v, i));
    }
    return;
  }
  RequireKind(m, "Transport");
#if !SYMOPT_WITH_CUDA
  ThrowNoCuda(m.Describe(), "Transport");
#else
  Prepare(m,
          "Transport",
          {{x_old.data, "x_old"}, {x_new.data, "x_new"}, {v.data, "v"}});
  switch (KindOf(m)) {
    case Kind::kEuclidean:
    case Kind::kTie:
    case Kind::kLinear:
      return;  // the identity on a linear space
    case Kind::kOblique:
      cuda::ObliqueProject(x_new.data, v.data, x_new.rows, x_new.cols, nullptr);
      return;
    case Kind::kTiedOblique: {
      const auto state = TiedObliqueState(m);
      cuda::TiedObliqueProject(PlanOf(state), x_new.data, v.data, nullptr);
      return;
    }
    case Kind::kOther:
      break;
  }
  Unsupported(m, "Transport");
#endif
}

template <typename T>
RetractReport Step(const Manifold<T>& m,
                   [[maybe_unused]] TensorView<T> x,
                   [[maybe_unused]] TensorView<const T> g,
                   [[maybe_unused]] TensorView<T> mom,
                   [[maybe_unused]] const StepOptions& o) {
  if (const Product<T>* p = AsProduct(m)) {
    const bool momentum = o.momentum > 0.0;
    RetractReport report;
    for (std::int64_t i = 0; i < p->NumParts(); ++i) {
      report.Merge(
          p->part(i).Step(p->Block(x, i),
                          p->Block(g, i),
                          momentum ? p->Block(mom, i) : TensorView<T>(),
                          o),
          p->RowOffset(i));
    }
    return report;
  }
  RequireKind(m, "Step");
#if !SYMOPT_WITH_CUDA
  ThrowNoCuda(m.Describe(), "Step");
#else
  const bool has_m = o.momentum > 0.0;
  if (has_m) {
    Prepare(
        m,
        "Step",
        {{x.data, "x"}, {g.data, "gradient"}, {mom.data, "momentum buffer"}});
  } else {
    Prepare(m, "Step", {{x.data, "x"}, {g.data, "gradient"}});
  }
  T* d_m = has_m ? mom.data : nullptr;
  switch (KindOf(m)) {
    case Kind::kEuclidean:
      cuda::EuclideanStep(x.data, g.data, d_m, x.size(), o, nullptr);
      return {};
    case Kind::kOblique: {
      const double tol = static_cast<const Oblique<T>&>(m).collapse_tol();
      return ToReport(
          cuda::RunWithReport(nullptr, [&](cuda::DeviceRetractReport* r) {
            cuda::ObliqueStep(
                x.data, g.data, d_m, x.rows, x.cols, o, tol, r, nullptr);
          }));
    }
    case Kind::kTie: {
      const bool shared =
          static_cast<const TieSubspace<T>&>(m).metric() == TieMetric::kShared;
      RunTie<T>(m,
                TieMode::kStep,
                x.data,
                g.data,
                d_m,
                TieStepScalars::Of(o, shared));
      return {};
    }
    case Kind::kLinear:
      RunLinear(m, [&](const cuda::LinearPlan& p) {
        cuda::LinearStep(p, x.data, g.data, d_m, o, nullptr);
      });
      return {};
    case Kind::kTiedOblique: {
      const auto state = TiedObliqueState(m);
      return ToReport(
          cuda::RunWithReport(nullptr, [&](cuda::DeviceRetractReport* r) {
            cuda::TiedObliqueStep(
                PlanOf(state), x.data, g.data, d_m, o, TiedTol(m), r, nullptr);
          }));
    }
    case Kind::kOther:
      break;
  }
  Unsupported(m, "Step");
#endif
}

#define SYMOPT_INSTANTIATE_DISPATCH(T)                                  \
  template void Unsupported<T>(const Manifold<T>&, const std::string&); \
  template void ProjectPoint<T>(const Manifold<T>&, TensorView<T>);     \
  template void Project<T>(                                             \
      const Manifold<T>&, TensorView<const T>, TensorView<T>);          \
  template void EgradToRgrad<T>(                                        \
      const Manifold<T>&, TensorView<const T>, TensorView<T>);          \
  template RetractReport Retract<T>(                                    \
      const Manifold<T>&, TensorView<T>, TensorView<const T>);          \
  template void Transport<T>(const Manifold<T>&,                        \
                             TensorView<const T>,                       \
                             TensorView<const T>,                       \
                             TensorView<T>);                            \
  template RetractReport Step<T>(const Manifold<T>&,                    \
                                 TensorView<T>,                         \
                                 TensorView<const T>,                   \
                                 TensorView<T>,                         \
                                 const StepOptions&);

SYMOPT_INSTANTIATE_DISPATCH(float)
SYMOPT_INSTANTIATE_DISPATCH(double)
#undef SYMOPT_INSTANTIATE_DISPATCH

}  // namespace backend

// ---- FirstNonFinite (manifolds/device.h)
// ----------------------------------------

template <typename T>
std::int64_t FirstNonFinite(TensorView<const T> v) {
  SYMOPT_CHECK(v.data != nullptr || v.size() == 0,
               "FirstNonFinite: null view " << v);
  if (v.device == Device::kCpu) return cpu::FirstNonFinite(v.data, v.size());
#if !SYMOPT_WITH_CUDA
  throw NotCompiledError(
      "FirstNonFinite got a GPU view (Device::kCuda), but this build of "
      "symopt has no CUDA backend");
#else
  backend::RequireDevice("FirstNonFinite", "screen");
  if (v.size() == 0) return -1;
  backend::CheckDevicePointer("FirstNonFinite", "screen", v.data, "the view");
  return cuda::FirstNonFinite(v.data, v.size(), nullptr);
#endif
}

template std::int64_t FirstNonFinite<float>(TensorView<const float>);
template std::int64_t FirstNonFinite<double>(TensorView<const double>);

// ---- MultiStep (manifolds/multi_step.h)
// -------------------------------------------

template <typename T>
struct MultiStep<T>::DeviceData {
#if SYMOPT_WITH_CUDA
  bool oblique = false;
  DeviceBuffer<cuda::ObliqueTensor<T>> oblique_tensors;
  DeviceBuffer<cuda::EuclideanTensor<T>> euclidean_tensors;
  DeviceBuffer<std::int64_t> first;  // prefix sums of rows or chunks
  DeviceBuffer<cuda::DeviceRetractReport> reports;
  std::int64_t total = 0;  // rows or chunks
  int group = 0;           // threads per oblique row
#endif
};

namespace {

// Throws InvalidArgument when two of the ranges [p, p + n) overlap.
template <typename T>
void CheckDisjoint(std::vector<std::pair<const T*, std::int64_t>> ranges,
                   const char* what) {
  std::vector<std::pair<std::uintptr_t, std::int64_t>> r;
  for (const auto& [p, n] : ranges) {
    if (p != nullptr && n > 0)
      r.emplace_back(reinterpret_cast<std::uintptr_t>(p), n);
  }
  std::sort(r.begin(), r.end());
  for (std::size_t i = 1; i < r.size(); ++i) {
    SYMOPT_CHECK(r[i - 1].first + std::uintptr_t(r[i - 1].second) * sizeof(T) <=
                     r[i].first,
                 "MultiStep: two tensors' " << what << " overlap");
  }
}

}  // namespace

template <typename T>
MultiStep<T>::MultiStep(std::vector<StepTensor<T>> tensors, bool with_momentum)
    : tensors_(std::move(tensors)), with_momentum_(with_momentum) {
  SYMOPT_CHECK(!tensors_.empty(), "MultiStep needs at least one tensor");
  device_ = tensors_[0].x.device;
  std::vector<std::pair<const T*, std::int64_t>> xs, ms;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const StepTensor<T>& t = tensors_[i];
    SYMOPT_CHECK(t.manifold != nullptr,
                 "MultiStep: tensor " << i << " has no manifold");
    const Manifold<T>& m = *t.manifold;
    auto check = [&](const auto& v, const char* name) {
      SYMOPT_CHECK(
          v.data != nullptr && v.rows == m.rows() && v.cols == m.cols(),
          "MultiStep: tensor "
              << i << " (" << m.Describe() << "): " << name << " is " << v
              << (v.data == nullptr ? " and null" : "") << ", expected "
              << m.rows() << "x" << m.cols());
      SYMOPT_CHECK(v.device == device_,
                   "MultiStep: tensor " << i << ": " << name << " is on the "
                                        << DeviceName(v.device)
                                        << ", tensor 0 on the "
                                        << DeviceName(device_));
    };
    check(t.x, "x");
    check(t.g, "gradient");
    if (with_momentum_) check(t.m, "momentum buffer");
    xs.emplace_back(t.x.data, t.x.size());
    if (with_momentum_) ms.emplace_back(t.m.data, t.m.size());
  }
  CheckDisjoint(xs, "points x");
  CheckDisjoint(ms, "momentum buffers");
  if (device_ == Device::kCpu) return;

  using backend::Kind;
  const Kind kind = backend::KindOf(*tensors_[0].manifold);
  if (kind != Kind::kEuclidean && kind != Kind::kOblique) {
    throw NotCompiledError("MultiStep: " + tensors_[0].manifold->Describe() +
                           " has no multi-tensor GPU step (euclidean and "
                           "oblique only); step it with Manifold::Step");
  }
  for (std::size_t i = 1; i < tensors_.size(); ++i) {
    SYMOPT_CHECK(backend::KindOf(*tensors_[i].manifold) == kind,
                 "MultiStep: tensor "
                     << i << " is " << tensors_[i].manifold->Describe()
                     << ", tensor 0 " << tensors_[0].manifold->Describe()
                     << "; one launch steps one kind");
  }
#if !SYMOPT_WITH_CUDA
  backend::ThrowNoCuda("MultiStep", "the constructor");
#else
  backend::RequireDevice("MultiStep", "the constructor");
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const std::string who = "MultiStep tensor " + std::to_string(i);
    backend::CheckDevicePointer(who, "constructor", tensors_[i].x.data, "x");
    backend::CheckDevicePointer(
        who, "constructor", tensors_[i].g.data, "gradient");
    if (with_momentum_) {
      backend::CheckDevicePointer(
          who, "constructor", tensors_[i].m.data, "momentum buffer");
    }
  }
  auto data = std::make_unique<DeviceData>();
  const int count = int(tensors_.size());
  std::vector<std::int64_t> first(std::size_t(count) + 1, 0);
  data->oblique = kind == Kind::kOblique;
  if (data->oblique) {
    data->reports = DeviceBuffer<cuda::DeviceRetractReport>(count);
    std::vector<cuda::ObliqueTensor<T>> host(static_cast<std::size_t>(count));
    std::int64_t widest = 1;
    for (int i = 0; i < count; ++i) {
      const StepTensor<T>& t = tensors_[std::size_t(i)];
      host[std::size_t(i)] = {
          t.x.data,
          t.g.data,
          with_momentum_ ? t.m.data : nullptr,
          t.x.cols,
          double(static_cast<const Oblique<T>&>(*t.manifold).collapse_tol()),
          data->reports.data() + i};
      first[std::size_t(i) + 1] = first[std::size_t(i)] + t.x.rows;
      widest = std::max(widest, t.x.cols);
    }
    data->group = backend::ObliqueRowGroup(widest);
    data->oblique_tensors = DeviceBuffer<cuda::ObliqueTensor<T>>(count);
    data->oblique_tensors.CopyFromHost(host.data());
  } else {
    std::vector<cuda::EuclideanTensor<T>> host(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
      const StepTensor<T>& t = tensors_[std::size_t(i)];
      host[std::size_t(i)] = {
          t.x.data, t.g.data, with_momentum_ ? t.m.data : nullptr, t.x.size()};
      first[std::size_t(i) + 1] =
          first[std::size_t(i)] + backend::ChunksFor(t.x.size());
    }
    data->euclidean_tensors = DeviceBuffer<cuda::EuclideanTensor<T>>(count);
    data->euclidean_tensors.CopyFromHost(host.data());
  }
  data->total = first.back();
  data->first = DeviceBuffer<std::int64_t>(count + 1);
  data->first.CopyFromHost(first.data());
  device_data_ = std::move(data);
#endif
}

template <typename T>
MultiStep<T>::~MultiStep() = default;

template <typename T>
std::vector<RetractReport> MultiStep<T>::Step(const StepOptions& options) {
  std::string error;
  SYMOPT_CHECK(options.IsValid(&error), "MultiStep: " << error);
  SYMOPT_CHECK(options.momentum == 0.0 || with_momentum_,
               "MultiStep: momentum " << options.momentum
                                      << " needs momentum buffers, and this "
                                         "MultiStep was built without");
  std::vector<RetractReport> reports(tensors_.size());
  if (device_ == Device::kCpu) {
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const StepTensor<T>& t = tensors_[i];
      reports[i] = t.manifold->Step(t.x, t.g, t.m, options);
    }
    return reports;
  }
#if SYMOPT_WITH_CUDA
  DeviceData& d = *device_data_;
  const int count = int(tensors_.size());
  if (!d.oblique) {
    cuda::EuclideanMultiStep(d.euclidean_tensors.data(),
                             d.first.data(),
                             count,
                             d.total,
                             options,
                             nullptr);
    return reports;
  }
  cuda::ResetReports(d.reports.data(), count, nullptr);
  cuda::ObliqueMultiStep(d.oblique_tensors.data(),
                         d.first.data(),
                         count,
                         d.total,
                         d.group,
                         options,
                         nullptr);
  const std::vector<cuda::DeviceRetractReport> host =
      backend::Download(d.reports);
  for (int i = 0; i < count; ++i) {
    cuda::HostRetractReport r;
    r.collapsed_rows = (long long)host[std::size_t(i)].collapsed_rows;
    r.first_collapsed_row = host[std::size_t(i)].first_collapsed_row;
    reports[std::size_t(i)] = backend::ToReport(r);
  }
#endif
  return reports;
}

template class MultiStep<float>;
template class MultiStep<double>;

}  // namespace symopt
