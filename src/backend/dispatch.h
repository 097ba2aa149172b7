// The one backend dispatch point (STYLE M4), private to the library. The
// public wrappers of Manifold<T> (src/manifold.cpp) validate shapes and
// devices and call these for Device::kCuda views; they pick the CUDA entry
// points (cuda/cuda_backend.h) for the manifold's kind, or throw:
//   NotCompiledError  the operation or the manifold has no GPU path (the
//                     message names both), or this build has no CUDA;
//   Error             CUDA is built but no device is present;
//   InvalidArgument   a view marked kCuda points to host memory, or a point
//                     handed to ProjectPoint has a NaN/Inf (x untouched).
// Every function requires views of the manifold's shape, all on the GPU.
#pragma once

#include <string>

#include "manifolds/manifold.h"

namespace symopt {
namespace backend {

template <typename T>
void ProjectPoint(const Manifold<T>& manifold, TensorView<T> x);

template <typename T>
void Project(const Manifold<T>& manifold,
             TensorView<const T> x,
             TensorView<T> u);

template <typename T>
void EgradToRgrad(const Manifold<T>& manifold,
                  TensorView<const T> x,
                  TensorView<T> g);

template <typename T>
RetractReport Retract(const Manifold<T>& manifold,
                      TensorView<T> x,
                      TensorView<const T> v);

template <typename T>
void Transport(const Manifold<T>& manifold,
               TensorView<const T> x_old,
               TensorView<const T> x_new,
               TensorView<T> v);

// mom may be empty when options.momentum == 0.
template <typename T>
RetractReport Step(const Manifold<T>& manifold,
                   TensorView<T> x,
                   TensorView<const T> g,
                   TensorView<T> mom,
                   const StepOptions& options);

// Throws NotCompiledError: "<manifold>: <operation> has no GPU
// implementation ...".
template <typename T>
[[noreturn]] void Unsupported(const Manifold<T>& manifold,
                              const std::string& operation);

}  // namespace backend
}  // namespace symopt
