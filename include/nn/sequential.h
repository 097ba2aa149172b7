// Sequential<T>: a chain of layers y = f_{L-1}( ... f_1(f_0(x)) ), and the
// registry of its parameters with their manifolds (DESIGN.md sections 1, 5).
//
// Forward keeps every layer's output (the activations Backward needs);
// Backward runs the chain rule from the last layer to the first:
//   dx_{i} = Backward_i(a_{i-1}, a_i, dx_{i+1}),  a_{-1} = x,
// each layer ADDING its parameter gradients (Layer contract), so call
// ZeroGrad() before each batch. Unless the caller asks for dx, the chain stops
// at the first layer with parameters, which is told that nobody needs its
// input gradient (input_grad_required = false); parameter-free layers before
// it (a leading flatten) do not run backwards.
//
// Params() is the registry an optimizer trains: every layer's parameters, in
// layer order, named "<index>.<kind>.<local>" ("3.conv2d.weight",
// "4.batchnorm.scale"), where kind is the layer's Name() up to its first '('.
// Each carries its manifold: the layer's own (Euclidean unless the layer is
// constrained) or the one assigned here. Assignment is explicit:
//   SetManifold(name, m)                 one parameter;
//   AssignManifoldsBeforeNormalization(make)
//                                        every parameter named "weight" of a
//                                        layer directly followed by a layer
//                                        with NormalizesInputChannels() (batch
//                                        norm) gets make(rows, cols); e.g.
//                                        unit-norm rows (oblique) for the
//                                        filters whose scale batch norm
//                                        removes (papers/001); the helper
//                                        UseObliqueBeforeNormalization does
//                                        exactly that.
// Both move the current value onto the new manifold (ProjectPoint), so the
// model stays a valid point for the optimizer. Parameters whose manifold is
// not Euclidean (declared by a constrained layer) are left alone by
// AssignManifoldsBeforeNormalization.
//
// Sequential is itself a Layer (Forward(x, y, mode) copies the output to y),
// so models nest and go through the same gradient checker.
//
// Errors: a shape mismatch anywhere in the chain throws InvalidArgument
// naming the layer's index and Name() and both shapes; no activation or
// parameter is changed by a call that throws on shape (shapes are checked for
// the whole chain before the first layer runs).
//
// Aliasing and lifetime: Forward(x, mode) keeps a pointer to x; x must stay
// alive and unchanged until the matching Backward.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "manifolds/manifold.h"
#include "manifolds/oblique.h"
#include "nn/layer.h"
#include "nn/tensor.h"

namespace symopt {
namespace nn {

template <typename T>
using ManifoldFactory = std::function<std::shared_ptr<const Manifold<T>>(
    std::int64_t rows, std::int64_t cols)>;

template <typename T>
class Sequential final : public Layer<T> {
 public:
  Sequential() = default;
  Sequential(const Sequential&) = delete;
  Sequential& operator=(const Sequential&) = delete;

  // Appends a layer (the model owns it) and returns it.
  // Requires: layer non-null.
  Layer<T>& Add(std::unique_ptr<Layer<T>> layer);
  template <typename L, typename... Args>
  L& Emplace(Args&&... args) {
    auto layer = std::make_unique<L>(std::forward<Args>(args)...);
    L& ref = *layer;
    Add(std::move(layer));
    return ref;
  }

  std::size_t size() const { return layers_.size(); }
  Layer<T>& layer(std::size_t i) { return *layers_.at(i); }

  // "sequential(5 layers)"
  std::string Name() const override;
  Shape OutputShape(const Shape& input) const override;
  // One line per layer with its output shape and parameter count.
  std::string Summary(const Shape& input);

  // Runs every layer and returns the last activation (valid until the next
  // Forward). mode kTrain: batch-norm statistics, dropout masks.
  const Tensor<T>& Forward(const Tensor<T>& x, Mode mode);
  // dy: gradient of the loss w.r.t. the output of the last Forward. Adds the
  // parameter gradients; writes the input gradient to *dx when dx != nullptr.
  void Backward(const Tensor<T>& dy, Tensor<T>* dx = nullptr);

  // Layer interface (for nesting and the gradient checker).
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;

  // The registry (see the header comment). Views are valid while the model
  // lives and its layers are not changed.
  std::vector<Parameter<T>> Params() override;
  std::int64_t NumParameters();
  // Every layer's buffers, in layer order.
  std::vector<Tensor<T>*> Buffers() override;
  // Moves every layer (parameters, gradients, buffers, caches) to `device`;
  // Forward then takes inputs there. Parameter views taken before are
  // invalid after it (take Params() again, e.g. build the optimizer after).
  void To(Device device) override;

  // Requires: `name` is in Params(); m has the parameter's rows x cols.
  // Ensures: the value is projected onto m.
  void SetManifold(const std::string& name,
                   std::shared_ptr<const Manifold<T>> m);
  // Returns the names of the parameters it assigned.
  std::vector<std::string> AssignManifoldsBeforeNormalization(
      const ManifoldFactory<T>& make);

 private:
  // Throws InvalidArgument naming the first layer whose input shape is wrong.
  std::vector<Shape> ChainShapes(const Shape& input) const;

  std::vector<std::unique_ptr<Layer<T>>> layers_;
  std::vector<bool> has_params_;        // per layer, fixed when added
  std::vector<Tensor<T>> activations_;  // activations_[i] = output of layer i
  std::vector<Tensor<T>> grad_buffers_{2};
  const Tensor<T>* input_ = nullptr;
  std::map<std::string, std::shared_ptr<const Manifold<T>>> overrides_;
};

// AssignManifoldsBeforeNormalization with unit-norm rows: every weight that
// feeds a batch norm goes on Oblique(rows, cols) (papers/001; its rows are
// normalised now). Returns the names of those parameters.
template <typename T>
std::vector<std::string> UseObliqueBeforeNormalization(Sequential<T>& model);

extern template class Sequential<float>;
extern template class Sequential<double>;

}  // namespace nn
}  // namespace symopt
