// Checkpoints: round trip, bit-identical continuation (momentum, bold
// driver), corrupt / truncated / mismatched files, atomic saves.
#include "optim/checkpoint.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <random>

#include "catch.h"
#include "file_io.h"
#include "manifold_checks.h"
#include "manifolds/euclidean.h"
#include "manifolds/oblique.h"
#include "manifolds/tie_subspace.h"
#include "manifolds/tied_oblique.h"
#include "optim_test_util.h"
#include "tie_patterns.h"

using namespace symopt;
using namespace symopt::testing;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// A fresh directory, removed with its contents at the end of the scope.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl =
        (fs::temp_directory_path() / "symopt_ckpt_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string File(const std::string& name) const {
    return (path / name).string();
  }
  std::size_t Entries() const {
    return std::size_t(
        std::distance(fs::directory_iterator(path), fs::directory_iterator()));
  }
};

std::vector<char> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// The offset in checkpoint `bytes` of the payload of the record named `name`:
// a record is role u32, name and kind (u32 length + bytes), rows and cols
// i64, dtype u32, payload length u64, then the payload (src/checkpoint.cpp).
std::size_t PayloadOffset(const std::vector<char>& bytes,
                          const std::string& name) {
  const std::uint32_t length = std::uint32_t(name.size());
  std::string key(reinterpret_cast<const char*>(&length), 4);
  key += name;
  const auto it =
      std::search(bytes.begin(), bytes.end(), key.begin(), key.end());
  REQUIRE(it != bytes.end());
  const std::size_t kind_at = std::size_t(it - bytes.begin()) + key.size();
  std::uint32_t kind_length;
  REQUIRE(kind_at + 4 <= bytes.size());
  std::memcpy(&kind_length, bytes.data() + kind_at, 4);
  return kind_at + 4 + kind_length + 8 + 8 + 4 + 8;
}

// Recomputes the CRC-32 that ends a checkpoint whose `bytes` were edited, so
// that the edit reaches the checks behind the CRC.
void Reseal(std::vector<char>& bytes) {
  const std::uint32_t crc = internal::Crc32(
      reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size() - 4);
  std::memcpy(bytes.data() + bytes.size() - 4, &crc, 4);
}

// The model every test trains: an oblique filter bank, a Euclidean bias in
// its own group, a tied block.
template <typename T>
Model<T> MakeModel(std::uint64_t seed) {
  Model<T> m;
  m.Add("fc1", std::make_shared<Oblique<T>>(5, 8), seed);
  m.Add("bias", std::make_shared<Euclidean<T>>(1, 5), seed + 1, /*group=*/1);
  m.Add(
      "tied", std::make_shared<TieSubspace<T>>(MirrorPattern(2, 6)), seed + 2);
  m.Add(
      "conv", std::make_shared<TiedOblique<T>>(MirrorPattern(3, 9)), seed + 3);
  return m;
}

SgdOptions MakeOptions(double momentum = 0.9) {
  SgdOptions o;
  o.lr = 0.05;
  o.momentum = momentum;
  o.weight_decay = 1e-3;
  o.groups[1].lr = 0.1;
  return o;
}

// A deterministic gradient of the current values: pulls every entry towards a
// fixed target, plus noise seeded by the step number.
template <typename T>
void FillGradients(Model<T>& model, std::int64_t step) {
  std::mt19937_64 rng(1000 + std::uint64_t(step));
  std::normal_distribution<double> noise(0.0, 0.3);
  for (auto& b : model.blocks) {
    for (std::size_t i = 0; i < b.grad.size(); ++i) {
      b.grad[i] = T(double(b.value[i]) - std::sin(double(i)) + noise(rng));
    }
  }
}

template <typename T>
double Loss(const Model<T>& model) {
  double f = 0;
  for (const auto& b : model.blocks) {
    for (std::size_t i = 0; i < b.value.size(); ++i) {
      const double d = double(b.value[i]) - std::sin(double(i));
      f += 0.5 * d * d;
    }
  }
  return f;
}

template <typename T>
void Train(Model<T>& model, RiemannianSgd<T>& opt, int steps) {
  for (int s = 0; s < steps; ++s) {
    FillGradients(model, opt.step_count());
    REQUIRE(opt.Step().moved());
  }
}

template <typename T>
struct Snapshot {
  std::vector<std::vector<T>> values;
  SgdState<T> state;
  explicit Snapshot(const Model<T>& m, const RiemannianSgd<T>& opt)
      : values(m.Values()), state(opt.State()) {}
  bool Same(const Model<T>& m, const RiemannianSgd<T>& opt) const {
    return BitwiseEqual(m.Values(), values) && SameState(opt.State(), state);
  }
};

// Loading `path` into opt (which views model) must throw E with a message
// naming the file and containing `what`, and leave both bitwise unchanged.
template <typename E, typename T>
void ExpectLoadFails(const std::string& path,
                     Model<T>& model,
                     RiemannianSgd<T>& opt,
                     const std::string& what,
                     const CheckpointParts<T>& parts = {}) {
  const Snapshot<T> before(model, opt);
  INFO(what);
  REQUIRE_THROWS_AS(LoadCheckpoint(path, &opt, parts), E);
  REQUIRE_THROWS_WITH(LoadCheckpoint(path, &opt, parts),
                      Contains(path) && Contains(what));
  CHECK(before.Same(model, opt));
}

}  // namespace

TEMPLATE_TEST_CASE(
    "Checkpoint round trip continues bit-identically with momentum",
    "[optim][checkpoint]",
    float,
    double) {
  using T = TestType;
  TempDir dir;
  const std::string path = dir.File("run.ckpt");

  Model<T> a = MakeModel<T>(1);
  RiemannianSgd<T> opt_a(a.Params(), MakeOptions());
  Train(a, opt_a, 15);
  opt_a.SetGroupLr(1, 0.07);
  opt_a.ScaleLr(0.5);
  SaveCheckpoint(path, opt_a);
  Train(a, opt_a, 25);  // the uninterrupted run

  Model<T> b = MakeModel<T>(99);  // different starting values
  RiemannianSgd<T> opt_b(b.Params(), MakeOptions());
  LoadCheckpoint(path, &opt_b);
  CHECK(opt_b.step_count() == 15);
  CHECK(opt_b.lr() == 0.025);
  CHECK(opt_b.GroupLr(1) == 0.035);
  Train(b, opt_b, 25);
  CHECK(BitwiseEqual(b.Values(), a.Values()));
  CHECK(SameState(opt_b.State(), opt_a.State()));

  const std::vector<CheckpointRecordInfo> records = ListCheckpoint(path);
  int values = 0, momenta = 0;
  for (const auto& r : records) {
    if (r.role == "value") ++values;
    if (r.role == "momentum") ++momenta;
    if (r.name == "fc1") {
      CHECK(r.kind == "oblique");
      CHECK(r.rows == 5);
      CHECK(r.cols == 8);
      CHECK(r.dtype == (std::is_same_v<T, float> ? "float32" : "float64"));
    }
    if (r.name == "tied") CHECK(r.kind == "tie_subspace");
    if (r.name == "conv") CHECK(r.kind == "tied_oblique");
  }
  CHECK(values == 4);
  CHECK(momenta == 4);
}

TEMPLATE_TEST_CASE(
    "Checkpoint with the bold driver and schedules continues bit-identically",
    "[optim][checkpoint][bold]",
    float,
    double) {
  using T = TestType;
  TempDir dir;
  const std::string path = dir.File("bold.ckpt");
  SgdOptions o = MakeOptions(0.5);
  o.lr = 1.5;  // too large at first: the driver rejects and shrinks

  auto run_epochs = [](Model<T>& m,
                       RiemannianSgd<T>& opt,
                       BoldDriver<T>& bold,
                       PlateauDecay& plateau,
                       StoppingRule& stop,
                       int epochs,
                       std::vector<StepResult>* log) {
    for (int e = 0; e < epochs; ++e) {
      Train(m, opt, 4);
      const double loss = Loss(m);
      log->push_back(bold.EndEpoch(loss));
      plateau.EndEpoch(bold.best_loss(), &opt);
      stop.EndEpoch(EpochReport{loss, bold.best_loss(), {}});
    }
  };

  Model<T> a = MakeModel<T>(3);
  RiemannianSgd<T> opt_a(a.Params(), o);
  BoldDriver<T> bold_a(&opt_a);
  PlateauDecay plateau_a(PlateauOptions{0.1, 2, 1e-3, -1});
  StoppingRule stop_a(StoppingOptions{});
  std::vector<StepResult> log_a, log_b;
  run_epochs(a, opt_a, bold_a, plateau_a, stop_a, 6, &log_a);
  REQUIRE(bold_a.rejected() > 0);
  SaveCheckpoint(path, opt_a, CheckpointParts<T>{&bold_a, &plateau_a, &stop_a});
  log_a.clear();
  run_epochs(a, opt_a, bold_a, plateau_a, stop_a, 12, &log_a);

  Model<T> b = MakeModel<T>(4);
  RiemannianSgd<T> opt_b(b.Params(), o);
  BoldDriver<T> bold_b(&opt_b);
  PlateauDecay plateau_b(PlateauOptions{0.1, 2, 1e-3, -1});
  StoppingRule stop_b(StoppingOptions{});
  LoadCheckpoint(
      path, &opt_b, CheckpointParts<T>{&bold_b, &plateau_b, &stop_b});
  run_epochs(b, opt_b, bold_b, plateau_b, stop_b, 12, &log_b);

  CHECK(BitwiseEqual(b.Values(), a.Values()));
  CHECK(SameState(opt_b.State(), opt_a.State()));
  CHECK(bold_b.accepted() == bold_a.accepted());
  CHECK(bold_b.rejected() == bold_a.rejected());
  CHECK(bold_b.best_loss() == bold_a.best_loss());
  CHECK(BitwiseEqual(bold_b.State().values, bold_a.State().values));
  CHECK(plateau_b.State().decays == plateau_a.State().decays);
  CHECK(stop_b.State().epochs == stop_a.State().epochs);
  REQUIRE(log_b.size() == log_a.size());
  for (std::size_t e = 0; e < log_a.size(); ++e) {
    CHECK(log_b[e].accepted == log_a[e].accepted);
    CHECK(log_b[e].lr == log_a[e].lr);
  }
}

TEST_CASE(
    "Corrupt and truncated checkpoints are rejected, and the optimizer is "
    "untouched",
    "[optim][checkpoint][errors]") {
  TempDir dir;
  const std::string good = dir.File("good.ckpt");
  const std::string bad = dir.File("bad.ckpt");
  Model<double> a = MakeModel<double>(5);
  RiemannianSgd<double> opt_a(a.Params(), MakeOptions());
  Train(a, opt_a, 3);
  SaveCheckpoint(good, opt_a);
  const std::vector<char> bytes = ReadBytes(good);
  REQUIRE(bytes.size() > 200);

  Model<double> b = MakeModel<double>(6);
  RiemannianSgd<double> opt_b(b.Params(), MakeOptions());
  Train(b, opt_b, 2);
  auto expect_error = [&](const std::vector<char>& content,
                          const std::string& what) {
    WriteBytes(bad, content);
    ExpectLoadFails<FileError>(bad, b, opt_b, what);
  };

  SECTION("a flipped byte anywhere fails the CRC") {
    for (std::size_t at :
         {std::size_t(30), bytes.size() / 2, bytes.size() - 10}) {
      std::vector<char> c = bytes;
      c[at] ^= 0x10;
      expect_error(c, "CRC");
    }
  }
  SECTION("a flipped CRC byte") {
    std::vector<char> c = bytes;
    c.at(c.size() - 1) ^= 0x01;
    expect_error(c, "CRC");
  }
  SECTION("truncated files") {
    for (std::size_t keep : {std::size_t(0),
                             std::size_t(10),
                             std::size_t(27),
                             bytes.size() / 2,
                             bytes.size() - 1}) {
      expect_error(std::vector<char>(bytes.begin(),
                                     bytes.begin() + std::ptrdiff_t(keep)),
                   "truncated");
    }
  }
  SECTION("trailing bytes") {
    std::vector<char> c = bytes;
    c.push_back(0);
    expect_error(c, "trailing");
  }
  SECTION("wrong magic") {
    std::vector<char> c = bytes;
    c[0] = 'X';
    expect_error(c, "magic");
  }
  SECTION("wrong version") {
    std::vector<char> c = bytes;
    c[8] = 7;
    expect_error(c, "version 7");
  }
  SECTION("a missing file") {
    ExpectLoadFails<FileError>(dir.File("none.ckpt"), b, opt_b, "cannot open");
  }
  // The good file still loads.
  LoadCheckpoint(good, &opt_b);
  CHECK(BitwiseEqual(b.Values(), a.Values()));
}

// Found under UBSan (docs/testing.md): a group id outside int's
// range was converted to int before it was checked (undefined behaviour).
TEST_CASE("A checkpoint naming a parameter group that is not an int is corrupt",
          "[optim][checkpoint][errors]") {
  TempDir dir;
  const std::string good = dir.File("good.ckpt");
  const std::string bad = dir.File("bad.ckpt");
  Model<double> a = MakeModel<double>(5);
  RiemannianSgd<double> opt_a(a.Params(), MakeOptions());
  Train(a, opt_a, 2);
  SaveCheckpoint(good, opt_a);
  const std::vector<char> bytes = ReadBytes(good);
  // group_lr holds (id, lr) pairs; MakeOptions gives group 1 its own rate.
  const std::size_t at = PayloadOffset(bytes, "group_lr");
  REQUIRE(at + 16 <= bytes.size());
  double id, lr;
  std::memcpy(&id, bytes.data() + at, 8);
  std::memcpy(&lr, bytes.data() + at + 8, 8);
  REQUIRE(id == 1.0);
  REQUIRE(lr == 0.1);

  Model<double> b = MakeModel<double>(6);
  RiemannianSgd<double> opt_b(b.Params(), MakeOptions());
  Train(b, opt_b, 1);
  auto with_id = [&](double v) {
    std::vector<char> c = bytes;
    std::memcpy(c.data() + at, &v, 8);
    Reseal(c);
    WriteBytes(bad, c);
  };
  for (double v : {1e300,
                   -1e300,
                   2147483648.0,
                   -2147483649.0,
                   std::numeric_limits<double>::infinity(),
                   std::numeric_limits<double>::quiet_NaN(),
                   1.5}) {
    INFO("group id " << v);
    with_id(v);
    ExpectLoadFails<FileError>(bad, b, opt_b, "which is not an int");
  }
  // An int that no parameter's group has is a mismatch, not corruption.
  with_id(7.0);
  ExpectLoadFails<InvalidArgument>(
      bad, b, opt_b, "learning rate for parameter group 7");
  // The unedited bytes, resealed, still load.
  with_id(1.0);
  LoadCheckpoint(bad, &opt_b);
  CHECK(BitwiseEqual(b.Values(), a.Values()));
}

TEST_CASE("Checkpoints that do not fit the optimizer are rejected by name",
          "[optim][checkpoint][errors]") {
  TempDir dir;
  const std::string path = dir.File("run.ckpt");
  Model<double> a = MakeModel<double>(7);
  RiemannianSgd<double> opt_a(a.Params(), MakeOptions());
  Train(a, opt_a, 3);
  SaveCheckpoint(path, opt_a);

  // Loads into `model` (after some training) must fail with `what` and leave
  // it untouched.
  auto expect_mismatch =
      [&](Model<double>& model, const SgdOptions& o, const std::string& what) {
        RiemannianSgd<double> opt(model.Params(), o);
        Train(model, opt, 2);
        ExpectLoadFails<InvalidArgument>(path, model, opt, what);
      };

  SECTION("shape") {
    Model<double> m = MakeModel<double>(8);
    m.blocks[1].manifold = std::make_shared<Euclidean<double>>(1, 6);
    m.blocks[1].value.assign(6, 0.5);
    m.blocks[1].grad.assign(6, 0.0);
    expect_mismatch(
        m, MakeOptions(), "'bias' has shape 1x5 in the file but 1x6");
  }
  SECTION("manifold kind") {
    Model<double> m;
    m.Add("fc1", std::make_shared<Oblique<double>>(5, 8), 8);
    m.Add("bias", std::make_shared<Oblique<double>>(1, 5), 9, 1);
    m.Add(
        "tied", std::make_shared<TieSubspace<double>>(MirrorPattern(2, 6)), 10);
    m.Add("conv", std::make_shared<Oblique<double>>(3, 9), 11);
    expect_mismatch(m,
                    MakeOptions(),
                    "'euclidean' manifold in the file but on oblique(1x5)");
    m.blocks[1].manifold = std::make_shared<Euclidean<double>>(1, 5);
    expect_mismatch(m,
                    MakeOptions(),
                    "'tied_oblique' manifold in the file but on oblique(3x9)");
  }
  SECTION("names") {
    Model<double> m = MakeModel<double>(8);
    m.blocks[2].name = "tied_renamed";
    expect_mismatch(m, MakeOptions(), "'tied_renamed'");
  }
  SECTION("parameter count") {
    Model<double> m = MakeModel<double>(8);
    m.blocks.erase(m.blocks.begin() + 2);
    expect_mismatch(
        m, MakeOptions(), "'tied' is in the file but not in the optimizer");
  }
  SECTION("momentum where the optimizer has none") {
    Model<double> m = MakeModel<double>(8);
    expect_mismatch(m, MakeOptions(0.0), "group has no momentum");
  }
  SECTION("learning-rate groups") {
    Model<double> m = MakeModel<double>(8);
    m.blocks[1].group = 0;
    SgdOptions o = MakeOptions();
    o.groups.clear();
    expect_mismatch(m, o, "parameter group 1");
  }
  SECTION("dtype") {
    Model<float> m = MakeModel<float>(8);
    RiemannianSgd<float> opt(m.Params(), MakeOptions());
    ExpectLoadFails<InvalidArgument>(
        path, m, opt, "float64 in the file but the optimizer uses float32");
  }
  SECTION("a bold driver asked for but not saved") {
    Model<double> m = MakeModel<double>(8);
    RiemannianSgd<double> opt(m.Params(), MakeOptions());
    BoldDriver<double> bold(&opt);
    ExpectLoadFails<InvalidArgument>(
        path, m, opt, "bold_driver", CheckpointParts<double>{&bold});
  }
}

TEST_CASE("Checkpoint points must be on their manifolds, momentum tangent",
          "[optim][checkpoint][errors]") {
  TempDir dir;
  const std::string path = dir.File("off.ckpt");
  SECTION("a point off the oblique manifold") {
    // Saved from an optimizer that tolerated it.
    Model<double> a = MakeModel<double>(11);
    for (int k = 0; k < 8; ++k) a.blocks[0].value[16 + k] *= 1.5;  // row 2
    SgdOptions loose = MakeOptions();
    loose.point_tolerance = 10.0;
    RiemannianSgd<double> opt_a(a.Params(), loose);
    SaveCheckpoint(path, opt_a);
    Model<double> b = MakeModel<double>(12);
    RiemannianSgd<double> opt_b(b.Params(), MakeOptions());
    ExpectLoadFails<InvalidArgument>(
        path, b, opt_b, "value record 'fc1' is not on oblique(5x8)");
  }
  SECTION("a momentum buffer outside the tangent space") {
    Model<double> a = MakeModel<double>(13);
    RiemannianSgd<double> opt_a(a.Params(), MakeOptions());
    SgdState<double> s = opt_a.State();
    s.momentum[0] = a.blocks[0].value;  // normal to the manifold
    opt_a.SetState(s);
    SaveCheckpoint(path, opt_a);
    Model<double> b = MakeModel<double>(14);
    RiemannianSgd<double> opt_b(b.Params(), MakeOptions());
    ExpectLoadFails<InvalidArgument>(
        path, b, opt_b, "momentum record 'fc1' is not in the tangent space");
  }
}

TEST_CASE("A failed save leaves the previous checkpoint byte-identical",
          "[optim][checkpoint][errors]") {
  TempDir dir;
  const std::string path = dir.File("run.ckpt");
  Model<double> a = MakeModel<double>(21);
  RiemannianSgd<double> opt(a.Params(), MakeOptions());
  Train(a, opt, 2);
  SaveCheckpoint(path, opt);
  const std::vector<char> previous = ReadBytes(path);
  Train(a, opt, 2);  // the state now differs from the file

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
    bool threw = false;
    std::string message;
    try {
      SaveCheckpoint(path, opt);
    } catch (const FileError& e) {
      threw = true;
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old_limit);
    ::sigaction(SIGXFSZ, &old_action, nullptr);
    CHECK(threw);
    CHECK_THAT(message, Contains(path) && Contains("unchanged"));
  }
  SECTION("the target is a directory: the rename fails") {
    const std::string target = dir.File("subdir");
    fs::create_directory(target);
    fs::create_directory(target + "/keep");  // a non-empty directory
    REQUIRE_THROWS_AS(SaveCheckpoint(target, opt), FileError);
    CHECK(fs::is_directory(target + "/keep"));
    fs::remove_all(target);
  }
  SECTION("a directory that does not exist") {
    const std::string missing = dir.File("no/such/dir/run.ckpt");
    REQUIRE_THROWS_WITH(SaveCheckpoint(missing, opt),
                        Contains("no/such/dir") && Contains("temporary file"));
  }
  CHECK(ReadBytes(path) == previous);
  CHECK(dir.Entries() == 1);  // no temporary file left behind
  // And a successful save replaces it.
  SaveCheckpoint(path, opt);
  CHECK(ReadBytes(path) != previous);
  CHECK(dir.Entries() == 1);
}

TEST_CASE("A checkpoint gets a new file's mode, or keeps the previous one's",
          "[optim][checkpoint]") {
  TempDir dir;
  const std::string path = dir.File("run.ckpt");
  Model<float> a = MakeModel<float>(31);
  RiemannianSgd<float> opt(a.Params(), MakeOptions());
  const mode_t mask = ::umask(0027);  // restored below
  SaveCheckpoint(path, opt);
  struct stat info;
  REQUIRE(::stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0640);
  REQUIRE(::chmod(path.c_str(), 0604) == 0);
  SaveCheckpoint(path, opt);
  REQUIRE(::stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0604);
  ::umask(mask);
}
