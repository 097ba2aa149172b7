#include <algorithm>
#include <cmath>

#include "backend/nn_dense_dispatch.h"
#include "manifolds/check.h"
#include "nn/loss.h"
#include "nn_dense_ops.h"

namespace symopt {
namespace nn {

namespace {

template <typename T>
void CheckLogitsAndLabels(const char* what,
                          const Tensor<T>& logits,
                          const std::vector<std::int32_t>& labels) {
  SYMOPT_CHECK(logits.ndim() == 2 && logits.dim(0) >= 1 && logits.dim(1) >= 1,
               what << ": logits shape " << ShapeString(logits.shape())
                    << " does not match expected [N, K]");
  SYMOPT_CHECK(std::int64_t(labels.size()) == logits.dim(0),
               what << ": " << labels.size() << " labels for logits of shape "
                    << ShapeString(logits.shape()));
  const std::int64_t k = logits.dim(1);
  for (size_t n = 0; n < labels.size(); ++n) {
    SYMOPT_CHECK(labels[n] >= 0 && labels[n] < k,
                 what << ": label " << labels[n] << " at index " << n
                      << " is outside [0, " << k << ")");
  }
}

}  // namespace

template <typename T>
double SoftmaxCrossEntropy(const Tensor<T>& logits,
                           const std::vector<std::int32_t>& labels,
                           Tensor<T>* grad) {
  CheckLogitsAndLabels("softmax cross-entropy", logits, labels);
  const std::int64_t n = logits.dim(0), k = logits.dim(1);
  if (grad != nullptr) grad->Resize(logits.shape(), logits.device());
  if (logits.is_cuda()) {
    return backend::dense::SoftmaxCrossEntropy(
        logits.data(),
        labels.data(),
        n,
        k,
        grad != nullptr ? grad->data() : static_cast<T*>(nullptr));
  }
  double total = 0.0;
  for (std::int64_t b = 0; b < n; ++b) {
    const T* z = logits.data() + b * k;
    const double m = z[SoftmaxOps::ArgMax(z, 0, k, 1)];
    double s = 0.0;
    for (std::int64_t j = 0; j < k; ++j) s += SoftmaxOps::ExpTerm(z[j], m);
    const double lse = SoftmaxOps::LogSumExp(m, s);
    total += lse - double(z[labels[b]]);
    if (grad != nullptr) {
      T* g = grad->data() + b * k;
      for (std::int64_t j = 0; j < k; ++j) {
        g[j] = SoftmaxOps::Grad(z[j], lse, double(n), j == labels[b]);
      }
    }
  }
  return total / double(n);
}

template <typename T>
double MeanSquaredError(const Tensor<T>& prediction,
                        const Tensor<T>& target,
                        Tensor<T>* grad) {
  SYMOPT_CHECK(prediction.shape() == target.shape() && prediction.size() >= 1,
               "mean squared error: prediction shape "
                   << ShapeString(prediction.shape()) << " and target shape "
                   << ShapeString(target.shape()) << " differ (or are empty)");
  SYMOPT_CHECK(prediction.device() == target.device(),
               "mean squared error: prediction is on "
                   << DeviceName(prediction.device()) << ", target on "
                   << DeviceName(target.device()));
  const std::int64_t s = prediction.size();
  if (grad != nullptr) grad->Resize(prediction.shape(), prediction.device());
  if (prediction.is_cuda()) {
    return backend::dense::MeanSquaredError(
        prediction.data(),
        target.data(),
        s,
        grad != nullptr ? grad->data() : static_cast<T*>(nullptr));
  }
  double total = 0.0;
  for (std::int64_t i = 0; i < s; ++i) {
    const double d = ElementwiseOps::SquaredErrorDiff(prediction[i], target[i]);
    total += d * d;
    if (grad != nullptr) {
      (*grad)[i] = ElementwiseOps::SquaredErrorGrad<T>(d, double(s));
    }
  }
  return total / double(s);
}

template <typename T>
std::int64_t CountCorrect(const Tensor<T>& logits,
                          const std::vector<std::int32_t>& labels) {
  CheckLogitsAndLabels("accuracy", logits, labels);
  const std::int64_t n = logits.dim(0), k = logits.dim(1);
  if (logits.is_cuda()) {
    return backend::dense::CountCorrect(logits.data(), labels.data(), n, k);
  }
  std::int64_t correct = 0;
  for (std::int64_t b = 0; b < n; ++b) {
    correct += SoftmaxOps::ArgMax(logits.data() + b * k, 0, k, 1) == labels[b];
  }
  return correct;
}

template double SoftmaxCrossEntropy(const Tensor<float>&,
                                    const std::vector<std::int32_t>&,
                                    Tensor<float>*);
template double SoftmaxCrossEntropy(const Tensor<double>&,
                                    const std::vector<std::int32_t>&,
                                    Tensor<double>*);
template double MeanSquaredError(const Tensor<float>&,
                                 const Tensor<float>&,
                                 Tensor<float>*);
template double MeanSquaredError(const Tensor<double>&,
                                 const Tensor<double>&,
                                 Tensor<double>*);
template std::int64_t CountCorrect(const Tensor<float>&,
                                   const std::vector<std::int32_t>&);
template std::int64_t CountCorrect(const Tensor<double>&,
                                   const std::vector<std::int32_t>&);

}  // namespace nn
}  // namespace symopt
