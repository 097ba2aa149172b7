// IDX files: the array format of MNIST and Fashion-MNIST (LeCun et al.,
// http://yann.lecun.com/exdb/mnist/).
//
// Layout (all integers big-endian):
//
//   bytes 0-1   0x00 0x00
//   byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
//               0x0D float32, 0x0E float64
//   byte  3     rank r (number of dimensions), r >= 1
//   then        r sizes, each a 4-byte unsigned integer
//   then        the elements, row-major (last index fastest), big-endian
//
// so the magic number (bytes 0-3 as one big-endian integer) of MNIST images
// [n, rows, cols] is 0x00000803 and of labels [n] is 0x00000801.
//
// Files may be gzip-compressed (RFC 1952, as distributed: *-ubyte.gz). The
// reader decides by the gzip magic bytes 0x1f 0x8b, never by the file name,
// and accepts concatenated gzip members.
//
// Errors: every failure throws symopt::FileError whose message starts with the
// path and names the problem:
//   - missing or unreadable file (with the system's reason),
//   - wrong magic number (printed in hex, with the expected one),
//   - truncated file: "expected N bytes (...), found M",
//   - extra bytes after the data,
//   - corrupt gzip stream (zlib's reason, and how far decompression got).
// Writing is atomic: the bytes go to a temporary file in the target's
// directory, which is renamed over the target only when complete; on any
// failure the temporary file is removed and an existing target is untouched.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "manifolds/check.h"

namespace symopt {
namespace data {

enum class IdxType : std::uint8_t {
  kUint8 = 0x08,
  kInt8 = 0x09,
  kInt16 = 0x0B,
  kInt32 = 0x0C,
  kFloat32 = 0x0D,
  kFloat64 = 0x0E,
};

// Bytes per element (1, 1, 2, 4, 4, 8).
int IdxTypeSize(IdxType type);
// "uint8", "int8", "int16", "int32", "float32", "float64".
const char* IdxTypeName(IdxType type);
// The magic number of a file holding `type` with `rank` dimensions.
std::uint32_t IdxMagic(IdxType type, int rank);

// An IDX array in memory: its dimensions and its elements in host byte order,
// row-major.
// Invariant (checked by WriteIdx, ensured by ReadIdx):
//   bytes.size() == NumElements() * IdxTypeSize(type), 1 <= dims.size() <= 255,
//   every dim in [0, 2^32).
struct IdxArray {
  IdxType type = IdxType::kUint8;
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> bytes;

  std::int64_t NumElements() const;
  // Element i converted to double. Requires: 0 <= i < NumElements().
  double Value(std::int64_t i) const;
};

// A uint8 array with the given dims and values (values.size() must equal the
// product of dims).
IdxArray MakeIdxUint8(std::vector<std::int64_t> dims,
                      std::vector<std::uint8_t> values);

// Reads an IDX file of any element type, plain or gzip-compressed.
// Throws FileError (see the file comment).
IdxArray ReadIdx(const std::string& path);

// Reads an IDX file and requires its magic number to be IdxMagic(type, rank);
// otherwise throws FileError "wrong magic number 0x........, expected ...".
IdxArray ReadIdx(const std::string& path, IdxType type, int rank);

enum class IdxCompression { kNone, kGzip };

// Writes `array` to `path` atomically (temporary file + rename),
// gzip-compressed when asked. Requires: the IdxArray invariant holds (else
// InvalidArgument, and no file is created). Throws FileError naming the path
// when the file cannot be written; the target is then unchanged and no
// temporary remains.
void WriteIdx(const std::string& path,
              const IdxArray& array,
              IdxCompression compression = IdxCompression::kNone);

// Writes `bytes` to `path` atomically (the primitive WriteIdx uses; exposed for
// other writers of data files). Same guarantees as WriteIdx.
void WriteFileAtomically(const std::string& path,
                         const std::vector<std::uint8_t>& bytes);

}  // namespace data
}  // namespace symopt
