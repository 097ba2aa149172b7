// Layer<T>: the interface of every network layer (STYLE M9).
//
//   Forward(x, y)            y = f(x; w). In training mode the layer may cache
//                            what Backward needs (masks, batch statistics).
//   Backward(x, y, dy, dx)   dx = (df/dx)^T dy, and ADDS (df/dw)^T dy to the
//                            gradients of its parameters (so a parameter
//                            shared by several uses accumulates). Called after
//                            the Forward on the same x.
//   Params()                 the trainable blocks, each with its manifold
//                            (oblique for filters followed by batch norm, tie
//                            subspace for constrained layers, Euclidean for
//                            biases and batch-norm parameters).
//   Buffers()                non-trained state that is part of the model's
//                            point (batch-norm running statistics): saved
//                            with the parameters, restored on a bold-driver
//                            rollback. Default: none.
//   NormalizesInputChannels  true for batch-norm-type layers: in training
//                            mode the output is unchanged when any one input
//                            channel is scaled by c > 0. Sequential uses it to
//                            find the weights whose row norms are a symmetry
//                            (Badrinarayanan et al., papers/001).
//   input_grad_required      false when nobody needs dx (the first layer of a
//                            model: its input is data). A layer may then skip
//                            computing dx and leave it empty; the parameter
//                            gradients are computed either way.
//
// Shapes are checked at the public entry: a wrong input shape throws
// InvalidArgument naming the layer and both shapes. Each layer has a plain CPU
// implementation, which is the oracle for the GPU path, and is checked
// against central finite differences in double by tests/layer_checks.h.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/tensor.h"
#include "optim/parameter.h"

namespace symopt {
namespace nn {

enum class Mode { kTrain, kEval };

template <typename T>
class Layer {
 public:
  virtual ~Layer() = default;

  // "conv2d(1->32, k5, s1, p2)"
  virtual std::string Name() const = 0;
  // Throws InvalidArgument naming the layer, the given and the expected shape.
  virtual Shape OutputShape(const Shape& input) const = 0;

  virtual void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) = 0;
  virtual void Backward(const Tensor<T>& x,
                        const Tensor<T>& y,
                        const Tensor<T>& dy,
                        Tensor<T>& dx) = 0;

  // Views of the layer's own parameters and gradients (valid while the layer
  // lives). Default: none.
  virtual std::vector<Parameter<T>> Params() { return {}; }
  // See the header comment. Pointers valid while the layer lives.
  virtual std::vector<Tensor<T>*> Buffers() { return {}; }

  // See the header comment. Default: false.
  virtual bool NormalizesInputChannels() const { return false; }

  void set_input_grad_required(bool required) {
    input_grad_required_ = required;
  }
  bool input_grad_required() const { return input_grad_required_; }

  // Sets every parameter gradient to zero.
  void ZeroGrad() {
    for (Parameter<T>& p : Params()) {
      for (std::int64_t i = 0; i < p.grad.size(); ++i) p.grad.data[i] = T(0);
    }
  }

 private:
  bool input_grad_required_ = true;
};

}  // namespace nn
}  // namespace symopt
