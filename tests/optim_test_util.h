// Helpers shared by the optimizer and checkpoint tests: a parameter set that
// owns its buffers (as a user's model would), and bitwise comparisons.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "manifolds/manifold.h"
#include "optim/sgd.h"

namespace symopt {
namespace testing {

// Buffers for a list of parameters, owned here like a user's model owns its
// weights; Params() hands out views of them.
template <typename T>
struct Model {
  struct Block {
    std::string name;
    std::shared_ptr<const Manifold<T>> manifold;
    int group = 0;
    std::vector<T> value, grad;
  };
  std::vector<Block> blocks;

  // Adds a block at a reproducible random point of its manifold.
  Block& Add(std::string name,
             std::shared_ptr<const Manifold<T>> manifold,
             std::uint64_t seed,
             int group = 0) {
    Block b;
    b.name = std::move(name);
    b.manifold = std::move(manifold);
    b.group = group;
    b.value.resize(b.manifold->AmbientSize());
    b.grad.assign(b.manifold->AmbientSize(), T(0));
    b.manifold->RandomPoint(
        TensorView<T>(b.value.data(), b.manifold->rows(), b.manifold->cols()),
        seed);
    blocks.push_back(std::move(b));
    return blocks.back();
  }

  std::vector<Parameter<T>> Params() {
    std::vector<Parameter<T>> out;
    for (Block& b : blocks) {
      Parameter<T> p;
      p.name = b.name;
      p.value =
          TensorView<T>(b.value.data(), b.manifold->rows(), b.manifold->cols());
      p.grad =
          TensorView<T>(b.grad.data(), b.manifold->rows(), b.manifold->cols());
      p.manifold = b.manifold;
      p.group = b.group;
      out.push_back(p);
    }
    return out;
  }

  std::vector<std::vector<T>> Values() const {
    std::vector<std::vector<T>> v;
    for (const Block& b : blocks) v.push_back(b.value);
    return v;
  }
};

template <typename T>
bool BitwiseEqual(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() ||
          std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <typename T>
bool BitwiseEqual(const std::vector<std::vector<T>>& a,
                  const std::vector<std::vector<T>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!BitwiseEqual(a[i], b[i])) return false;
  }
  return true;
}

template <typename T>
bool SameState(const SgdState<T>& a, const SgdState<T>& b) {
  return a.step_count == b.step_count && a.lr == b.lr &&
         a.group_lr == b.group_lr && BitwiseEqual(a.momentum, b.momentum);
}

}  // namespace testing
}  // namespace symopt
