#include <zlib.h>

#include <cstring>

#include "catch.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data_test_util.h"

using namespace symopt;
using namespace symopt::data;
using namespace symopt::testing;
using Catch::Contains;

// The expression throws FileError and its message matches.
#define CHECK_FILE_ERROR(expr, matcher) \
  do {                                  \
    CHECK_THROWS_AS(expr, FileError);   \
    CHECK_THROWS_WITH(expr, matcher);   \
  } while (0)

namespace {

// gzip-compresses bytes with zlib (independently of the writer under test).
std::vector<std::uint8_t> GzipBytes(const std::vector<std::uint8_t>& in) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) ==
          Z_OK);
  std::vector<std::uint8_t> out(deflateBound(&zs, uLong(in.size())));
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = uInt(in.size());
  zs.next_out = out.data();
  zs.avail_out = uInt(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// A plain IDX file of uint8 images [n, rows, cols] built by hand.
std::vector<std::uint8_t> HandMadeImages(std::uint32_t n,
                                         std::uint32_t rows,
                                         std::uint32_t cols) {
  std::vector<std::uint8_t> b = {0, 0, 8, 3};
  for (std::uint32_t d : {n, rows, cols}) {
    b.push_back(std::uint8_t(d >> 24));
    b.push_back(std::uint8_t(d >> 16));
    b.push_back(std::uint8_t(d >> 8));
    b.push_back(std::uint8_t(d));
  }
  const std::vector<std::uint8_t> px = RandomBytes(n * rows * cols, 5);
  b.insert(b.end(), px.begin(), px.end());
  return b;
}

}  // namespace

TEST_CASE("IDX uint8 round trip, plain and gzip", "[data][idx]") {
  TempDir dir;
  const IdxArray images = MakeIdxUint8({7, 5, 3}, RandomBytes(105, 1));
  const IdxArray labels = MakeIdxUint8({7}, RandomBytes(7, 2));
  for (IdxCompression c : {IdxCompression::kNone, IdxCompression::kGzip}) {
    const std::string suffix = c == IdxCompression::kGzip ? ".gz" : "";
    WriteIdx(dir.File("img" + suffix), images, c);
    WriteIdx(dir.File("lab" + suffix), labels, c);
    const IdxArray back = ReadIdx(dir.File("img" + suffix), IdxType::kUint8, 3);
    CHECK(back.type == IdxType::kUint8);
    CHECK(back.dims == images.dims);
    CHECK(back.bytes == images.bytes);
    CHECK(ReadIdx(dir.File("lab" + suffix)).bytes == labels.bytes);
    const std::vector<std::uint8_t> raw = ReadBytes(dir.File("img" + suffix));
    CHECK((raw[0] == 0x1f && raw[1] == 0x8b) == (c == IdxCompression::kGzip));
  }
  // The plain file is exactly the MNIST layout: magic, big-endian sizes, data.
  const std::vector<std::uint8_t> raw = ReadBytes(dir.File("img"));
  REQUIRE(raw.size() == 16 + 105);
  CHECK(std::vector<std::uint8_t>(raw.begin(), raw.begin() + 16) ==
        std::vector<std::uint8_t>{
            0, 0, 8, 3, 0, 0, 0, 7, 0, 0, 0, 5, 0, 0, 0, 3});
  CHECK(std::vector<std::uint8_t>(raw.begin() + 16, raw.end()) == images.bytes);
  // No temporary files are left behind.
  CHECK(dir.Entries() ==
        std::vector<std::string>{"img", "img.gz", "lab", "lab.gz"});
}

TEST_CASE("IDX reads a hand-made file and a zlib-compressed copy",
          "[data][idx]") {
  TempDir dir;
  const std::vector<std::uint8_t> plain = HandMadeImages(4, 2, 3);
  WriteBytes(dir.File("plain"), plain);
  WriteBytes(dir.File("zipped"), GzipBytes(plain));
  for (const char* name : {"plain", "zipped"}) {
    const IdxArray a = ReadIdx(dir.File(name));
    CHECK(a.dims == std::vector<std::int64_t>{4, 2, 3});
    CHECK(a.bytes ==
          std::vector<std::uint8_t>(plain.begin() + 16, plain.end()));
  }
  // Two concatenated gzip members (as `cat a.gz b.gz` makes) are one stream.
  const std::vector<std::uint8_t> first(plain.begin(), plain.begin() + 10);
  const std::vector<std::uint8_t> rest(plain.begin() + 10, plain.end());
  std::vector<std::uint8_t> two = GzipBytes(first);
  const std::vector<std::uint8_t> second = GzipBytes(rest);
  two.insert(two.end(), second.begin(), second.end());
  WriteBytes(dir.File("two_members"), two);
  CHECK(ReadIdx(dir.File("two_members")).bytes ==
        std::vector<std::uint8_t>(plain.begin() + 16, plain.end()));
}

TEST_CASE("IDX is detected as gzip by content, not by name", "[data][idx]") {
  TempDir dir;
  const IdxArray a = MakeIdxUint8({3, 2}, RandomBytes(6, 3));
  WriteIdx(dir.File("compressed.idx"), a, IdxCompression::kGzip);
  WriteIdx(dir.File("plain.gz"), a, IdxCompression::kNone);
  CHECK(ReadIdx(dir.File("compressed.idx")).bytes == a.bytes);
  CHECK(ReadIdx(dir.File("plain.gz")).bytes == a.bytes);
}

TEST_CASE("IDX other element types round trip big-endian", "[data][idx]") {
  TempDir dir;
  auto round_trip = [&](IdxType type, const std::vector<double>& values) {
    IdxArray a;
    a.type = type;
    a.dims = {std::int64_t(values.size())};
    a.bytes.resize(values.size() * IdxTypeSize(type));
    for (size_t i = 0; i < values.size(); ++i) {
      std::uint8_t* p = a.bytes.data() + i * IdxTypeSize(type);
      const double v = values[i];
      switch (type) {
        case IdxType::kInt8: {
          const std::int8_t x = std::int8_t(v);
          std::memcpy(p, &x, 1);
          break;
        }
        case IdxType::kInt16: {
          const std::int16_t x = std::int16_t(v);
          std::memcpy(p, &x, 2);
          break;
        }
        case IdxType::kInt32: {
          const std::int32_t x = std::int32_t(v);
          std::memcpy(p, &x, 4);
          break;
        }
        case IdxType::kFloat32: {
          const float x = float(v);
          std::memcpy(p, &x, 4);
          break;
        }
        case IdxType::kFloat64:
          std::memcpy(p, &v, 8);
          break;
        case IdxType::kUint8:
          *p = std::uint8_t(v);
          break;
      }
    }
    for (IdxCompression c : {IdxCompression::kNone, IdxCompression::kGzip}) {
      const std::string path = dir.File(IdxTypeName(type));
      WriteIdx(path, a, c);
      const IdxArray back = ReadIdx(path, type, 1);
      REQUIRE(back.NumElements() == std::int64_t(values.size()));
      for (size_t i = 0; i < values.size(); ++i) {
        CHECK(back.Value(std::int64_t(i)) == values[i]);
      }
    }
  };
  round_trip(IdxType::kInt8, {-128, -1, 0, 5, 127});
  round_trip(IdxType::kInt16, {-32768, -2, 258, 32767});
  round_trip(IdxType::kInt32, {-2147483648.0, -70000, 1, 16909060});
  round_trip(IdxType::kFloat32, {-1.5, 0.25, double(3e30f), 1.0 / 1024});
  round_trip(IdxType::kFloat64, {-1e-300, 0.1, 3.141592653589793});

  // Big-endian on disk: int16 258 = 0x0102 is stored as 01 02.
  IdxArray a;
  a.type = IdxType::kInt16;
  a.dims = {1};
  const std::int16_t v = 258;
  a.bytes.resize(2);
  std::memcpy(a.bytes.data(), &v, 2);
  WriteIdx(dir.File("be"), a);
  CHECK(ReadBytes(dir.File("be")) ==
        std::vector<std::uint8_t>{0, 0, 0x0B, 1, 0, 0, 0, 1, 0x01, 0x02});
}

TEST_CASE("IDX reader names the file and the problem", "[data][idx][errors]") {
  TempDir dir;
  const std::vector<std::uint8_t> good = HandMadeImages(10, 4, 4);  // 16 + 160

  SECTION("missing file") {
    const std::string path = dir.File("nope-images-idx3-ubyte");
    CHECK_FILE_ERROR(
        ReadIdx(path),
        Contains(path) && Contains("cannot open") && Contains("No such file"));
  }
  SECTION("a directory") {
    CHECK_FILE_ERROR(ReadIdx(dir.path()),
                     Contains(dir.path()) && Contains("is a directory"));
  }
  SECTION("truncated data") {
    const std::string path = dir.File("cut");
    WriteBytes(path,
               std::vector<std::uint8_t>(good.begin(), good.begin() + 100));
    CHECK_FILE_ERROR(ReadIdx(path),
                     Contains(path) && Contains("truncated") &&
                         Contains("expected 176 bytes") &&
                         Contains("10 x 4 x 4") && Contains("found 100"));
  }
  SECTION("truncated header") {
    const std::string path = dir.File("cut_header");
    WriteBytes(path,
               std::vector<std::uint8_t>(good.begin(), good.begin() + 10));
    CHECK_FILE_ERROR(ReadIdx(path),
                     Contains(path) && Contains("truncated") &&
                         Contains("expected 16 bytes") && Contains("found 10"));
    WriteBytes(path, {0, 0});
    CHECK_FILE_ERROR(ReadIdx(path),
                     Contains("expected 4 bytes") && Contains("found 2"));
  }
  SECTION("truncated data inside a valid gzip stream") {
    const std::string path = dir.File("cut.gz");
    WriteBytes(
        path,
        GzipBytes(std::vector<std::uint8_t>(good.begin(), good.begin() + 50)));
    CHECK_FILE_ERROR(ReadIdx(path),
                     Contains(path) && Contains("truncated") &&
                         Contains("expected 176 decompressed bytes") &&
                         Contains("found 50"));
  }
  SECTION("extra bytes after the data") {
    const std::string path = dir.File("long");
    std::vector<std::uint8_t> longer = good;
    longer.push_back(7);
    longer.push_back(7);
    WriteBytes(path, longer);
    CHECK_FILE_ERROR(ReadIdx(path),
                     Contains(path) && Contains("2 extra bytes") &&
                         Contains("expected 176") && Contains("found 178"));
  }
  SECTION("wrong magic number") {
    const std::string labels = dir.File("labels");
    WriteIdx(labels, MakeIdxUint8({10}, RandomBytes(10, 4)));
    CHECK_FILE_ERROR(ReadIdx(labels, IdxType::kUint8, 3),
                     Contains(labels) && Contains("wrong magic number") &&
                         Contains("0x00000801") &&
                         Contains("expected 0x00000803"));
    const std::string junk = dir.File("junk");
    WriteBytes(junk, {0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0});
    CHECK_FILE_ERROR(
        ReadIdx(junk),
        Contains(junk) && Contains("wrong magic number 0x12345678"));
    WriteBytes(junk, {0, 0, 0x07, 1, 0, 0, 0, 0});  // unknown type code
    CHECK_FILE_ERROR(ReadIdx(junk), Contains("wrong magic number 0x00000701"));
  }
  SECTION("truncated gzip file") {
    const std::string path = dir.File("cut_file.gz");
    const std::vector<std::uint8_t> gz = GzipBytes(good);
    WriteBytes(path, std::vector<std::uint8_t>(gz.begin(), gz.end() - 12));
    CHECK_FILE_ERROR(ReadIdx(path),
                     Contains(path) && Contains("corrupt gzip stream") &&
                         Contains("truncated .gz"));
  }
  SECTION("corrupt gzip stream") {
    const std::string path = dir.File("bad.gz");
    std::vector<std::uint8_t> gz = GzipBytes(good);
    // Corrupt the CRC-32 of the trailer: the data decode, the check fails.
    gz[gz.size() - 6] ^= 0xff;
    WriteBytes(path, gz);
    CHECK_FILE_ERROR(ReadIdx(path),
                     Contains(path) && Contains("corrupt gzip stream") &&
                         Contains("incorrect data check"));
    // Garbage after the gzip magic bytes.
    std::vector<std::uint8_t> junk = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    const std::vector<std::uint8_t> noise = RandomBytes(64, 9);
    junk.insert(junk.end(), noise.begin(), noise.end());
    WriteBytes(path, junk);
    CHECK_FILE_ERROR(ReadIdx(path),
                     Contains(path) && Contains("corrupt gzip stream"));
    // Trailing bytes that are not another gzip member.
    gz = GzipBytes(good);
    gz.push_back(1);
    gz.push_back(2);
    gz.push_back(3);
    WriteBytes(path, gz);
    CHECK_FILE_ERROR(ReadIdx(path),
                     Contains("corrupt gzip stream") &&
                         Contains("3 bytes of trailing data"));
  }
}

TEST_CASE("IDX dataset pairs: count and dimension mismatches",
          "[data][idx][errors]") {
  TempDir dir;
  const std::string images = dir.File("images"), labels = dir.File("labels");
  WriteIdx(images, MakeIdxUint8({6, 5, 5}, RandomBytes(150, 1)));
  WriteIdx(labels, MakeIdxUint8({5}, {0, 1, 2, 3, 4}));
  CHECK_FILE_ERROR(LoadIdxDataset(images, labels),
                   Contains(images) && Contains(labels) &&
                       Contains("image/label count mismatch") &&
                       Contains("6 images") && Contains("5 labels"));

  WriteIdx(labels, MakeIdxUint8({6}, {0, 1, 2, 3, 4, 5}));
  CHECK_FILE_ERROR(LoadIdxDataset(images, labels, 10, 28, 28),
                   Contains(images) && Contains("dimension mismatch") &&
                       Contains("5 x 5") && Contains("expected 28 x 28"));
  // Swapped files: the magic number tells images from labels.
  // NOLINTBEGIN(readability-suspicious-call-argument): swapped on purpose
  CHECK_FILE_ERROR(
      LoadIdxDataset(labels, images),
      Contains(labels) && Contains("wrong magic number 0x00000801"));
  // NOLINTEND(readability-suspicious-call-argument)

  WriteIdx(labels, MakeIdxUint8({6}, {0, 1, 2, 3, 12, 5}));
  CHECK_FILE_ERROR(LoadIdxDataset(images, labels),
                   Contains(labels) && Contains("label 12 at index 4") &&
                       Contains("outside [0, 10)"));
}

TEST_CASE("IDX dataset round trip scales pixels to [0, 1]", "[data][idx]") {
  TempDir dir;
  const std::vector<std::uint8_t> px = RandomBytes(4 * 3 * 2, 11);
  WriteIdx(
      dir.File("i.gz"), MakeIdxUint8({4, 3, 2}, px), IdxCompression::kGzip);
  WriteIdx(
      dir.File("l.gz"), MakeIdxUint8({4}, {3, 1, 4, 1}), IdxCompression::kGzip);
  const Dataset d = LoadIdxDataset(dir.File("i.gz"), dir.File("l.gz"));
  REQUIRE(d.images.shape() == nn::Shape{4, 1, 3, 2});
  CHECK(d.labels == std::vector<int>{3, 1, 4, 1});
  for (std::int64_t i = 0; i < d.images.size(); ++i) {
    CHECK(d.images[i] == float(px[i]) / 255.0f);
  }
  SaveIdxDataset(d, dir.File("i2"), dir.File("l2"), IdxCompression::kNone);
  CHECK(ReadIdx(dir.File("i2")).bytes == px);
  const Dataset again = LoadIdxDataset(dir.File("i2"), dir.File("l2"));
  CHECK(SameValues(again.images, d.images));
  CHECK(again.labels == d.labels);
}

TEST_CASE("Train/test directories accept plain and gzip files", "[data][idx]") {
  TempDir dir;
  const char* names[4] = {"train-images-idx3-ubyte",
                          "train-labels-idx1-ubyte",
                          "t10k-images-idx3-ubyte",
                          "t10k-labels-idx1-ubyte"};
  CHECK(!IdxTrainTestAvailable(dir.path()));
  WriteIdx(dir.File(names[0]),
           MakeIdxUint8({3, 28, 28}, RandomBytes(3 * 784, 1)));
  WriteIdx(dir.File(std::string(names[1]) + ".gz"),
           MakeIdxUint8({3}, {7, 8, 9}),
           IdxCompression::kGzip);
  WriteIdx(dir.File(names[2]),
           MakeIdxUint8({2, 28, 28}, RandomBytes(2 * 784, 2)));
  WriteIdx(dir.File(names[3]), MakeIdxUint8({2}, {0, 9}));
  REQUIRE(IdxTrainTestAvailable(dir.path()));
  const TrainTest tt = LoadIdxTrainTest(dir.path(), "test data");
  CHECK(tt.train.images.shape() == nn::Shape{3, 1, 28, 28});
  CHECK(tt.train.labels == std::vector<int>{7, 8, 9});
  CHECK(tt.test.labels == std::vector<int>{0, 9});
  // 28 x 28 is required of the standard datasets.
  WriteIdx(dir.File(names[2]),
           MakeIdxUint8({2, 27, 28}, RandomBytes(2 * 756, 2)));
  CHECK_FILE_ERROR(LoadIdxTrainTest(dir.path(), "test data"),
                   Contains(names[2]) && Contains("dimension mismatch"));
}

TEST_CASE("A failed IDX write leaves no partial file", "[data][idx][errors]") {
  TempDir dir;
  const std::string target = dir.File("target");
  const IdxArray old_contents = MakeIdxUint8({3}, {1, 2, 3});
  WriteIdx(target, old_contents);
  const std::vector<std::uint8_t> before = ReadBytes(target);

  SECTION("invalid array: nothing is written") {
    IdxArray bad = MakeIdxUint8({4}, {1, 2, 3, 4});
    bad.bytes.pop_back();
    CHECK_THROWS_AS(WriteIdx(target, bad), InvalidArgument);
    CHECK_THROWS_AS(WriteIdx(dir.File("new"), bad, IdxCompression::kGzip),
                    InvalidArgument);
    Dataset d;
    d.images = nn::Tensor<float>({1, 1, 2, 2}, 0.5f);
    d.images[3] = 1.5f;  // not a pixel value
    d.labels = {0};
    CHECK_THROWS_AS(SaveIdxDataset(d, dir.File("di"), dir.File("dl")),
                    InvalidArgument);
  }
  SECTION("rename fails: the temporary file is removed") {
    // The target is a directory: the data are written to a temporary file
    // beside it, then the rename fails.
    const std::string sub = dir.File("sub");
    std::filesystem::create_directory(sub);
    WriteBytes(sub + "/keep", {1});
    CHECK_FILE_ERROR(WriteIdx(sub, old_contents),
                     Contains(sub) && Contains("cannot rename"));
  }
  SECTION("a dataset pair is written as one step") {
    Dataset d;
    d.images = nn::Tensor<float>({2, 1, 2, 2}, 0.5f);
    d.labels = {0, 1};
    // The image file could be written, the label file cannot: neither changes.
    CHECK_FILE_ERROR(
        SaveIdxDataset(d, target, dir.File("missing/labels")),
        Contains("missing/labels") && Contains("cannot create temporary file"));
  }
  SECTION("directory missing") {
    const std::string path = dir.File("no_such_dir/x.idx");
    CHECK_FILE_ERROR(
        WriteIdx(path, old_contents),
        Contains(path) && Contains("cannot create temporary file"));
  }
  // Only the old target (and the test's directory) remain, unchanged.
  CHECK(ReadBytes(target) == before);
  for (const std::string& name : dir.Entries()) {
    CHECK(name.find(".tmp") == std::string::npos);
  }
  CHECK(!std::filesystem::exists(dir.File("new")));
  CHECK(!std::filesystem::exists(dir.File("di")));
  CHECK(!std::filesystem::exists(dir.File("dl")));
}

TEST_CASE("Damaged IDX files give FileError, never a crash",
          "[data][idx][errors]") {
  TempDir dir;
  const std::vector<std::uint8_t> plain = HandMadeImages(3, 5, 4);
  const std::vector<std::uint8_t> zipped = GzipBytes(plain);
  const std::string path = dir.File("damaged");
  for (const std::vector<std::uint8_t>* original : {&plain, &zipped}) {
    // Every proper prefix is rejected.
    for (size_t cut = 0; cut < original->size(); ++cut) {
      WriteBytes(
          path,
          std::vector<std::uint8_t>(original->begin(),
                                    original->begin() + std::ptrdiff_t(cut)));
      REQUIRE_THROWS_AS(ReadIdx(path), FileError);
    }
    // Single corrupted bytes: rejected, or read back as the file says: a
    // changed pixel byte of the plain file, or a changed unprotected gzip
    // header field (bytes 4-9: mtime, extra flags, OS; the CRC-32 covers the
    // data only) with the data intact.
    Rng rng(99);
    int rejected = 0;
    for (int trial = 0; trial < 300; ++trial) {
      std::vector<std::uint8_t> bad = *original;
      const size_t at = size_t(rng.Below(bad.size()));
      bad[at] ^= std::uint8_t(1 + rng.Below(255));
      WriteBytes(path, bad);
      try {
        const IdxArray a = ReadIdx(path);
        REQUIRE(a.bytes.size() == plain.size() - 16);
        for (size_t i = 0; i < a.bytes.size(); ++i) {
          const bool changed = original == &plain && 16 + i == at;
          REQUIRE((a.bytes[i] == plain[16 + i]) == !changed);
        }
        if (original == &plain) REQUIRE(at >= 16);
        if (original == &zipped) REQUIRE((at >= 4 && at <= 9));
      } catch (const FileError&) {
        ++rejected;
      }
    }
    if (original == &zipped) CHECK(rejected > 250);
    if (original == &plain) CHECK(rejected > 0);
  }
}
