#include "file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

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

}  // namespace internal
}  // namespace symopt
