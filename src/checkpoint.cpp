#include "optim/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <utility>

#include "blas1.h"
#include "file_io.h"

namespace symopt {

namespace {

constexpr char kMagic[8] = {'S', 'Y', 'M', 'O', 'P', 'T', 'C', 'K'};

enum class Role : std::uint32_t {
  kOptimizer = 1,
  kValue = 2,
  kMomentum = 3,
  kBoldDriver = 4,
  kSnapshotValue = 5,
  kSnapshotMomentum = 6,
  kPlateau = 7,
  kStopping = 8,
};

const char* RoleName(std::uint32_t role) {
  switch (Role(role)) {
    case Role::kOptimizer:
      return "optimizer";
    case Role::kValue:
      return "value";
    case Role::kMomentum:
      return "momentum";
    case Role::kBoldDriver:
      return "bold_driver";
    case Role::kSnapshotValue:
      return "bold_driver_snapshot_value";
    case Role::kSnapshotMomentum:
      return "bold_driver_snapshot_momentum";
    case Role::kPlateau:
      return "plateau";
    case Role::kStopping:
      return "stopping";
  }
  return nullptr;
}

enum class DType : std::uint32_t { kFloat32 = 1, kFloat64 = 2, kInt64 = 3 };

const char* DTypeName(std::uint32_t d) {
  switch (DType(d)) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
    case DType::kInt64:
      return "int64";
  }
  return nullptr;
}

std::size_t DTypeSize(std::uint32_t d) { return d == 1 ? 4 : 8; }

template <typename T>
constexpr DType DTypeOf();
template <>
constexpr DType DTypeOf<float>() {
  return DType::kFloat32;
}
template <>
constexpr DType DTypeOf<double>() {
  return DType::kFloat64;
}
template <>
constexpr DType DTypeOf<std::int64_t>() {
  return DType::kInt64;
}

std::string Prefix(const std::string& path) {
  return "checkpoint '" + path + "': ";
}

[[noreturn]] void Corrupt(const std::string& path, const std::string& what) {
  throw FileError(Prefix(path) + what);
}

[[noreturn]] void Mismatch(const std::string& path, const std::string& what) {
  throw InvalidArgument(Prefix(path) + what);
}

// ---- Writing ----------------------------------------------------------------

class Writer : public internal::ByteWriter {
 public:
  // One record; data holds rows * cols values of U.
  template <typename U>
  void Block(Role role,
             const std::string& name,
             const std::string& kind,
             std::int64_t rows,
             std::int64_t cols,
             const U* data) {
    Put(std::uint32_t(role));
    PutString(name);
    PutString(kind);
    Put(rows);
    Put(cols);
    Put(std::uint32_t(DTypeOf<U>()));
    const std::uint64_t n = std::uint64_t(rows * cols) * sizeof(U);
    Put(n);
    PutRaw(data, n);
    ++records_;
  }
  template <typename U>
  void Scalars(Role role, const std::string& name, const std::vector<U>& v) {
    Block(role, name, "state", 1, std::int64_t(v.size()), v.data());
  }
  std::uint32_t records() const { return records_; }

 private:
  std::uint32_t records_ = 0;
};

// ---- Reading ----------------------------------------------------------------

struct Record {
  std::uint32_t role = 0;
  std::string name;
  std::string kind;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::uint32_t dtype = 0;
  const std::uint8_t* data = nullptr;
  std::uint64_t bytes = 0;

  std::string What() const {
    const char* r = RoleName(role);
    return std::string(r ? r : "?") + " record '" + name + "'";
  }
};

std::vector<std::uint8_t> ReadFile(const std::string& path) {
  return internal::ReadWholeFile(path, Prefix(path));
}

// Checks the envelope (size, magic, version, length, CRC) and parses the
// records. Records point into `bytes`.
std::vector<Record> Parse(const std::string& path,
                          const std::vector<std::uint8_t>& bytes) {
  const internal::Envelope envelope = internal::OpenEnvelope(
      bytes, kMagic, "checkpoint", kCheckpointVersion, Prefix(path));
  const std::uint32_t count = envelope.word;
  internal::ByteReader in(envelope, Prefix(path), "record section");
  std::vector<Record> records;
  for (std::uint32_t k = 0; k < count; ++k) {
    Record r;
    r.role = in.Get<std::uint32_t>("record role");
    r.name = in.GetString("record name");
    r.kind = in.GetString("record kind");
    r.rows = in.Get<std::int64_t>("record rows");
    r.cols = in.Get<std::int64_t>("record cols");
    r.dtype = in.Get<std::uint32_t>("record dtype");
    r.bytes = in.Get<std::uint64_t>("record payload length");
    if (RoleName(r.role) == nullptr) {
      Corrupt(path,
              "record " + std::to_string(k) + " ('" + r.name +
                  "') has unknown role " + std::to_string(r.role));
    }
    if (DTypeName(r.dtype) == nullptr) {
      Corrupt(path, r.What() + " has unknown dtype " + std::to_string(r.dtype));
    }
    if (r.rows < 0 || r.cols < 0 ||
        (r.cols > 0 && r.rows > (1LL << 40) / r.cols) ||
        std::uint64_t(r.rows * r.cols) * DTypeSize(r.dtype) != r.bytes) {
      std::ostringstream os;
      os << r.What() << ": shape " << r.rows << "x" << r.cols
         << " does not match its payload of " << r.bytes << " bytes";
      Corrupt(path, os.str());
    }
    r.data = in.Skip(r.bytes, "record payload");
    records.push_back(std::move(r));
  }
  if (!in.done()) {
    Corrupt(path,
            "the record section has bytes after its " + std::to_string(count) +
                " records");
  }
  return records;
}

// Records by (role, name).
class RecordIndex {
 public:
  RecordIndex(const std::string& path, const std::vector<Record>& records)
      : path_(path) {
    for (const Record& r : records) {
      if (!index_.emplace(std::make_pair(r.role, r.name), &r).second) {
        Corrupt(path, "duplicate " + r.What());
      }
    }
  }
  const Record* Find(Role role, const std::string& name) const {
    const auto it = index_.find({std::uint32_t(role), name});
    return it == index_.end() ? nullptr : it->second;
  }
  // A state record that must exist, with the given dtype and entry count.
  template <typename U>
  std::vector<U> Scalars(Role role,
                         const std::string& name,
                         std::int64_t count) const {
    const Record* r = Find(role, name);
    if (r == nullptr) {
      Mismatch(path_,
               std::string("has no ") + RoleName(std::uint32_t(role)) +
                   " record '" + name + "'");
    }
    if (r->dtype != std::uint32_t(DTypeOf<U>()) ||
        (count >= 0 && r->rows * r->cols != count)) {
      std::ostringstream os;
      os << r->What() << " is " << DTypeName(r->dtype) << " " << r->rows << "x"
         << r->cols << ", expected " << DTypeName(std::uint32_t(DTypeOf<U>()))
         << " with " << count << " entries";
      Corrupt(path_, os.str());
    }
    std::vector<U> v(std::size_t(r->rows * r->cols));
    if (!v.empty()) std::memcpy(v.data(), r->data, r->bytes);
    return v;
  }
  std::vector<const Record*> WithRole(Role role) const {
    std::vector<const Record*> out;
    for (const auto& [key, r] : index_) {
      if (key.first == std::uint32_t(role)) out.push_back(r);
    }
    return out;
  }

 private:
  const std::string& path_;
  std::map<std::pair<std::uint32_t, std::string>, const Record*> index_;
};

// ---- Parameter blocks ------------------------------------------------------

template <typename T>
void WriteBlocks(Writer& w,
                 const RiemannianSgd<T>& opt,
                 Role value_role,
                 Role momentum_role,
                 const std::vector<std::vector<T>>& values,
                 const std::vector<std::vector<T>>& momentum) {
  const auto& params = opt.params();
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Parameter<T>& p = params[i];
    const std::string kind = p.manifold->Name();
    w.Block(
        value_role, p.name, kind, p.value.rows, p.value.cols, values[i].data());
    if (!momentum[i].empty()) {
      w.Block(momentum_role,
              p.name,
              kind,
              p.value.rows,
              p.value.cols,
              momentum[i].data());
    }
  }
}

// Decodes one parameter's block of `role`, checking kind, shape and dtype
// against the optimizer's parameter, and finiteness.
template <typename T>
std::vector<T> DecodeBlock(const std::string& path,
                           const Record& r,
                           const Parameter<T>& p) {
  const Manifold<T>& m = *p.manifold;
  if (r.kind != m.Name()) {
    Mismatch(path,
             r.What() + " is on a '" + r.kind +
                 "' manifold in the file but on " + m.Describe() +
                 " in the optimizer");
  }
  if (r.rows != p.value.rows || r.cols != p.value.cols) {
    std::ostringstream os;
    os << r.What() << " has shape " << r.rows << "x" << r.cols
       << " in the file but " << p.value.rows << "x" << p.value.cols
       << " in the optimizer";
    Mismatch(path, os.str());
  }
  if (r.dtype != std::uint32_t(DTypeOf<T>())) {
    Mismatch(path,
             r.What() + " is " + DTypeName(r.dtype) +
                 " in the file but the optimizer uses " +
                 DTypeName(std::uint32_t(DTypeOf<T>())));
  }
  std::vector<T> v(std::size_t(r.rows * r.cols));
  std::memcpy(v.data(), r.data, r.bytes);
  const std::int64_t bad =
      cpu::FirstNonFinite(v.data(), std::int64_t(v.size()));
  if (bad >= 0) {
    Mismatch(path,
             r.What() + " has a non-finite entry at flat index " +
                 std::to_string(bad));
  }
  return v;
}

// Reads value and momentum blocks of every parameter (by name) and checks
// them: points on their manifolds, momentum in the tangent space at them and
// present exactly where the optimizer keeps momentum.
template <typename T>
void ReadBlocks(const std::string& path,
                const RecordIndex& index,
                const RiemannianSgd<T>& opt,
                Role value_role,
                Role momentum_role,
                std::vector<std::vector<T>>* values,
                std::vector<std::vector<T>>* momentum) {
  const auto& params = opt.params();
  const std::vector<const Record*> in_file = index.WithRole(value_role);
  std::string file_names;
  for (const Record* r : in_file) {
    file_names += (file_names.empty() ? "'" : ", '") + r->name + "'";
  }
  for (const Parameter<T>& p : params) {
    if (index.Find(value_role, p.name) == nullptr) {
      Mismatch(path,
               std::string("has no ") + RoleName(std::uint32_t(value_role)) +
                   " record for parameter '" + p.name +
                   "' (the file has: " + file_names + ")");
    }
  }
  for (const Record* r : in_file) {
    bool known = false;
    for (const Parameter<T>& p : params) known = known || p.name == r->name;
    if (!known) {
      Mismatch(path,
               "parameter '" + r->name +
                   "' is in the file but not in the optimizer (the file "
                   "has " +
                   std::to_string(in_file.size()) +
                   " parameters, the optimizer " +
                   std::to_string(params.size()) + ")");
    }
  }
  values->assign(params.size(), {});
  momentum->assign(params.size(), {});
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Parameter<T>& p = params[i];
    const Manifold<T>& m = *p.manifold;
    const Record& rv = *index.Find(value_role, p.name);
    (*values)[i] = DecodeBlock(path, rv, p);
    const TensorView<const T> x(
        (*values)[i].data(), p.value.rows, p.value.cols);
    const double tol = opt.PointTolerance(i);
    const double distance = m.DistanceToManifold(x);
    if (!(distance <= tol)) {
      std::ostringstream os;
      os << rv.What() << " is not on " << m.Describe() << ": distance "
         << distance << " > tolerance " << tol;
      Mismatch(path, os.str());
    }
    const Record* rm = index.Find(momentum_role, p.name);
    const bool wants = !opt.MomentumBuffer(i).empty();
    if (wants != (rm != nullptr)) {
      Mismatch(path,
               "parameter '" + p.name + "' " +
                   (wants ? "has momentum in the optimizer but no "
                            "momentum buffer in the file"
                          : "has a momentum buffer in the file but its "
                            "group has no momentum in the optimizer"));
    }
    if (rm == nullptr) continue;
    (*momentum)[i] = DecodeBlock(path, *rm, p);
    std::vector<T> projected = (*momentum)[i];
    m.Project(x, TensorView<T>(projected.data(), p.value.rows, p.value.cols));
    double diff = 0.0, scale = 0.0;
    for (std::size_t k = 0; k < projected.size(); ++k) {
      diff = std::max(
          diff, std::abs(double(projected[k]) - double((*momentum)[i][k])));
      scale = std::max(scale, std::abs(double((*momentum)[i][k])));
    }
    if (!(diff <= tol * (1.0 + scale))) {
      std::ostringstream os;
      os << rm->What() << " is not in the tangent space of " << m.Describe()
         << " at its point: off by " << diff;
      Mismatch(path, os.str());
    }
  }
}

}  // namespace

template <typename T>
void SaveCheckpoint(const std::string& path,
                    const RiemannianSgd<T>& opt,
                    const CheckpointParts<T>& parts) {
  if (parts.bold_driver != nullptr) {
    SYMOPT_CHECK(&parts.bold_driver->optimizer() == &opt,
                 Prefix(path) << "the bold driver drives another optimizer");
  }
  Writer w;
  w.BeginEnvelope(kMagic, kCheckpointVersion);

  const SgdState<T> state = opt.State();
  WriteBlocks(
      w, opt, Role::kValue, Role::kMomentum, opt.CopyValues(), state.momentum);
  w.Scalars(Role::kOptimizer,
            "step_count",
            std::vector<std::int64_t>{state.step_count});
  w.Scalars(Role::kOptimizer, "lr", std::vector<double>{state.lr});
  std::vector<double> group_lr;
  for (const auto& [id, lr] : state.group_lr) {
    group_lr.push_back(double(id));
    group_lr.push_back(lr);
  }
  w.Block(Role::kOptimizer,
          "group_lr",
          "state",
          std::int64_t(state.group_lr.size()),
          2,
          group_lr.data());
  if (parts.bold_driver != nullptr) {
    const BoldDriverState<T>& b = parts.bold_driver->State();
    w.Scalars(Role::kBoldDriver,
              "loss",
              std::vector<double>{b.has_baseline ? 1.0 : 0.0, b.best_loss});
    w.Scalars(Role::kBoldDriver,
              "counters",
              std::vector<std::int64_t>{b.accepted, b.rejected, b.step_count});
    WriteBlocks(w,
                opt,
                Role::kSnapshotValue,
                Role::kSnapshotMomentum,
                b.values,
                b.momentum);
  }
  if (parts.plateau != nullptr) {
    const PlateauState& s = parts.plateau->State();
    w.Scalars(Role::kPlateau, "best", std::vector<double>{s.best});
    w.Scalars(
        Role::kPlateau,
        "counters",
        std::vector<std::int64_t>{s.epochs_without_improvement, s.decays});
  }
  if (parts.stopping != nullptr) {
    const StoppingState& s = parts.stopping->State();
    w.Scalars(Role::kStopping,
              "best_validation",
              std::vector<double>{s.best_validation});
    w.Scalars(Role::kStopping,
              "counters",
              std::vector<std::int64_t>{
                  s.epochs, s.best_epoch, s.epochs_without_improvement});
  }

  w.SealEnvelope(w.records());
  internal::WriteFileAtomic(path, w.bytes(), Prefix(path));
}

template <typename T>
void LoadCheckpoint(const std::string& path,
                    RiemannianSgd<T>* opt,
                    const CheckpointParts<T>& parts) {
  SYMOPT_CHECK(opt != nullptr, Prefix(path) << "optimizer is null");
  if (parts.bold_driver != nullptr) {
    SYMOPT_CHECK(&parts.bold_driver->optimizer() == opt,
                 Prefix(path) << "the bold driver drives another optimizer");
  }
  const std::vector<std::uint8_t> bytes = ReadFile(path);
  const std::vector<Record> records = Parse(path, bytes);
  const RecordIndex index(path, records);

  // 1. Decode and validate everything.
  SgdState<T> state;
  std::vector<std::vector<T>> values;
  ReadBlocks(path,
             index,
             *opt,
             Role::kValue,
             Role::kMomentum,
             &values,
             &state.momentum);
  state.step_count =
      index.Scalars<std::int64_t>(Role::kOptimizer, "step_count", 1)[0];
  state.lr = index.Scalars<double>(Role::kOptimizer, "lr", 1)[0];
  const std::vector<double> group_lr =
      index.Scalars<double>(Role::kOptimizer, "group_lr", -1);
  if (group_lr.size() % 2 != 0) {
    Corrupt(path, "optimizer record 'group_lr' has an odd number of entries");
  }
  for (std::size_t k = 0; k < group_lr.size(); k += 2) {
    // Converting a double outside int's range (or NaN) to int is undefined:
    // check the range before the cast.
    if (!(group_lr[k] >= double(std::numeric_limits<int>::min()) &&
          group_lr[k] <= double(std::numeric_limits<int>::max()) &&
          std::trunc(group_lr[k]) == group_lr[k])) {
      std::ostringstream os;
      os << "optimizer record 'group_lr' names parameter group " << group_lr[k]
         << ", which is not an int";
      Corrupt(path, os.str());
    }
    const int id = int(group_lr[k]);
    bool used = false;
    for (const Parameter<T>& p : opt->params()) used = used || p.group == id;
    if (!used) {
      Mismatch(path,
               "has a learning rate for parameter group " + std::to_string(id) +
                   ", which no parameter of the optimizer is in");
    }
    state.group_lr[id] = group_lr[k + 1];
  }
  {
    std::ostringstream os;
    if (state.step_count < 0) os << "step count " << state.step_count << " < 0";
    if (!(std::isfinite(state.lr) && state.lr >= 0.0)) {
      os << "learning rate " << state.lr << " is not finite and >= 0";
    }
    for (const auto& [id, lr] : state.group_lr) {
      if (!(std::isfinite(lr) && lr >= 0.0)) {
        os << "group " << id << " learning rate " << lr
           << " is not finite and >= 0";
      }
    }
    if (!os.str().empty())
      Corrupt(path, "invalid optimizer state: " + os.str());
  }

  BoldDriverState<T> bold;
  if (parts.bold_driver != nullptr) {
    const std::vector<double> loss =
        index.Scalars<double>(Role::kBoldDriver, "loss", 2);
    const std::vector<std::int64_t> counters =
        index.Scalars<std::int64_t>(Role::kBoldDriver, "counters", 3);
    bold.has_baseline = loss[0] != 0.0;
    bold.best_loss = loss[1];
    bold.accepted = counters[0];
    bold.rejected = counters[1];
    bold.step_count = counters[2];
    if ((bold.has_baseline && !std::isfinite(bold.best_loss)) ||
        bold.accepted < 0 || bold.rejected < 0 || bold.step_count < 0) {
      Corrupt(path,
              "bold-driver state is invalid (non-finite best loss or "
              "negative counters)");
    }
    ReadBlocks(path,
               index,
               *opt,
               Role::kSnapshotValue,
               Role::kSnapshotMomentum,
               &bold.values,
               &bold.momentum);
  }
  PlateauState plateau;
  if (parts.plateau != nullptr) {
    plateau.best = index.Scalars<double>(Role::kPlateau, "best", 1)[0];
    const auto c = index.Scalars<std::int64_t>(Role::kPlateau, "counters", 2);
    plateau.epochs_without_improvement = int(c[0]);
    plateau.decays = int(c[1]);
    if (std::isnan(plateau.best) || c[0] < 0 || c[1] < 0 || c[0] > INT32_MAX ||
        c[1] > INT32_MAX) {
      Corrupt(path, "plateau state is invalid");
    }
  }
  StoppingState stopping;
  if (parts.stopping != nullptr) {
    stopping.best_validation =
        index.Scalars<double>(Role::kStopping, "best_validation", 1)[0];
    const auto c = index.Scalars<std::int64_t>(Role::kStopping, "counters", 3);
    for (std::int64_t v : c) {
      if (v < 0 || v > INT32_MAX) Corrupt(path, "stopping state is invalid");
    }
    if (std::isnan(stopping.best_validation)) {
      Corrupt(path, "stopping state is invalid");
    }
    stopping.epochs = int(c[0]);
    stopping.best_epoch = int(c[1]);
    stopping.epochs_without_improvement = int(c[2]);
  }

  // 2. Apply. Everything was validated above; should a setter still throw,
  // every part is restored from its backup, so nothing is half-loaded.
  const SgdState<T> old_state = opt->State();
  const std::vector<std::vector<T>> old_values = opt->CopyValues();
  const BoldDriverState<T> old_bold =
      parts.bold_driver ? parts.bold_driver->State() : BoldDriverState<T>();
  const PlateauState old_plateau =
      parts.plateau ? parts.plateau->State() : PlateauState();
  const StoppingState old_stopping =
      parts.stopping ? parts.stopping->State() : StoppingState();
  try {
    opt->SetState(state);
    if (parts.bold_driver) parts.bold_driver->SetState(bold);
    if (parts.plateau) parts.plateau->SetState(plateau);
    if (parts.stopping) parts.stopping->SetState(stopping);
    opt->SetValues(values);
  } catch (...) {
    opt->SetState(old_state);
    opt->SetValues(old_values);
    if (parts.bold_driver) parts.bold_driver->SetState(old_bold);
    if (parts.plateau) parts.plateau->SetState(old_plateau);
    if (parts.stopping) parts.stopping->SetState(old_stopping);
    throw;
  }
}

std::vector<CheckpointRecordInfo> ListCheckpoint(const std::string& path) {
  const std::vector<std::uint8_t> bytes = ReadFile(path);
  const std::vector<Record> records = Parse(path, bytes);
  std::vector<CheckpointRecordInfo> out;
  for (const Record& r : records) {
    CheckpointRecordInfo info;
    info.role = RoleName(r.role);
    info.name = r.name;
    info.kind = r.kind;
    info.rows = r.rows;
    info.cols = r.cols;
    info.dtype = DTypeName(r.dtype);
    out.push_back(std::move(info));
  }
  return out;
}

template void SaveCheckpoint<float>(const std::string&,
                                    const RiemannianSgd<float>&,
                                    const CheckpointParts<float>&);
template void SaveCheckpoint<double>(const std::string&,
                                     const RiemannianSgd<double>&,
                                     const CheckpointParts<double>&);
template void LoadCheckpoint<float>(const std::string&,
                                    RiemannianSgd<float>*,
                                    const CheckpointParts<float>&);
template void LoadCheckpoint<double>(const std::string&,
                                     RiemannianSgd<double>*,
                                     const CheckpointParts<double>&);

}  // namespace symopt
