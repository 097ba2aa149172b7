// Helpers shared by the data tests: a scratch directory removed at scope exit,
// raw file access, and small seeded images.
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "catch.h"
#include "data/random.h"
#include "nn/tensor.h"

namespace symopt {
namespace testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "symopt_data_XXXXXX")
            .string();
    REQUIRE(mkdtemp(&tmpl[0]) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // Names of the entries in the directory, sorted.
  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_)) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::string path_;
};

inline std::vector<std::uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
}

inline void WriteBytes(const std::string& path,
                       const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

// A tensor of the given shape with seeded uniform values in [0, 1).
template <typename T>
nn::Tensor<T> RandomImages(const nn::Shape& shape, std::uint64_t seed) {
  nn::Tensor<T> x(shape);
  data::Rng rng(seed);
  for (std::int64_t i = 0; i < x.size(); ++i) x[i] = T(rng.Uniform());
  return x;
}

// Bytes with seeded values.
inline std::vector<std::uint8_t> RandomBytes(std::int64_t n,
                                             std::uint64_t seed) {
  std::vector<std::uint8_t> v(n);
  data::Rng rng(seed);
  for (auto& b : v) b = std::uint8_t(rng.Next() >> 56);
  return v;
}

template <typename T>
bool SameValues(const nn::Tensor<T>& a, const nn::Tensor<T>& b) {
  if (a.shape() != b.shape()) return false;
  for (std::int64_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

}  // namespace testing
}  // namespace symopt
