// Model files (nn/model_io.h): bitwise round trips of an MLP with batch norm,
// a small CNN and a P4 model (oblique, tie-subspace and Euclidean parameters,
// batch-norm running statistics), bitwise equal eval-mode outputs after a
// load; every kind of bad file or mismatched model is refused with an error
// naming the problem and leaves the model bitwise unchanged; saving is
// atomic. Also the shared file machinery (src/file_io.h): zlib's CRC-32 and a
// checkpoint written by the build before file_io existed, which must still
// load and re-save byte-identically.
#include <signal.h>
#include <sys/resource.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "catch.h"
#include "data_test_util.h"
#include "file_io.h"
#include "manifolds/euclidean.h"
#include "manifolds/oblique.h"
#include "manifolds/tie_subspace.h"
#include "nn/group_conv.h"
#include "nn/layers.h"
#include "nn/model_io.h"
#include "nn/pooling.h"
#include "nn/train.h"
#include "optim/bold_driver.h"
#include "optim/checkpoint.h"
#include "optim/schedule.h"
#include "optim_test_util.h"
#include "tie_patterns.h"

namespace symopt {
namespace nn {
namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using testing::MirrorPattern;
using testing::Model;
using testing::ReadBytes;
using testing::TempDir;
using testing::WriteBytes;

// ---- Models -----------------------------------------------------------------

// flatten, linear(12->hidden) on the oblique manifold, batchnorm, relu,
// linear(hidden->3) on the tie subspace of mirror pairs (or all Euclidean).
void BuildMlp(Sequential<float>& m,
              std::uint64_t seed,
              std::int64_t hidden = 8,
              bool constrained = true) {
  BuildMlpBn(m, 12, hidden, 3, seed);
  if (!constrained) return;
  UseObliqueBeforeNormalization(m);
  m.SetManifold("4.linear.weight",
                std::make_shared<TieSubspace<float>>(MirrorPattern(3, hidden)));
}

// P4 lifting conv (oblique theta: it feeds a P4 batch norm), P4 batch norm,
// relu, P4 conv, pooling over rotations, average pool, linear.
void BuildP4(Sequential<float>& m,
             std::uint64_t seed,
             RotationPoolKind pool = RotationPoolKind::kMax) {
  m.Emplace<P4Conv<float>>(P4Input::kZ2, 1, 4, 3, 1, seed);
  m.Emplace<P4BatchNorm<float>>(4);
  m.Emplace<ReLU<float>>();
  m.Emplace<P4Conv<float>>(P4Input::kP4, 4, 5, 3, 0, seed + 1);
  m.Emplace<RotationPool<float>>(pool);
  m.Emplace<AvgPool2d<float>>(9);
  m.Emplace<Flatten<float>>();
  m.Emplace<Linear<float>>(5, 3, seed + 2);
  UseObliqueBeforeNormalization(m);
}

template <typename T = float>
Tensor<T> Input(const Shape& shape, std::uint64_t seed) {
  return testing::RandomImages<T>(shape, seed);
}

// Training-mode passes move the batch-norm running statistics away from
// their initial values, so a round trip has to carry them.
template <typename T>
void UpdateStatistics(Sequential<T>& m, const Shape& input) {
  for (std::uint64_t s = 0; s < 3; ++s)
    m.Forward(Input<T>(input, 100 + s), Mode::kTrain);
}

// Host copies of every parameter and buffer, in registry order.
template <typename T>
struct Snapshot {
  std::vector<std::vector<T>> tensors;

  explicit Snapshot(Sequential<T>& m) {
    for (const Parameter<T>& p : m.Params()) {
      tensors.emplace_back(p.value.data, p.value.data + p.value.size());
    }
    for (Tensor<T>* b : m.Buffers()) {
      tensors.emplace_back(b->data(), b->data() + b->size());
    }
  }
  // Bitwise equality (NaN payloads included).
  bool operator==(const Snapshot& o) const {
    if (tensors.size() != o.tensors.size()) return false;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].size() != o.tensors[i].size() ||
          std::memcmp(tensors[i].data(),
                      o.tensors[i].data(),
                      tensors[i].size() * sizeof(T)) != 0) {
        return false;
      }
    }
    return true;
  }
};

template <typename T>
bool SameBits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), std::size_t(a.size()) * sizeof(T)) ==
             0;
}

// Saves `a` (after moving its statistics), loads the file into `b` (built
// with other seeds), and checks b is now bitwise a, computing bitwise a's
// eval-mode outputs.
template <typename T>
void CheckRoundTrip(Sequential<T>& a, Sequential<T>& b, const Shape& input) {
  TempDir dir;
  const std::string path = dir.File("model.bin");
  UpdateStatistics(a, input);
  REQUIRE_FALSE(Snapshot(a) == Snapshot(b));
  SaveModel(a, path);
  CHECK(dir.Entries() == std::vector<std::string>{"model.bin"});
  LoadModel(b, path);
  CHECK(Snapshot(a) == Snapshot(b));
  const Tensor<T> x = Input<T>(input, 7);
  const Tensor<T> ya = a.Forward(x, Mode::kEval);
  const Tensor<T> yb = b.Forward(x, Mode::kEval);
  CHECK(SameBits(ya, yb));
  // Saving the loaded model gives the same file.
  const std::string again = dir.File("again.bin");
  SaveModel(b, again);
  CHECK(ReadBytes(again) == ReadBytes(path));
}

TEST_CASE("Model files round-trip bitwise (MLP-BN, CNN, P4)",
          "[nn][model_io]") {
  SECTION("MLP with batch norm: oblique, tie subspace, running statistics") {
    Sequential<float> a, b;
    BuildMlp(a, 1);
    BuildMlp(b, 2);
    CheckRoundTrip(a, b, {4, 12});
    // The file lists the registry and the buffers, in layer order.
    TempDir dir;
    SaveModel(a, dir.File("m.bin"));
    const ModelFileInfo info = ReadModelFileInfo(dir.File("m.bin"));
    CHECK(info.version == kModelFileVersion);
    CHECK(info.dtype == "float32");
    CHECK(info.model_name == a.Name());
    REQUIRE(info.layers.size() == a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      CHECK(info.layers[i] == a.layer(i).Name());
    }
    std::vector<std::string> names, kinds;
    for (const ModelRecordInfo& r : info.records) {
      names.push_back(r.role + " " + r.name);
      kinds.push_back(r.kind);
    }
    CHECK(names == std::vector<std::string>{"parameter 1.linear.weight",
                                            "parameter 1.linear.bias",
                                            "parameter 2.batchnorm.scale",
                                            "parameter 2.batchnorm.shift",
                                            "parameter 4.linear.weight",
                                            "parameter 4.linear.bias",
                                            "buffer 2.batchnorm.buffer0",
                                            "buffer 2.batchnorm.buffer1"});
    CHECK(kinds == std::vector<std::string>{"oblique",
                                            "euclidean",
                                            "euclidean",
                                            "euclidean",
                                            "tie_subspace",
                                            "euclidean",
                                            "buffer",
                                            "buffer"});
    CHECK(info.records[0].shape == std::vector<std::int64_t>{8, 12});
    CHECK(info.records[0].description == "oblique(8x12)");
  }
  SECTION("small CNN (oblique filters)") {
    Sequential<float> a, b;
    BuildSmallCnn(a, 10, 3);
    BuildSmallCnn(b, 10, 4);
    UseObliqueBeforeNormalization(a);
    UseObliqueBeforeNormalization(b);
    CheckRoundTrip(a, b, {2, 1, 28, 28});
  }
  SECTION("double: a nested model") {
    auto build = [](Sequential<double>& m, std::uint64_t seed) {
      m.Emplace<Linear<double>>(5, 4, seed);
      auto& inner = m.Emplace<Sequential<double>>();
      inner.Emplace<BatchNorm<double>>(4);
      inner.Emplace<Tanh<double>>();
      m.Emplace<Linear<double>>(4, 2, seed + 1);
      m.SetManifold("0.linear.weight", std::make_shared<Oblique<double>>(4, 5));
    };
    Sequential<double> a, b;
    build(a, 1);
    build(b, 2);
    CheckRoundTrip(a, b, {3, 5});
  }
  SECTION("P4 model (oblique theta, P4 batch norm)") {
    Sequential<float> a, b;
    BuildP4(a, 5);
    BuildP4(b, 9);
    CheckRoundTrip(a, b, {2, 1, 11, 11});
  }
}

// ---- Bad files and mismatched models ----------------------------------------

// Loading `path` into `m` must throw E with a message naming the file and
// containing every needle, and leave m bitwise unchanged.
template <typename E>
void ExpectLoadFails(Sequential<float>& m,
                     const std::string& path,
                     const std::vector<std::string>& needles) {
  const Snapshot before(m);
  std::string message;
  try {
    LoadModel(m, path);
    FAIL("LoadModel accepted " << path);
  } catch (const E& e) {
    message = e.what();
  }
  INFO(message);
  CHECK_THAT(message, Contains("model file '" + path + "'"));
  for (const std::string& needle : needles) {
    CHECK_THAT(message, Contains(needle));
  }
  CHECK(Snapshot(m) == before);
}

// Rewrites the CRC so a file edited on purpose passes the envelope check.
void FixCrc(std::vector<std::uint8_t>& bytes) {
  const std::uint32_t crc = internal::Crc32(bytes.data(), bytes.size() - 4);
  std::memcpy(bytes.data() + bytes.size() - 4, &crc, 4);
}

// Replaces the first entry of the saved tensor whose leading values are
// `saved` (located by their bytes) with `value`, and fixes the CRC.
std::vector<std::uint8_t> PatchFirstValue(std::vector<std::uint8_t> bytes,
                                          const std::vector<float>& saved,
                                          float value) {
  const std::size_t n = std::min<std::size_t>(saved.size(), 6) * 4;
  const auto* key = reinterpret_cast<const std::uint8_t*>(saved.data());
  std::size_t at = 0;
  while (at + n <= bytes.size() && std::memcmp(&bytes[at], key, n) != 0) ++at;
  REQUIRE(at + n <= bytes.size());
  std::memcpy(&bytes[at], &value, 4);
  FixCrc(bytes);
  return bytes;
}

TEST_CASE("Bad model files are refused and change nothing",
          "[nn][model_io][errors]") {
  TempDir dir;
  const std::string good = dir.File("good.bin");
  const std::string bad = dir.File("bad.bin");
  Sequential<float> a, m;
  BuildMlp(a, 11);
  UpdateStatistics(a, {4, 12});
  SaveModel(a, good);
  BuildMlp(m, 12);
  UpdateStatistics(m, {4, 12});
  const std::vector<std::uint8_t> bytes = ReadBytes(good);
  REQUIRE(bytes.size() > 200);

  SECTION("missing file") {
    ExpectLoadFails<FileError>(m, dir.File("none.bin"), {"cannot open"});
  }
  SECTION("truncated at several points") {
    for (std::size_t size : {std::size_t(0),
                             std::size_t(7),
                             std::size_t(20),
                             std::size_t(27),
                             std::size_t(28),
                             std::size_t(60),
                             bytes.size() / 2,
                             bytes.size() - 5,
                             bytes.size() - 1}) {
      INFO("truncated to " << size << " bytes");
      WriteBytes(bad, {bytes.begin(), bytes.begin() + std::ptrdiff_t(size)});
      ExpectLoadFails<FileError>(m, bad, {"truncated"});
    }
  }
  SECTION("a flipped byte anywhere after the header fails the CRC") {
    for (std::size_t at :
         {std::size_t(30), bytes.size() / 2, bytes.size() - 6}) {
      std::vector<std::uint8_t> flipped = bytes;
      flipped[at] ^= 0x10;
      WriteBytes(bad, flipped);
      ExpectLoadFails<FileError>(m, bad, {"CRC-32 mismatch", "corrupt"});
    }
  }
  SECTION("trailing garbage") {
    std::vector<std::uint8_t> longer = bytes;
    longer.push_back(0);
    WriteBytes(bad, longer);
    ExpectLoadFails<FileError>(m, bad, {"trailing garbage"});
  }
  SECTION("wrong magic") {
    std::vector<std::uint8_t> other = bytes;
    other[6] = 'C';  // "SYMOPTCK": a checkpoint, not a model file
    WriteBytes(bad, other);
    ExpectLoadFails<FileError>(m, bad, {"wrong magic", "SYMOPTNN"});
  }
  SECTION("a checkpoint is not a model file") {
    Model<float> blocks;
    blocks.Add("w", std::make_shared<Euclidean<float>>(2, 2), 1);
    RiemannianSgd<float> opt(blocks.Params(), SgdOptions());
    SaveCheckpoint(bad, opt);
    ExpectLoadFails<FileError>(m, bad, {"wrong magic"});
  }
  SECTION("unsupported version") {
    std::vector<std::uint8_t> other = bytes;
    other[8] = 2;
    FixCrc(other);
    WriteBytes(bad, other);
    ExpectLoadFails<FileError>(m, bad, {"unsupported format version 2"});
  }
  SECTION("unknown dtype") {
    std::vector<std::uint8_t> other = bytes;
    other[12] = 9;
    FixCrc(other);
    WriteBytes(bad, other);
    ExpectLoadFails<FileError>(m, bad, {"unknown dtype 9"});
  }
  SECTION("a different architecture") {
    Sequential<float> cnn;
    BuildSmallCnn(cnn, 3, 1);
    ExpectLoadFails<InvalidArgument>(
        cnn,
        good,
        {"different architecture", "layer 0", "'flatten'", "'conv2d("});
    Sequential<float> shorter;
    shorter.Emplace<Flatten<float>>();
    shorter.Emplace<Linear<float>>(12, 8, 1);
    ExpectLoadFails<InvalidArgument>(
        shorter,
        good,
        {"different architecture", "5 layers", "the model 2", "layer 2"});
  }
  SECTION("a layer that differs only in its hyper-parameters") {
    Sequential<float> max_pool, mean_pool;
    BuildP4(max_pool, 1, RotationPoolKind::kMax);
    BuildP4(mean_pool, 1, RotationPoolKind::kMean);
    SaveModel(max_pool, bad);
    ExpectLoadFails<InvalidArgument>(mean_pool,
                                     bad,
                                     {"different architecture",
                                      "layer 4",
                                      "rotation_pool(max)",
                                      "rotation_pool(mean)"});
  }
  SECTION("a shape mismatch names the parameter and both shapes") {
    Sequential<float> wider;
    BuildMlp(wider, 12, /*hidden=*/9);
    ExpectLoadFails<InvalidArgument>(
        wider, good, {"parameter '1.linear.weight'", "[8, 12]", "[9, 12]"});
  }
  SECTION("a manifold-kind mismatch names the parameter and both kinds") {
    Sequential<float> free;
    BuildMlp(free, 12, 8, /*constrained=*/false);
    ExpectLoadFails<InvalidArgument>(
        free,
        good,
        {"parameter '1.linear.weight'", "oblique(8x12)", "euclidean(8x12)"});
  }
  SECTION("a dtype mismatch") {
    Sequential<double> wide;
    wide.Emplace<Flatten<double>>();
    std::string message;
    try {
      LoadModel(wide, good);
    } catch (const InvalidArgument& e) {
      message = e.what();
    }
    CHECK_THAT(message, Contains("float32") && Contains("float64"));
  }
  const std::vector<Parameter<float>> params = a.Params();
  const Parameter<float>& weight = params[0];  // 1.linear.weight, oblique
  const std::vector<float> w(weight.value.data,
                             weight.value.data + weight.value.size());
  SECTION("a NaN or Inf value in a parameter") {
    WriteBytes(
        bad,
        PatchFirstValue(bytes, w, std::numeric_limits<float>::quiet_NaN()));
    ExpectLoadFails<InvalidArgument>(
        m, bad, {"parameter '1.linear.weight'", "non-finite", "flat index 0"});
    WriteBytes(
        bad, PatchFirstValue(bytes, w, std::numeric_limits<float>::infinity()));
    ExpectLoadFails<InvalidArgument>(m, bad, {"non-finite"});
  }
  SECTION("a NaN in a batch-norm running statistic") {
    Tensor<float>* mean = a.Buffers()[0];
    const std::vector<float> saved(mean->data(), mean->data() + mean->size());
    WriteBytes(
        bad,
        PatchFirstValue(bytes, saved, std::numeric_limits<float>::quiet_NaN()));
    ExpectLoadFails<InvalidArgument>(
        m, bad, {"buffer '2.batchnorm.buffer0'", "non-finite"});
  }
  SECTION("a point off its manifold") {
    WriteBytes(bad, PatchFirstValue(bytes, w, w[0] + 0.25f));
    ExpectLoadFails<InvalidArgument>(m,
                                     bad,
                                     {"parameter '1.linear.weight'",
                                      "is not on oblique(8x12)",
                                      "tolerance"});
    // The tie subspace: entries of one class must be equal.
    const Parameter<float>& tied = params[4];  // 4.linear.weight
    const std::vector<float> t(tied.value.data,
                               tied.value.data + tied.value.size());
    WriteBytes(bad, PatchFirstValue(bytes, t, t[0] + 0.25f));
    ExpectLoadFails<InvalidArgument>(
        m, bad, {"parameter '4.linear.weight'", "is not on tie_subspace"});
  }
  SECTION("a good file still loads after all that") {
    LoadModel(m, good);
    CHECK(Snapshot(m) == Snapshot(a));
  }
}

// ---- Saving ----------------------------------------------------------------

TEST_CASE("Saving a model is atomic", "[nn][model_io][errors]") {
  TempDir dir;
  const std::string path = dir.File("model.bin");
  Sequential<float> m;
  BuildMlp(m, 21);
  SaveModel(m, path);
  const std::vector<std::uint8_t> previous = ReadBytes(path);
  UpdateStatistics(m, {4, 12});  // the model now differs from the file

  SECTION("a non-finite value is refused before anything is written") {
    Parameter<float> p = m.Params()[2];  // 2.batchnorm.scale
    const float kept = p.value.data[3];
    p.value.data[3] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH(SaveModel(m, path),
                      Contains(path) &&
                          Contains("parameter '2.batchnorm.scale'") &&
                          Contains("flat index 3") && Contains("unchanged"));
    p.value.data[3] = kept;
  }
  SECTION("the write fails half-way (file size limit)") {
    // RLIMIT_FSIZE makes write() fail with EFBIG past 64 bytes (also for
    // root); SIGXFSZ is ignored so the failure is an error, not a signal.
    struct rlimit old_limit;
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    struct sigaction ignore = {}, old_action;
    ignore.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGXFSZ, &ignore, &old_action) == 0);
    struct rlimit limit = old_limit;
    limit.rlim_cur = 64;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
    std::string message;
    try {
      SaveModel(m, path);
    } catch (const FileError& e) {
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old_limit);
    ::sigaction(SIGXFSZ, &old_action, nullptr);
    CHECK_THAT(message,
               Contains(path) && Contains("writing") && Contains("unchanged"));
  }
  SECTION("the target is a directory: the rename fails") {
    const std::string target = dir.File("subdir");
    fs::create_directories(target + "/keep");
    REQUIRE_THROWS_WITH(SaveModel(m, target),
                        Contains(target) && Contains("cannot rename"));
    CHECK(fs::is_directory(target + "/keep"));
    fs::remove_all(target);
  }
  SECTION("a directory that does not exist") {
    REQUIRE_THROWS_WITH(
        SaveModel(m, dir.File("no/such/dir/model.bin")),
        Contains("no/such/dir") && Contains("cannot create temporary file"));
  }
  CHECK(ReadBytes(path) == previous);
  CHECK(dir.Entries() == std::vector<std::string>{"model.bin"});
  // A successful save replaces it.
  SaveModel(m, path);
  CHECK(ReadBytes(path) != previous);
  CHECK(dir.Entries() == std::vector<std::string>{"model.bin"});
}

// ---- The shared file machinery ----------------------------------------------

fs::path SourceDir() {
  if (const char* s = std::getenv("SYMOPT_SOURCE_DIR")) return s;
  for (fs::path p = fs::current_path(); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p / "tests" / "data")) return p;
    if (p == p.parent_path()) break;
  }
  return fs::current_path();
}

// `bytes` with 1 to 4 seeded edits at offsets >= from: a flipped bit, a
// random byte, 0xff, or (where 8 aligned bytes fit before the last 4) an
// int64 of -1, INT64_MAX, INT64_MIN, 2^40, 0 or a NaN's bit pattern. For the
// file-format tests: every edit must load or be refused with a symopt::Error.
std::vector<std::uint8_t> MutateBytes(std::vector<std::uint8_t> bytes,
                                      std::uint64_t seed,
                                      std::size_t from) {
  REQUIRE(bytes.size() > from);
  symopt::data::Rng rng(seed);
  auto below = [&](std::uint64_t n) { return rng.Below(n); };
  const std::int64_t words[] = {-1,
                                std::numeric_limits<std::int64_t>::max(),
                                std::numeric_limits<std::int64_t>::min(),
                                std::int64_t{1} << 40,
                                0,
                                std::int64_t{0x7ff8000000000000}};
  const int edits = 1 + int(below(4));
  for (int e = 0; e < edits; ++e) {
    const std::size_t at = from + std::size_t(below(bytes.size() - from));
    const std::size_t word_at = at & ~std::size_t(7);
    switch (below(4)) {
      case 0:
        bytes[at] ^= std::uint8_t(1u << below(8));
        break;
      case 1:
        bytes[at] = std::uint8_t(below(256));
        break;
      case 2:
        bytes[at] = 0xff;
        break;
      default:
        if (word_at >= from && word_at + 8 + 4 <= bytes.size()) {
          std::memcpy(&bytes[word_at], &words[below(6)], 8);
        }
    }
  }
  return bytes;
}

// Edited files with a valid CRC (docs/testing.md): each one either loads or
// is refused with a symopt::Error that changes nothing; never a crash, a
// std:: exception or (under the sanitizers) undefined behaviour.
TEST_CASE("Edited model files and checkpoints load or are refused cleanly",
          "[file_io][model_io][checkpoint][errors]") {
  TempDir dir;
  const std::string good = dir.File("good.bin");
  const std::string bad = dir.File("bad.bin");
  constexpr int kEdits = 400;
  int refused = 0;
  SECTION("model files") {
    Sequential<float> a, m;
    BuildMlp(a, 11);
    UpdateStatistics(a, {4, 12});
    SaveModel(a, good);
    BuildMlp(m, 12);
    const std::vector<std::uint8_t> bytes = ReadBytes(good);
    for (int k = 0; k < kEdits; ++k) {
      std::vector<std::uint8_t> edited = MutateBytes(bytes, 1000 + k, 8);
      FixCrc(edited);
      fs::remove(bad);  // a new file: rewriting one in place flushes on ext4
      WriteBytes(bad, edited);
      const Snapshot before(m);
      try {
        LoadModel(m, bad);
      } catch (const Error& e) {
        ++refused;
        INFO("edit " << k << ": " << e.what());
        REQUIRE(Snapshot(m) == before);
      }
      try {
        ReadModelFileInfo(bad);
      } catch (const Error&) {
      }
    }
  }
  SECTION("checkpoints") {
    Model<double> blocks;
    blocks.Add("fc", std::make_shared<Oblique<double>>(3, 4), 1);
    blocks.Add("bias", std::make_shared<Euclidean<double>>(1, 3), 2, 1);
    SgdOptions options;
    options.lr = 0.1;
    options.momentum = 0.9;
    options.groups[1].lr = 0.2;
    RiemannianSgd<double> opt(blocks.Params(), options);
    BoldDriver<double> bold(&opt);
    bold.EndEpoch(1.0);
    PlateauDecay plateau;
    StoppingRule stopping;
    const CheckpointParts<double> parts{&bold, &plateau, &stopping};
    SaveCheckpoint(good, opt, parts);
    const std::vector<std::uint8_t> bytes = ReadBytes(good);
    for (int k = 0; k < kEdits; ++k) {
      std::vector<std::uint8_t> edited = MutateBytes(bytes, 2000 + k, 8);
      FixCrc(edited);
      fs::remove(bad);  // a new file: rewriting one in place flushes on ext4
      WriteBytes(bad, edited);
      const std::vector<std::vector<double>> values = blocks.Values();
      const SgdState<double> state = opt.State();
      const BoldDriverState<double> bold_state = bold.State();
      try {
        LoadCheckpoint(bad, &opt, parts);
      } catch (const Error& e) {
        ++refused;
        INFO("edit " << k << ": " << e.what());
        REQUIRE(testing::BitwiseEqual(blocks.Values(), values));
        REQUIRE(testing::SameState(opt.State(), state));
        REQUIRE(bold.State().accepted == bold_state.accepted);
        REQUIRE(bold.State().step_count == bold_state.step_count);
      }
      try {
        ListCheckpoint(bad);
      } catch (const Error&) {
      }
    }
  }
  // Most edits break something; some (inside values) load.
  CHECK(refused > kEdits / 2);
  CHECK(refused < kEdits);
}

TEST_CASE("CRC-32 is the standard one (zlib)", "[file_io]") {
  const std::string check = "123456789";
  CHECK(internal::Crc32(reinterpret_cast<const std::uint8_t*>(check.data()),
                        check.size()) == 0xCBF43926u);
  CHECK(internal::Crc32(nullptr, 0) == 0u);
}

TEST_CASE("A checkpoint written before file_io still loads, byte for byte",
          "[file_io][checkpoint]") {
  // tests/data/checkpoint_v1_main.ckpt was written by main's build before the
  // file machinery moved to src/file_io.cpp: an oblique 2x3, a Euclidean 1x3
  // and a tie-subspace 2x4 block (mirror pairs), float, momentum 0.9, after
  // two steps.
  const std::string fixture =
      (SourceDir() / "tests" / "data" / "checkpoint_v1_main.ckpt").string();
  const std::vector<std::uint8_t> old_bytes = ReadBytes(fixture);
  Model<float> blocks;
  blocks.Add("fc", std::make_shared<Oblique<float>>(2, 3), 70);
  blocks.Add("bias", std::make_shared<Euclidean<float>>(1, 3), 80);
  blocks.Add(
      "tied", std::make_shared<TieSubspace<float>>(MirrorPattern(2, 4)), 90);
  SgdOptions options;
  options.lr = 0.05;
  options.momentum = 0.9;
  RiemannianSgd<float> opt(blocks.Params(), options);
  LoadCheckpoint(fixture, &opt);
  CHECK(opt.step_count() == 2);
  TempDir dir;
  SaveCheckpoint(dir.File("again.ckpt"), opt);
  CHECK(ReadBytes(dir.File("again.ckpt")) == old_bytes);
}

}  // namespace
}  // namespace nn
}  // namespace symopt
