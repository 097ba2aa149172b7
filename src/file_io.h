// Private file machinery shared by every symopt file format (checkpoints,
// model files, IDX data): reading a whole file, writing one atomically, and
// the CRC-32 the binary formats end with.
//
// Atomic write (WriteFileAtomic = WriteTemporaryFile + RenameOver):
//   1. create "<path>.tmp.XXXXXX" beside the target (mkstemp: same file
//      system, so the rename is atomic), give it the target's current mode,
//      or a new file's (0666 & ~umask) when there is no target;
//   2. write every byte, fsync, close;
//   3. rename it over the target, then fsync the directory (best effort: the
//      new file is complete and in place whatever happens there).
// On any failure before the rename completes the temporary file is removed
// and the target is byte-identical to what it was (or still absent).
//
// Binary envelope of checkpoints and model files (integers little-endian):
//   offset 0   char[8]  magic
//          8   u32      format version
//         12   u32      a format-specific word (record count, dtype)
//         16   u64      byte length L of the body
//         24   body (L bytes)
//   24 + L     u32      CRC-32 of every byte before it
// ByteWriter builds one (BeginEnvelope ... SealEnvelope); OpenEnvelope
// checks one and ByteReader walks its body with bounds checks.
//
// Errors are FileError (manifolds/check.h) whose message is
// `prefix + problem`, where the caller's prefix names the file and its kind
// ("checkpoint 'run.ckpt': ", "data/x.idx: ") and the problem names the
// step, the temporary file and the system error (strerror).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

// The binary formats store integers little-endian and values in the host's
// layout; writing them with memcpy is correct only on little-endian hosts.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "symopt file formats assume a little-endian host");

namespace symopt {
namespace internal {

// The bytes of the regular file at `path`.
// Throws FileError (prefix + "cannot open: ...", "is a directory, not a
// file", "read failed: ...").
std::vector<std::uint8_t> ReadWholeFile(const std::string& path,
                                        const std::string& prefix);

// Writes `bytes` to a new temporary file beside `path` (flushed, fsync'ed,
// closed, with the mode described above) and returns its name. `path` is not
// touched. Throws FileError after removing the temporary file.
std::string WriteTemporaryFile(const std::string& path,
                               const std::vector<std::uint8_t>& bytes,
                               const std::string& prefix);

// Renames `temporary` (from WriteTemporaryFile) over `path` and fsyncs the
// directory. On failure removes `temporary`, leaves `path` unchanged and
// throws FileError.
void RenameOver(const std::string& temporary,
                const std::string& path,
                const std::string& prefix);

// Requires: the directory of `path` exists and is writable.
// Ensures: `path` holds exactly `bytes`, or (on FileError) is unchanged and
// no temporary file is left behind.
void WriteFileAtomic(const std::string& path,
                     const std::vector<std::uint8_t>& bytes,
                     const std::string& prefix);

// The standard CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, initial
// and final XOR 0xFFFFFFFF; "123456789" -> 0xCBF43926), computed by zlib's
// crc32 for any length (zlib takes at most 2^32-1 bytes per call).
std::uint32_t Crc32(const std::uint8_t* data, std::size_t n);

inline constexpr std::size_t kEnvelopeHeaderBytes = 24;
inline constexpr std::size_t kEnvelopeTrailerBytes = 4;

// Appends values in the host's (little-endian) layout.
class ByteWriter {
 public:
  template <typename U>
  void Put(U v) {
    PutRaw(&v, sizeof(U));
  }
  // u32 byte length, then the bytes.
  void PutString(const std::string& s) {
    Put(std::uint32_t(s.size()));
    PutRaw(s.data(), s.size());
  }
  void PutRaw(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    bytes_.insert(bytes_.end(), p, p + n);
  }
  // Requires: nothing written yet. Writes the 24-byte header (word and
  // length are filled in by SealEnvelope).
  void BeginEnvelope(const char (&magic)[8], std::uint32_t version);
  // Sets the header's word and body length and appends the CRC-32.
  void SealEnvelope(std::uint32_t word);
  std::vector<std::uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<std::uint8_t> bytes_;
};

struct Envelope {
  std::uint32_t version = 0;
  std::uint32_t word = 0;
  const std::uint8_t* body = nullptr;  // points into the checked bytes
  std::size_t length = 0;
};

// Checks, in this order, the size (at least header and trailer), the magic
// ("not a symopt <format> (wrong magic; expected "...")"), the version
// (== `version`), the announced length ("truncated" / "trailing garbage")
// and the CRC ("CRC-32 mismatch"). Throws FileError(prefix + problem).
Envelope OpenEnvelope(const std::vector<std::uint8_t>& bytes,
                      const char (&magic)[8],
                      const std::string& format,
                      std::uint32_t version,
                      const std::string& prefix);

// Bounds-checked cursor over an envelope's body. A read past its end throws
// FileError(prefix + "corrupt <section>: <what> at byte <offset in the file>
// runs past the end of the <section>").
class ByteReader {
 public:
  ByteReader(const Envelope& envelope,
             const std::string& prefix,
             const char* section)
      : prefix_(prefix),
        section_(section),
        p_(envelope.body),
        n_(envelope.length) {}
  template <typename U>
  U Get(const char* what) {
    Need(sizeof(U), what);
    U v;
    std::memcpy(&v, p_ + at_, sizeof(U));
    at_ += sizeof(U);
    return v;
  }
  std::string GetString(const char* what) {
    const std::uint32_t len = Get<std::uint32_t>(what);
    Need(len, what);
    std::string s(reinterpret_cast<const char*>(p_ + at_), len);
    at_ += len;
    return s;
  }
  // Returns a pointer to the next `len` bytes and moves past them.
  const std::uint8_t* Skip(std::uint64_t len, const char* what) {
    Need(len, what);
    const std::uint8_t* at = p_ + at_;
    at_ += std::size_t(len);
    return at;
  }
  bool done() const { return at_ == n_; }

 private:
  void Need(std::uint64_t len, const char* what) {
    if (len > n_ - at_) Overrun(what);
  }
  [[noreturn]] void Overrun(const char* what) const;

  std::string prefix_;
  const char* section_;
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t at_ = 0;
};

}  // namespace internal
}  // namespace symopt
