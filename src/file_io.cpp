#include "file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "manifolds/check.h"

namespace symopt {
namespace internal {
namespace {

constexpr const char* kUnchanged =
    " (the previous file at the target, if any, is unchanged)";

std::string SystemError(int e) { return std::strerror(e); }

// The mode a new file would get from open(..., 0666): 0666 & ~umask. The
// umask is read from /proc (changing it to read it would race with other
// threads); 0600, mkstemp's mode, when it cannot be read.
mode_t NewFileMode() {
  FILE* status = std::fopen("/proc/self/status", "r");
  if (status == nullptr) return 0600;
  char line[256];
  mode_t mode = 0600;
  while (std::fgets(line, sizeof(line), status) != nullptr) {
    unsigned mask = 0;
    if (std::sscanf(line, "Umask: %o", &mask) == 1) {
      mode = mode_t(0666 & ~mask);
      break;
    }
  }
  std::fclose(status);
  return mode;
}

std::string ParentDirectory(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

std::vector<std::uint8_t> ReadWholeFile(const std::string& path,
                                        const std::string& prefix) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw FileError(prefix + "cannot open: " + SystemError(e));
  }
  auto fail = [&](const std::string& problem) {
    ::close(fd);
    throw FileError(prefix + problem);
  };
  struct stat info;
  if (::fstat(fd, &info) != 0) fail("cannot stat: " + SystemError(errno));
  if (S_ISDIR(info.st_mode)) fail("is a directory, not a file");
  // Read in large blocks (the size from fstat is a hint: pipes report 0).
  std::vector<std::uint8_t> bytes(info.st_size > 0 ? std::size_t(info.st_size)
                                                   : std::size_t(1) << 16);
  std::size_t used = 0;
  for (;;) {
    if (used == bytes.size()) bytes.resize(bytes.size() * 2);
    const ssize_t n = ::read(fd, bytes.data() + used, bytes.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("read failed: " + SystemError(errno));
    }
    if (n == 0) break;
    used += std::size_t(n);
  }
  ::close(fd);
  bytes.resize(used);
  return bytes;
}

std::string WriteTemporaryFile(const std::string& path,
                               const std::vector<std::uint8_t>& bytes,
                               const std::string& prefix) {
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(&tmp[0]);
  if (fd < 0) {
    const int e = errno;
    throw FileError(prefix + "cannot create temporary file '" + tmp +
                    "' in directory '" + ParentDirectory(path) +
                    "': " + SystemError(e) + kUnchanged);
  }
  bool open = true;
  auto fail = [&](const std::string& step) {
    const int e = errno;
    if (open) ::close(fd);
    ::unlink(tmp.c_str());
    throw FileError(prefix + step + " '" + tmp + "' failed: " + SystemError(e) +
                    kUnchanged);
  };
  // mkstemp creates the file 0600: give it the target's mode, or a new
  // file's.
  struct stat target;
  const mode_t mode = ::stat(path.c_str(), &target) == 0
                          ? (target.st_mode & 07777)
                          : NewFileMode();
  if (::fchmod(fd, mode) != 0) fail("setting the mode of");
  const std::uint8_t* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("writing");
    }
    p += n;
    left -= std::size_t(n);
  }
  if (::fsync(fd) != 0) fail("fsync of");
  open = false;
  if (::close(fd) != 0) fail("closing");
  return tmp;
}

void RenameOver(const std::string& temporary,
                const std::string& path,
                const std::string& prefix) {
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(temporary.c_str());
    throw FileError(prefix + "cannot rename the temporary file '" + temporary +
                    "' over it: " + SystemError(e) + kUnchanged);
  }
  // Make the rename itself durable. The new file is complete and in place
  // whatever happens here, so a failure is not reported.
  const int dfd =
      ::open(ParentDirectory(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void WriteFileAtomic(const std::string& path,
                     const std::vector<std::uint8_t>& bytes,
                     const std::string& prefix) {
  RenameOver(WriteTemporaryFile(path, bytes, prefix), path, prefix);
}

std::uint32_t Crc32(const std::uint8_t* data, std::size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    const uInt chunk = uInt(std::min<std::size_t>(n, std::size_t(1) << 30));
    crc = crc32(crc, data, chunk);
    data += chunk;
    n -= chunk;
  }
  return std::uint32_t(crc);
}

void ByteWriter::BeginEnvelope(const char (&magic)[8], std::uint32_t version) {
  SYMOPT_DCHECK(bytes_.empty());
  PutRaw(magic, 8);
  Put(version);
  Put(std::uint32_t(0));  // word, set by SealEnvelope
  Put(std::uint64_t(0));  // body length, set by SealEnvelope
}

void ByteWriter::SealEnvelope(std::uint32_t word) {
  const std::uint64_t length = bytes_.size() - kEnvelopeHeaderBytes;
  std::memcpy(bytes_.data() + 12, &word, 4);
  std::memcpy(bytes_.data() + 16, &length, 8);
  Put(Crc32(bytes_.data(), bytes_.size()));
}

Envelope OpenEnvelope(const std::vector<std::uint8_t>& bytes,
                      const char (&magic)[8],
                      const std::string& format,
                      std::uint32_t version,
                      const std::string& prefix) {
  const std::size_t size = bytes.size();
  if (size < kEnvelopeHeaderBytes + kEnvelopeTrailerBytes) {
    std::ostringstream os;
    os << "truncated: " << size << " bytes, shorter than the "
       << kEnvelopeHeaderBytes + kEnvelopeTrailerBytes
       << "-byte header and trailer";
    throw FileError(prefix + os.str());
  }
  if (std::memcmp(bytes.data(), magic, 8) != 0) {
    throw FileError(prefix + "not a symopt " + format +
                    " (wrong magic; expected \"" + std::string(magic, 8) +
                    "\")");
  }
  Envelope e;
  std::uint64_t length;
  std::memcpy(&e.version, bytes.data() + 8, 4);
  std::memcpy(&e.word, bytes.data() + 12, 4);
  std::memcpy(&length, bytes.data() + 16, 8);
  if (e.version != version) {
    std::ostringstream os;
    os << "unsupported format version " << e.version << " (this build reads "
       << version << ")";
    throw FileError(prefix + os.str());
  }
  const std::uint64_t expected =
      kEnvelopeHeaderBytes + length + kEnvelopeTrailerBytes;
  if (length > size || expected != size) {
    std::ostringstream os;
    if (length > size || expected > size) {
      os << "truncated: the header announces " << expected
         << " bytes, the file has " << size;
    } else {
      os << "the header announces " << expected << " bytes, the file has "
         << size << " (trailing garbage)";
    }
    throw FileError(prefix + os.str());
  }
  std::uint32_t stored_crc;
  std::memcpy(&stored_crc, bytes.data() + size - kEnvelopeTrailerBytes, 4);
  const std::uint32_t crc = Crc32(bytes.data(), size - kEnvelopeTrailerBytes);
  if (crc != stored_crc) {
    std::ostringstream os;
    os << std::hex << "CRC-32 mismatch (stored 0x" << stored_crc
       << ", computed 0x" << crc << "): the file is corrupt";
    throw FileError(prefix + os.str());
  }
  e.body = bytes.data() + kEnvelopeHeaderBytes;
  e.length = std::size_t(length);
  return e;
}

void ByteReader::Overrun(const char* what) const {
  std::ostringstream os;
  os << "corrupt " << section_ << ": " << what << " at byte "
     << kEnvelopeHeaderBytes + at_ << " runs past the end of the " << section_;
  throw FileError(prefix_ + os.str());
}

}  // namespace internal
}  // namespace symopt
