#include <sstream>

#include "nn/sequential.h"
#include "nn_common.h"

namespace symopt {
namespace nn {

namespace {
std::string Kind(const std::string& name) {
  return name.substr(0, name.find('('));
}
}  // namespace

template <typename T>
Layer<T>& Sequential<T>::Add(std::unique_ptr<Layer<T>> layer) {
  SYMOPT_CHECK(layer != nullptr, "sequential: Add(nullptr)");
  if (layer->device() != this->device()) layer->To(this->device());
  has_params_.push_back(!layer->Params().empty());
  layers_.push_back(std::move(layer));
  activations_.resize(layers_.size());
  return *layers_.back();
}

template <typename T>
std::string Sequential<T>::Name() const {
  return "sequential(" + std::to_string(layers_.size()) + " layers)";
}

template <typename T>
std::vector<Shape> Sequential<T>::ChainShapes(const Shape& input) const {
  std::vector<Shape> shapes;
  Shape s = input;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    try {
      s = layers_[i]->OutputShape(s);
    } catch (const InvalidArgument& e) {
      throw InvalidArgument("layer " + std::to_string(i) +
                            " of the sequential model: " + e.what());
    }
    shapes.push_back(s);
  }
  return shapes;
}

template <typename T>
Shape Sequential<T>::OutputShape(const Shape& input) const {
  const std::vector<Shape> shapes = ChainShapes(input);
  return shapes.empty() ? input : shapes.back();
}

template <typename T>
std::string Sequential<T>::Summary(const Shape& input) {
  const std::vector<Shape> shapes = ChainShapes(input);
  std::ostringstream os;
  os << "input " << ShapeString(input) << "\n";
  std::int64_t total = 0;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    std::int64_t count = 0;
    for (const Parameter<T>& p : layers_[i]->Params()) count += p.value.size();
    total += count;
    os << i << ": " << layers_[i]->Name() << " -> " << ShapeString(shapes[i]);
    if (count > 0) os << "  (" << count << " parameters)";
    os << "\n";
  }
  os << "total " << total << " parameters";
  return os.str();
}

template <typename T>
const Tensor<T>& Sequential<T>::Forward(const Tensor<T>& x, Mode mode) {
  ChainShapes(x.shape());  // all shapes first: nothing runs on a bad input
  input_ = &x;
  const Tensor<T>* in = &x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->Forward(*in, activations_[i], mode);
    in = &activations_[i];
  }
  return *in;
}

template <typename T>
void Sequential<T>::Backward(const Tensor<T>& dy, Tensor<T>* dx) {
  SYMOPT_CHECK(input_ != nullptr, Name() << ": Backward without a Forward");
  const Tensor<T>& out = layers_.empty() ? *input_ : activations_.back();
  internal::CheckSameShape(Name(), "output gradient", dy.shape(), out.shape());
  if (layers_.empty()) {
    if (dx != nullptr) *dx = dy;
    return;
  }
  // Without dx, gradients stop at the first layer with parameters: the
  // parameter-free layers before it (flatten, ...) are not run backwards.
  std::size_t first = 0;
  if (dx == nullptr) {
    while (first + 1 < layers_.size() && !has_params_[first]) ++first;
  }
  const Tensor<T>* grad_in = &dy;
  for (std::size_t k = layers_.size(); k-- > first;) {
    const Tensor<T>& layer_input = k == 0 ? *input_ : activations_[k - 1];
    Tensor<T>& grad_out =
        (k == 0 && dx != nullptr) ? *dx : grad_buffers_[k % 2];
    layers_[k]->set_input_grad_required(k > first || dx != nullptr);
    layers_[k]->Backward(layer_input, activations_[k], *grad_in, grad_out);
    grad_in = &grad_out;
  }
}

template <typename T>
void Sequential<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  y = Forward(x, mode);
}

template <typename T>
void Sequential<T>::Backward(const Tensor<T>& x,
                             const Tensor<T>&,
                             const Tensor<T>& dy,
                             Tensor<T>& dx) {
  SYMOPT_CHECK(input_ != nullptr && input_->shape() == x.shape(),
               Name() << ": Backward on an input of shape "
                      << ShapeString(x.shape()) << " without a Forward on it");
  input_ = &x;
  if (this->input_grad_required()) {
    Backward(dy, &dx);
  } else {
    Backward(dy, nullptr);
    dx.Resize({0}, x.device());
  }
}

template <typename T>
void Sequential<T>::To(Device device) {
  if (device == Device::kCuda) RequireCudaDevice(Name() + ": To(cuda)");
  for (auto& layer : layers_) layer->To(device);
  for (Tensor<T>& a : activations_) a = Tensor<T>(Shape{0}, device);
  for (Tensor<T>& g : grad_buffers_) g = Tensor<T>(Shape{0}, device);
  input_ = nullptr;
  Layer<T>::To(device);
}

template <typename T>
std::vector<Parameter<T>> Sequential<T>::Params() {
  std::vector<Parameter<T>> all;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const std::string prefix =
        std::to_string(i) + "." + Kind(layers_[i]->Name()) + ".";
    for (Parameter<T>& p : layers_[i]->Params()) {
      p.name = prefix + p.name;
      auto it = overrides_.find(p.name);
      if (it != overrides_.end()) p.manifold = it->second;
      all.push_back(std::move(p));
    }
  }
  return all;
}

template <typename T>
std::vector<Tensor<T>*> Sequential<T>::Buffers() {
  std::vector<Tensor<T>*> all;
  for (auto& layer : layers_) {
    for (Tensor<T>* b : layer->Buffers()) all.push_back(b);
  }
  return all;
}

template <typename T>
std::int64_t Sequential<T>::NumParameters() {
  std::int64_t n = 0;
  for (const Parameter<T>& p : Params()) n += p.value.size();
  return n;
}

template <typename T>
void Sequential<T>::SetManifold(const std::string& name,
                                std::shared_ptr<const Manifold<T>> m) {
  SYMOPT_CHECK(m != nullptr, "SetManifold('" << name << "'): no manifold");
  for (Parameter<T>& p : Params()) {
    if (p.name != name) continue;
    SYMOPT_CHECK(m->rows() == p.value.rows && m->cols() == p.value.cols,
                 "SetManifold('" << name << "'): parameter is " << p.value.rows
                                 << "x" << p.value.cols
                                 << " but the manifold is " << m->Describe());
    m->ProjectPoint(p.value);
    overrides_[name] = std::move(m);
    return;
  }
  std::ostringstream known;
  for (const Parameter<T>& p : Params()) known << " " << p.name;
  SYMOPT_CHECK(false,
               "SetManifold: no parameter named '"
                   << name << "'; the model has:" << known.str());
}

template <typename T>
std::vector<std::string> Sequential<T>::AssignManifoldsBeforeNormalization(
    const ManifoldFactory<T>& make) {
  std::vector<std::string> assigned;
  std::vector<Parameter<T>> params = Params();
  for (std::size_t i = 0; i + 1 < layers_.size(); ++i) {
    if (!layers_[i + 1]->NormalizesInputChannels()) continue;
    const std::string name =
        std::to_string(i) + "." + Kind(layers_[i]->Name()) + ".weight";
    for (const Parameter<T>& p : params) {
      if (p.name != name || p.manifold->Name() != "euclidean") continue;
      SetManifold(name, make(p.value.rows, p.value.cols));
      assigned.push_back(name);
    }
  }
  return assigned;
}

template <typename T>
std::vector<std::string> UseObliqueBeforeNormalization(Sequential<T>& model) {
  return model.AssignManifoldsBeforeNormalization(
      [](std::int64_t rows, std::int64_t cols) {
        return std::make_shared<const Oblique<T>>(rows, cols);
      });
}

template std::vector<std::string> UseObliqueBeforeNormalization(
    Sequential<float>&);
template std::vector<std::string> UseObliqueBeforeNormalization(
    Sequential<double>&);
template class Sequential<float>;
template class Sequential<double>;

}  // namespace nn
}  // namespace symopt
