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
// Errors are FileError (manifolds/check.h) whose message is
// `prefix + problem`, where the caller's prefix names the file and its kind
// ("checkpoint 'run.ckpt': ", "data/x.idx: ") and the problem names the
// step, the temporary file and the system error (strerror).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace internal
}  // namespace symopt
