# Finds the dependencies once and computes the effective SYMOPT_HAS_* switches
# (STYLE S2): AUTO uses a dependency when found, ON requires it, OFF ignores it.
if(NOT TARGET Eigen3::Eigen)
  find_package(Eigen3 3.3 REQUIRED NO_MODULE)
endif()
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3 REQUIRED)   # spec files of the constraint engine

# Ceres >= 2.1 (ceres::Manifold).
set(SYMOPT_HAS_CERES OFF)
if(NOT SYMOPT_WITH_CERES STREQUAL "OFF")
  find_package(Ceres 2.1 CONFIG QUIET)
  if(Ceres_FOUND)
    set(SYMOPT_HAS_CERES ON)
  elseif(SYMOPT_WITH_CERES STREQUAL "ON")
    message(FATAL_ERROR "SYMOPT_WITH_CERES=ON but Ceres >= 2.1 was not found")
  endif()
endif()
message(STATUS "symopt: Ceres adapter ${SYMOPT_HAS_CERES}")

# LibTorch (Debian's libtorch-dev: CPU only). Its config pulls in Caffe2's
# (gflags, glog, protobuf); not installed in CI (scripts/install_deps.sh
# installs it with SYMOPT_WITH_TORCH=1).
set(SYMOPT_HAS_TORCH OFF)
if(NOT SYMOPT_WITH_TORCH STREQUAL "OFF")
  find_package(Torch CONFIG QUIET)
  if(Torch_FOUND OR TORCH_FOUND)
    set(SYMOPT_HAS_TORCH ON)
  elseif(SYMOPT_WITH_TORCH STREQUAL "ON")
    message(FATAL_ERROR "SYMOPT_WITH_TORCH=ON but LibTorch was not found")
  endif()
endif()
message(STATUS "symopt: LibTorch adapter ${SYMOPT_HAS_TORCH}")

# CUDA (nvcc). CI has nvcc but no GPU; the GPU tests skip at run time.
set(SYMOPT_HAS_CUDA OFF)
if(NOT SYMOPT_WITH_CUDA STREQUAL "OFF")
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX}
     AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)   # H100/H200 (STYLE S5); never "native"
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(SYMOPT_HAS_CUDA ON)
  elseif(SYMOPT_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "SYMOPT_WITH_CUDA=ON but no CUDA compiler was found")
  endif()
endif()
message(STATUS "symopt: CUDA backend ${SYMOPT_HAS_CUDA}")
