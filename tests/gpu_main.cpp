// main() of the GPU test executables (STYLE T7): exits 77, which ctest reads
// as "skipped", when no CUDA device is present; runs the Catch2 tests
// otherwise.
#define CATCH_CONFIG_RUNNER
#include <cstdio>

#include "catch.h"
#include "cuda_backend.h"

int main(int argc, char** argv) {
  const int devices = symopt::cuda::DeviceCount();
  if (devices <= 0) {
    std::printf("SKIPPED: no CUDA device present (%s)\n",
                symopt::cuda::DeviceCountError().c_str());
    return 77;
  }
  std::printf("CUDA device: %s\n", symopt::cuda::DeviceName(0).c_str());
  return Catch::Session().run(argc, argv);
}
