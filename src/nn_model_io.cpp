#include <algorithm>
#include <cstring>
#include <memory>
#include <sstream>
#include <utility>

#include "blas1.h"
#include "file_io.h"
#include "manifolds/device.h"
#include "nn/model_io.h"
#include "optim/sgd.h"

namespace symopt {
namespace nn {
namespace {

constexpr char kMagic[8] = {'S', 'Y', 'M', 'O', 'P', 'T', 'N', 'N'};
constexpr std::uint32_t kMaxRank = 8;
constexpr std::int64_t kMaxElements = std::int64_t(1) << 40;

enum class Role : std::uint32_t { kParameter = 1, kBuffer = 2 };

const char* RoleName(std::uint32_t role) {
  switch (Role(role)) {
    case Role::kParameter:
      return "parameter";
    case Role::kBuffer:
      return "buffer";
  }
  return nullptr;
}

const char* DTypeName(std::uint32_t dtype) {
  return dtype == 1 ? "float32" : dtype == 2 ? "float64" : nullptr;
}

template <typename T>
constexpr std::uint32_t DTypeOf() {
  return sizeof(T) == 4 ? 1 : 2;
}

std::string Prefix(const std::string& path) {
  return "model file '" + path + "': ";
}

[[noreturn]] void Corrupt(const std::string& path, const std::string& what) {
  throw FileError(Prefix(path) + what);
}

[[noreturn]] void Mismatch(const std::string& path, const std::string& what) {
  throw InvalidArgument(Prefix(path) + what);
}

// "linear(784->256)" -> "linear", as Sequential names its parameters.
std::string LayerKind(const std::string& name) {
  return name.substr(0, name.find('('));
}

// ---- The model's side -------------------------------------------------------

// One tensor of the model's point: a parameter (with its manifold) or a
// buffer, with a view of its storage on the model's device.
template <typename T>
struct Entry {
  Role role = Role::kParameter;
  std::string name;
  std::shared_ptr<const Manifold<T>> manifold;  // null for buffers
  std::vector<std::int64_t> shape;
  TensorView<T> view;  // flat 1 x n, on the model's device

  std::string Kind() const {
    return manifold ? manifold->Name() : std::string("buffer");
  }
  std::string Description() const {
    return manifold ? manifold->Describe() : std::string();
  }
  std::string What() const {
    return std::string(RoleName(std::uint32_t(role))) + " '" + name + "'";
  }
  std::vector<T> ToHost() const {
    std::vector<T> host(std::size_t(view.size()));
    Copy(TensorView<const T>(view), TensorView<T>(host.data(), 1, view.size()));
    return host;
  }
};

// Parameters in Params() order, then every layer's buffers in layer order.
template <typename T>
std::vector<Entry<T>> CollectEntries(Sequential<T>& model) {
  std::vector<Entry<T>> entries;
  for (Parameter<T>& p : model.Params()) {
    Entry<T> e;
    e.role = Role::kParameter;
    e.name = p.name;
    e.manifold = p.manifold;
    e.shape = {p.value.rows, p.value.cols};
    e.view = TensorView<T>(p.value.data, 1, p.value.size(), p.value.device);
    entries.push_back(std::move(e));
  }
  for (std::size_t i = 0; i < model.size(); ++i) {
    Layer<T>& layer = model.layer(i);
    const std::string kind = LayerKind(layer.Name());
    const std::vector<Tensor<T>*> buffers = layer.Buffers();
    for (std::size_t k = 0; k < buffers.size(); ++k) {
      Entry<T> e;
      e.role = Role::kBuffer;
      e.name = std::to_string(i) + "." + kind + ".buffer" + std::to_string(k);
      e.shape = buffers[k]->shape();
      e.view = buffers[k]->FlatView();
      entries.push_back(std::move(e));
    }
  }
  return entries;
}

template <typename T>
std::vector<std::string> LayerNames(Sequential<T>& model) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < model.size(); ++i) {
    names.push_back(model.layer(i).Name());
  }
  return names;
}

// ---- Reading ----------------------------------------------------------------

struct Record {
  std::uint32_t role = 0;
  std::string name;
  std::string kind;
  std::string description;
  std::vector<std::int64_t> shape;
  std::int64_t count = 0;  // prod(shape)
  const std::uint8_t* data = nullptr;

  std::string What() const {
    return std::string(RoleName(role)) + " '" + name + "'";
  }
};

struct Parsed {
  std::uint32_t version = 0;
  std::uint32_t dtype = 0;
  std::string model_name;
  std::vector<std::string> layers;
  std::vector<Record> records;  // data points into the file's bytes
};

// Checks the envelope (internal::OpenEnvelope: size, magic, version, length,
// CRC) and parses the body. Throws FileError.
Parsed Parse(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  const internal::Envelope envelope = internal::OpenEnvelope(
      bytes, kMagic, "model file", kModelFileVersion, Prefix(path));
  Parsed parsed;
  parsed.version = envelope.version;
  parsed.dtype = envelope.word;
  if (DTypeName(parsed.dtype) == nullptr) {
    Corrupt(path, "unknown dtype " + std::to_string(parsed.dtype));
  }
  const std::size_t value_size = parsed.dtype == 1 ? 4 : 8;

  internal::ByteReader in(envelope, Prefix(path), "body");
  parsed.model_name = in.GetString("model name");
  const std::uint32_t num_layers = in.Get<std::uint32_t>("layer count");
  for (std::uint32_t i = 0; i < num_layers; ++i) {
    parsed.layers.push_back(in.GetString("layer name"));
  }
  const std::uint32_t count = in.Get<std::uint32_t>("record count");
  for (std::uint32_t k = 0; k < count; ++k) {
    Record r;
    r.role = in.Get<std::uint32_t>("record role");
    r.name = in.GetString("record name");
    r.kind = in.GetString("record kind");
    r.description = in.GetString("record description");
    if (RoleName(r.role) == nullptr) {
      Corrupt(path,
              "record " + std::to_string(k) + " ('" + r.name +
                  "') has unknown role " + std::to_string(r.role));
    }
    const std::uint32_t rank = in.Get<std::uint32_t>("record rank");
    if (rank > kMaxRank) {
      Corrupt(path,
              r.What() + " has rank " + std::to_string(rank) + " (at most " +
                  std::to_string(kMaxRank) + ")");
    }
    r.count = 1;
    for (std::uint32_t d = 0; d < rank; ++d) {
      const std::int64_t dim = in.Get<std::int64_t>("record dimension");
      if (dim < 0 || (dim > 0 && r.count > kMaxElements / dim)) {
        Corrupt(path,
                r.What() + " has an invalid dimension " + std::to_string(dim));
      }
      r.shape.push_back(dim);
      r.count *= dim;
    }
    r.data = in.Skip(std::uint64_t(r.count) * value_size, "record payload");
    parsed.records.push_back(std::move(r));
  }
  if (!in.done()) {
    Corrupt(
        path,
        "the body has bytes after its " + std::to_string(count) + " records");
  }
  return parsed;
}

// The first index at which two name lists differ, as a message.
std::string FirstDifference(const std::vector<std::string>& in_file,
                            const std::vector<std::string>& in_model) {
  std::ostringstream os;
  const std::size_t n = std::min(in_file.size(), in_model.size());
  std::size_t i = 0;
  while (i < n && in_file[i] == in_model[i]) ++i;
  os << "layer " << i << " is ";
  if (i < in_file.size()) {
    os << "'" << in_file[i] << "'";
  } else {
    os << "absent";
  }
  os << " in the file but ";
  if (i < in_model.size()) {
    os << "'" << in_model[i] << "'";
  } else {
    os << "absent";
  }
  os << " in the model";
  return os.str();
}

// Checks the records of one role against the model's entries of that role:
// same count, and in order the same name, kind and shape.
template <typename T>
std::vector<std::pair<const Record*, const Entry<T>*>> Match(
    const std::string& path,
    Role role,
    const std::vector<Record>& records,
    const std::vector<Entry<T>>& entries) {
  std::vector<const Record*> file;
  std::vector<const Entry<T>*> model;
  for (const Record& r : records) {
    if (r.role == std::uint32_t(role)) file.push_back(&r);
  }
  for (const Entry<T>& e : entries) {
    if (e.role == role) model.push_back(&e);
  }
  const char* what = RoleName(std::uint32_t(role));
  std::vector<std::pair<const Record*, const Entry<T>*>> pairs;
  for (std::size_t i = 0; i < std::max(file.size(), model.size()); ++i) {
    if (i >= file.size() || i >= model.size() ||
        file[i]->name != model[i]->name) {
      std::ostringstream os;
      os << what << " " << i << " is "
         << (i < file.size() ? "'" + file[i]->name + "'" : "absent")
         << " in the file but "
         << (i < model.size() ? "'" + model[i]->name + "'" : "absent")
         << " in the model (the file has " << file.size() << " " << what
         << "s, the model " << model.size() << ")";
      Mismatch(path, os.str());
    }
    const Record& r = *file[i];
    const Entry<T>& e = *model[i];
    if (r.kind != e.Kind()) {
      Mismatch(
          path,
          r.What() + " is on " +
              (r.description.empty() ? "'" + r.kind + "'" : r.description) +
              " in the file but on " + e.Description() +
              " in the model (manifold kind '" + r.kind + "' vs '" + e.Kind() +
              "')");
    }
    if (r.shape != e.shape) {
      Mismatch(path,
               r.What() + " has shape " + ShapeString(r.shape) +
                   " in the file but " + ShapeString(e.shape) +
                   " in the model");
    }
    pairs.emplace_back(&r, &e);
  }
  return pairs;
}

}  // namespace

template <typename T>
void SaveModel(Sequential<T>& model, const std::string& path) {
  const std::vector<Entry<T>> entries = CollectEntries(model);
  std::vector<std::vector<T>> values;
  for (const Entry<T>& e : entries) {
    values.push_back(e.ToHost());
    const std::int64_t bad =
        cpu::FirstNonFinite(values.back().data(), e.view.size());
    SYMOPT_CHECK(bad < 0,
                 Prefix(path) << e.What() << " has a non-finite entry "
                              << values.back()[std::size_t(bad)]
                              << " at flat index " << bad
                              << "; not saved (the previous file, if any, is "
                                 "unchanged)");
  }
  const std::vector<std::string> layers = LayerNames(model);

  internal::ByteWriter w;
  w.BeginEnvelope(kMagic, kModelFileVersion);
  w.PutString(model.Name());
  w.Put(std::uint32_t(layers.size()));
  for (const std::string& name : layers) w.PutString(name);
  w.Put(std::uint32_t(entries.size()));
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry<T>& e = entries[i];
    w.Put(std::uint32_t(e.role));
    w.PutString(e.name);
    w.PutString(e.Kind());
    w.PutString(e.Description());
    w.Put(std::uint32_t(e.shape.size()));
    for (std::int64_t d : e.shape) w.Put(d);
    w.PutRaw(values[i].data(), values[i].size() * sizeof(T));
  }
  w.SealEnvelope(DTypeOf<T>());
  internal::WriteFileAtomic(path, w.bytes(), Prefix(path));
}

template <typename T>
void LoadModel(Sequential<T>& model, const std::string& path) {
  const std::vector<std::uint8_t> bytes =
      internal::ReadWholeFile(path, Prefix(path));
  const Parsed parsed = Parse(path, bytes);

  // 1. Validate everything on the host.
  if (parsed.dtype != DTypeOf<T>()) {
    Mismatch(path,
             std::string("holds ") + DTypeName(parsed.dtype) +
                 " values but the model uses " + DTypeName(DTypeOf<T>()));
  }
  const std::vector<std::string> layers = LayerNames(model);
  std::vector<std::string> file_kinds, model_kinds;
  for (const std::string& name : parsed.layers) {
    file_kinds.push_back(LayerKind(name));
  }
  for (const std::string& name : layers) model_kinds.push_back(LayerKind(name));
  if (file_kinds != model_kinds) {
    std::ostringstream os;
    os << "a different architecture: the file has " << parsed.layers.size()
       << " layers, the model " << layers.size() << "; "
       << FirstDifference(parsed.layers, layers);
    Mismatch(path, os.str());
  }
  const std::vector<Entry<T>> entries = CollectEntries(model);
  auto pairs = Match(path, Role::kParameter, parsed.records, entries);
  const auto buffers = Match(path, Role::kBuffer, parsed.records, entries);
  pairs.insert(pairs.end(), buffers.begin(), buffers.end());

  std::vector<std::vector<T>> values;
  for (const auto& [r, e] : pairs) {
    std::vector<T> v(std::size_t(r->count));
    if (!v.empty()) std::memcpy(v.data(), r->data, v.size() * sizeof(T));
    const std::int64_t bad = cpu::FirstNonFinite(v.data(), r->count);
    if (bad >= 0) {
      std::ostringstream os;
      os << r->What() << " has a non-finite entry " << v[std::size_t(bad)]
         << " at flat index " << bad;
      Mismatch(path, os.str());
    }
    if (e->manifold != nullptr) {
      const Manifold<T>& m = *e->manifold;
      const double tol = DefaultPointTolerance<T>(m.rows());
      const double distance = m.DistanceToManifold(
          TensorView<const T>(v.data(), m.rows(), m.cols()));
      if (!(distance <= tol)) {
        std::ostringstream os;
        os << r->What() << " is not on " << m.Describe() << ": distance "
           << distance << " > tolerance " << tol;
        Mismatch(path, os.str());
      }
    }
    values.push_back(std::move(v));
  }
  if (parsed.layers != layers) {
    Mismatch(
        path,
        "a different architecture: " + FirstDifference(parsed.layers, layers));
  }

  // 2. Apply. Should a copy to the device fail, every tensor is restored
  // from its backup, so nothing is half-loaded.
  std::vector<std::vector<T>> backups;
  backups.reserve(pairs.size());
  for (const auto& pair : pairs) backups.push_back(pair.second->ToHost());
  auto copy_all = [&](const std::vector<std::vector<T>>& from) {
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      const TensorView<T>& dst = pairs[i].second->view;
      Copy(TensorView<const T>(from[i].data(), 1, dst.size()), dst);
    }
  };
  try {
    copy_all(values);
  } catch (...) {
    copy_all(backups);
    throw;
  }
}

ModelFileInfo ReadModelFileInfo(const std::string& path) {
  const std::vector<std::uint8_t> bytes =
      internal::ReadWholeFile(path, Prefix(path));
  const Parsed parsed = Parse(path, bytes);
  ModelFileInfo info;
  info.version = parsed.version;
  info.dtype = DTypeName(parsed.dtype);
  info.model_name = parsed.model_name;
  info.layers = parsed.layers;
  for (const Record& r : parsed.records) {
    ModelRecordInfo ri;
    ri.role = RoleName(r.role);
    ri.name = r.name;
    ri.kind = r.kind;
    ri.description = r.description;
    ri.shape = r.shape;
    info.records.push_back(std::move(ri));
  }
  return info;
}

template void SaveModel<float>(Sequential<float>&, const std::string&);
template void SaveModel<double>(Sequential<double>&, const std::string&);
template void LoadModel<float>(Sequential<float>&, const std::string&);
template void LoadModel<double>(Sequential<double>&, const std::string&);

}  // namespace nn
}  // namespace symopt
