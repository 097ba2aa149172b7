#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <iomanip>
#include <limits>
#include <sstream>

#include "data/idx.h"
#include "file_io.h"

namespace symopt {
namespace data {
namespace {

[[noreturn]] void ThrowFileError(const std::string& path,
                                 const std::string& problem) {
  throw FileError(path + ": " + problem);
}

std::string Hex32(std::uint32_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << std::setw(8) << std::setfill('0') << v;
  return os.str();
}

std::string DimsString(const std::vector<std::int64_t>& dims) {
  std::ostringstream os;
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? " x " : "") << dims[i];
  return os.str();
}

bool KnownType(std::uint8_t code) {
  switch (code) {
    case 0x08:
    case 0x09:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x0E:
      return true;
    default:
      return false;
  }
}

std::string DescribeMagic(std::uint32_t magic) {
  const std::uint8_t code = (magic >> 8) & 0xff;
  if ((magic >> 16) != 0 || !KnownType(code)) return "not an IDX header";
  std::ostringstream os;
  os << IdxTypeName(IdxType(code)) << ", rank " << (magic & 0xff);
  return os.str();
}

std::uint32_t ReadBigEndian32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) |
         (std::uint32_t(p[2]) << 8) | std::uint32_t(p[3]);
}

void AppendBigEndian32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  out.push_back(std::uint8_t(v >> 24));
  out.push_back(std::uint8_t(v >> 16));
  out.push_back(std::uint8_t(v >> 8));
  out.push_back(std::uint8_t(v));
}

bool HostIsLittleEndian() {
  const std::uint16_t one = 1;
  std::uint8_t first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// Converts elements of `size` bytes between big-endian and host order, in
// place.
void SwapToFromBigEndian(std::uint8_t* p, std::int64_t count, int size) {
  if (size == 1 || !HostIsLittleEndian()) return;
  for (std::int64_t i = 0; i < count; ++i, p += size) {
    for (int a = 0, b = size - 1; a < b; ++a, --b) std::swap(p[a], p[b]);
  }
}

std::vector<std::uint8_t> ReadWholeFile(const std::string& path) {
  return internal::ReadWholeFile(path, path + ": ");
}

bool IsGzip(const std::vector<std::uint8_t>& bytes, size_t offset = 0) {
  return bytes.size() >= offset + 2 && bytes[offset] == 0x1f &&
         bytes[offset + 1] == 0x8b;
}

// Decompresses one or more concatenated gzip members.
std::vector<std::uint8_t> Gunzip(const std::string& path,
                                 const std::vector<std::uint8_t>& in) {
  std::vector<std::uint8_t> out(std::max<size_t>(in.size() * 2, 1024));
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, 15 + 16) != Z_OK) {
    ThrowFileError(path, "corrupt gzip stream: zlib could not start");
  }
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = 0;
  size_t in_used = 0, out_used = 0;
  auto fail = [&](const std::string& why) {
    std::ostringstream os;
    os << "corrupt gzip stream: " << why << " (after " << out_used
       << " decompressed bytes, at compressed byte " << in_used << " of "
       << in.size() << ")";
    inflateEnd(&zs);
    ThrowFileError(path, os.str());
  };
  // zlib counts in uInt, so feed and drain in chunks of at most 1 GiB.
  const size_t kChunk = size_t(1) << 30;
  for (;;) {
    if (zs.avail_in == 0) {
      zs.next_in = const_cast<Bytef*>(in.data() + in_used);
      zs.avail_in = uInt(std::min(kChunk, in.size() - in_used));
    }
    if (out_used == out.size()) out.resize(out.size() * 2);
    zs.next_out = out.data() + out_used;
    zs.avail_out = uInt(std::min(kChunk, out.size() - out_used));
    const uInt avail_in_before = zs.avail_in, avail_out_before = zs.avail_out;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    in_used += avail_in_before - zs.avail_in;
    out_used += avail_out_before - zs.avail_out;
    if (rc == Z_STREAM_END) {
      if (in_used == in.size()) break;
      if (!IsGzip(in, in_used)) {
        std::ostringstream os;
        os << (in.size() - in_used)
           << " bytes of trailing data after the gzip stream";
        fail(os.str());
      }
      inflateReset(&zs);  // next concatenated member
      zs.avail_in = 0;
      continue;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      fail(zs.msg ? zs.msg : "invalid compressed data");
    }
    // Output space left but no input: the stream stops before its end.
    if (in_used == in.size() && zs.avail_out != 0) {
      fail("compressed data ends before the end of the stream (truncated .gz)");
    }
  }
  inflateEnd(&zs);
  out.resize(out_used);
  return out;
}

std::vector<std::uint8_t> Gzip(const std::vector<std::uint8_t>& in) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  SYMOPT_CHECK(deflateInit2(&zs,
                            Z_DEFAULT_COMPRESSION,
                            Z_DEFLATED,
                            15 + 16,
                            8,
                            Z_DEFAULT_STRATEGY) == Z_OK,
               "zlib deflateInit2 failed");
  std::vector<std::uint8_t> out(deflateBound(&zs, uLong(in.size())));
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = uInt(in.size());
  zs.next_out = out.data();
  zs.avail_out = uInt(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  const size_t produced = zs.total_out;
  deflateEnd(&zs);
  SYMOPT_CHECK(rc == Z_STREAM_END, "zlib deflate failed with code " << rc);
  out.resize(produced);
  return out;
}

void CheckArray(const IdxArray& array) {
  SYMOPT_CHECK(KnownType(std::uint8_t(array.type)),
               "IdxArray has unknown element type code " << int(array.type));
  SYMOPT_CHECK(!array.dims.empty() && array.dims.size() <= 255,
               "IdxArray rank must be in [1, 255], got " << array.dims.size());
  for (std::int64_t d : array.dims) {
    SYMOPT_CHECK(d >= 0 && d <= std::int64_t(0xffffffffu),
                 "IdxArray dimension " << d << " is outside [0, 2^32)");
  }
  SYMOPT_CHECK(std::int64_t(array.bytes.size()) ==
                   array.NumElements() * IdxTypeSize(array.type),
               "IdxArray of dims "
                   << DimsString(array.dims) << " and type "
                   << IdxTypeName(array.type) << " needs "
                   << array.NumElements() * IdxTypeSize(array.type)
                   << " bytes, has " << array.bytes.size());
}

}  // namespace

int IdxTypeSize(IdxType type) {
  switch (type) {
    case IdxType::kUint8:
    case IdxType::kInt8:
      return 1;
    case IdxType::kInt16:
      return 2;
    case IdxType::kInt32:
    case IdxType::kFloat32:
      return 4;
    case IdxType::kFloat64:
      return 8;
  }
  SYMOPT_CHECK(false, "unknown IDX type code " << int(type));
  return 0;
}

const char* IdxTypeName(IdxType type) {
  switch (type) {
    case IdxType::kUint8:
      return "uint8";
    case IdxType::kInt8:
      return "int8";
    case IdxType::kInt16:
      return "int16";
    case IdxType::kInt32:
      return "int32";
    case IdxType::kFloat32:
      return "float32";
    case IdxType::kFloat64:
      return "float64";
  }
  return "unknown";
}

std::uint32_t IdxMagic(IdxType type, int rank) {
  SYMOPT_CHECK(rank >= 1 && rank <= 255,
               "IDX rank must be in [1, 255], got " << rank);
  return (std::uint32_t(type) << 8) | std::uint32_t(rank);
}

std::int64_t IdxArray::NumElements() const {
  std::int64_t n = 1;
  for (std::int64_t d : dims) n *= d;
  return n;
}

double IdxArray::Value(std::int64_t i) const {
  SYMOPT_CHECK(
      i >= 0 && i < NumElements(),
      "IdxArray::Value index " << i << " outside [0, " << NumElements() << ")");
  const std::uint8_t* p = bytes.data() + i * IdxTypeSize(type);
  switch (type) {
    case IdxType::kUint8:
      return *p;
    case IdxType::kInt8:
      return std::int8_t(*p);
    case IdxType::kInt16: {
      std::int16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    case IdxType::kInt32: {
      std::int32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case IdxType::kFloat32: {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case IdxType::kFloat64: {
      double v;
      std::memcpy(&v, p, 8);
      return v;
    }
  }
  return 0;
}

IdxArray MakeIdxUint8(std::vector<std::int64_t> dims,
                      std::vector<std::uint8_t> values) {
  IdxArray a;
  a.type = IdxType::kUint8;
  a.dims = std::move(dims);
  a.bytes = std::move(values);
  CheckArray(a);
  return a;
}

namespace {

// Decodes the IDX bytes `raw` (already read from `path`, possibly gzip). When
// `want` is not 0 the magic number must equal it.
IdxArray DecodeIdx(const std::string& path,
                   std::vector<std::uint8_t> raw,
                   std::uint32_t want) {
  const bool gzip = IsGzip(raw);
  if (gzip) raw = Gunzip(path, raw);
  const char* what = gzip ? " decompressed bytes" : " bytes";
  auto truncated = [&](std::uint64_t expected, const std::string& detail) {
    std::ostringstream os;
    os << "truncated: expected " << expected << what << " (" << detail
       << "), found " << raw.size();
    ThrowFileError(path, os.str());
  };
  if (raw.size() < 4) truncated(4, "the magic number");
  const std::uint32_t magic = ReadBigEndian32(raw.data());
  if (want != 0 && magic != want) {
    ThrowFileError(path,
                   "wrong magic number " + Hex32(magic) + " (" +
                       DescribeMagic(magic) + "), expected " + Hex32(want) +
                       " (" + DescribeMagic(want) + ")");
  }
  const std::uint8_t code = std::uint8_t(magic >> 8);
  const int rank = int(magic & 0xff);
  if ((magic >> 16) != 0 || !KnownType(code) || rank == 0) {
    ThrowFileError(path,
                   "wrong magic number " + Hex32(magic) +
                       ": not an IDX file (expected 0x0000TTRR with "
                       "type TT in 08..0E and rank RR >= 1)");
  }
  const std::uint64_t header = 4 + 4 * std::uint64_t(rank);
  if (raw.size() < header) {
    std::ostringstream os;
    os << "header: magic number and " << rank << " sizes";
    truncated(header, os.str());
  }
  IdxArray array;
  array.type = IdxType(code);
  array.dims.resize(rank);
  const std::uint64_t elem = IdxTypeSize(array.type);
  std::uint64_t count = 1;
  bool overflow = false;
  for (int d = 0; d < rank; ++d) {
    array.dims[d] = ReadBigEndian32(raw.data() + 4 + 4 * d);
    const std::uint64_t dim = std::uint64_t(array.dims[d]);
    if (dim != 0 && count > (std::uint64_t(1) << 62) / dim) overflow = true;
    count *= dim;
  }
  if (overflow) {
    ThrowFileError(path,
                   "dimensions " + DimsString(array.dims) +
                       " describe more than 2^62 elements");
  }
  const std::uint64_t expected = header + count * elem;
  std::ostringstream detail;
  detail << header << "-byte header + " << DimsString(array.dims) << " "
         << IdxTypeName(array.type) << " elements";
  if (raw.size() < expected) truncated(expected, detail.str());
  if (raw.size() > expected) {
    std::ostringstream os;
    os << (raw.size() - expected) << " extra bytes after the data: expected "
       << expected << what << " (" << detail.str() << "), found " << raw.size();
    ThrowFileError(path, os.str());
  }
  raw.erase(raw.begin(), raw.begin() + std::ptrdiff_t(header));
  SwapToFromBigEndian(raw.data(), std::int64_t(count), int(elem));
  array.bytes = std::move(raw);
  return array;
}

}  // namespace

IdxArray ReadIdx(const std::string& path) {
  return DecodeIdx(path, ReadWholeFile(path), 0);
}

IdxArray ReadIdx(const std::string& path, IdxType type, int rank) {
  return DecodeIdx(path, ReadWholeFile(path), IdxMagic(type, rank));
}

std::vector<std::uint8_t> EncodeIdx(const IdxArray& array,
                                    IdxCompression compression) {
  CheckArray(array);
  const int rank = int(array.dims.size());
  std::vector<std::uint8_t> bytes;
  bytes.reserve(4 + 4 * rank + array.bytes.size());
  AppendBigEndian32(bytes, IdxMagic(array.type, rank));
  for (std::int64_t d : array.dims) AppendBigEndian32(bytes, std::uint32_t(d));
  const size_t header = bytes.size();
  bytes.insert(bytes.end(), array.bytes.begin(), array.bytes.end());
  SwapToFromBigEndian(
      bytes.data() + header, array.NumElements(), IdxTypeSize(array.type));
  if (compression == IdxCompression::kGzip) bytes = Gzip(bytes);
  return bytes;
}

void WriteIdx(const std::string& path,
              const IdxArray& array,
              IdxCompression compression) {
  WriteFileAtomically(path, EncodeIdx(array, compression));
}

void WriteFileAtomically(const std::string& path,
                         const std::vector<std::uint8_t>& bytes) {
  internal::WriteFileAtomic(path, bytes, path + ": ");
}

void WriteFilesAtomically(
    const std::vector<std::pair<std::string, const std::vector<std::uint8_t>*>>&
        files) {
  std::vector<std::string> temporaries;
  auto remove_temporaries = [&](size_t from) {
    for (size_t f = from; f < temporaries.size(); ++f) {
      ::unlink(temporaries[f].c_str());
    }
  };
  try {
    for (const auto& [path, bytes] : files) {
      temporaries.push_back(
          internal::WriteTemporaryFile(path, *bytes, path + ": "));
    }
  } catch (...) {
    remove_temporaries(0);
    throw;
  }
  for (size_t f = 0; f < files.size(); ++f) {
    try {
      internal::RenameOver(
          temporaries[f], files[f].first, files[f].first + ": ");
    } catch (...) {
      remove_temporaries(f + 1);
      throw;
    }
  }
}

}  // namespace data
}  // namespace symopt
