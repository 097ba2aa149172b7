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

#include "manifolds/euclidean.h"
#include "manifolds/manifold.h"
#include "nn/tensor.h"
#include "optim/parameter.h"

namespace symopt {
namespace nn {

enum class Mode { kTrain, kEval };

// A trainable tensor with its gradient and manifold, owned by a layer.
template <typename T>
struct ParamTensor {
  std::string name;  // layer-local: "weight", "bias", "scale", "shift"
  Tensor<T> value;
  Tensor<T> grad;
  std::shared_ptr<const Manifold<T>> manifold;

  // A Euclidean parameter of the given shape, zero-filled.
  ParamTensor(std::string name, const Shape& shape);
  // A view for optimizers, on the tensors' device.
  Parameter<T> View();
  // Moves value and gradient to `device`.
  void To(Device device) {
    value.MoveTo(device);
    grad.MoveTo(device);
  }
};

extern template struct ParamTensor<float>;
extern template struct ParamTensor<double>;

// Throws InvalidArgument "<layer>: <what> is on <got>, but the layer is on
// <layer_device> (move one with To())" unless got == layer_device. Every
// layer checks its inputs with it before writing anything.
inline void CheckLayerDevice(const std::string& layer,
                             const char* what,
                             Device layer_device,
                             Device got) {
  SYMOPT_CHECK(got == layer_device,
               layer << ": " << what << " is on " << DeviceName(got)
                     << ", but the layer is on " << DeviceName(layer_device)
                     << " (move one with To())");
}

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

  // The ParamTensors behind Params() (pointers valid while the layer lives),
  // which To() moves. Default: none.
  virtual std::vector<ParamTensor<T>*> ParamTensors() { return {}; }

  // Moves every tensor the layer owns (ParamTensors(), Buffers()) to
  // `device`; Forward then requires inputs there. A layer with other
  // device-resident state overrides it and calls Layer<T>::To. Parameter
  // views taken before the move are invalid after it.
  virtual void To(Device device) {
    if (device == Device::kCuda) RequireCudaDevice(Name() + ": To(cuda)");
    for (ParamTensor<T>* p : ParamTensors()) p->To(device);
    for (Tensor<T>* b : Buffers()) b->MoveTo(device);
    device_ = device;
  }
  Device device() const { return device_; }

  // See the header comment. Default: false.
  virtual bool NormalizesInputChannels() const { return false; }

  void set_input_grad_required(bool required) {
    input_grad_required_ = required;
  }
  bool input_grad_required() const { return input_grad_required_; }

  // Sets every parameter gradient to zero.
  void ZeroGrad() {
    for (Parameter<T>& p : Params()) {
      if (p.grad.device == Device::kCpu) {
        for (std::int64_t i = 0; i < p.grad.size(); ++i) p.grad.data[i] = T(0);
      } else {
        symopt::internal::DeviceMemset(
            p.grad.data, 0, std::size_t(p.grad.size()) * sizeof(T), nullptr);
      }
    }
  }

 private:
  bool input_grad_required_ = true;
  Device device_ = Device::kCpu;
};

}  // namespace nn
}  // namespace symopt
