#include <algorithm>
#include <cmath>

#include "manifolds/check.h"
#include "nn/loss.h"

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
  double total = 0.0;
  for (std::int64_t b = 0; b < n; ++b) {
    const T* z = logits.data() + b * k;
    const double m = *std::max_element(z, z + k);
    double s = 0.0;
    for (std::int64_t j = 0; j < k; ++j) s += std::exp(double(z[j]) - m);
    const double lse = m + std::log(s);
    total += lse - double(z[labels[b]]);
    if (grad != nullptr) {
      T* g = grad->data() + b * k;
      for (std::int64_t j = 0; j < k; ++j) {
        g[j] = T(std::exp(double(z[j]) - lse) / double(n));
      }
      g[labels[b]] -= T(1.0 / double(n));
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
  const std::int64_t s = prediction.size();
  if (grad != nullptr) grad->Resize(prediction.shape(), prediction.device());
  double total = 0.0;
  for (std::int64_t i = 0; i < s; ++i) {
    const double d = double(prediction[i]) - double(target[i]);
    total += d * d;
    if (grad != nullptr) (*grad)[i] = T(2.0 * d / double(s));
  }
  return total / double(s);
}

template <typename T>
std::int64_t CountCorrect(const Tensor<T>& logits,
                          const std::vector<std::int32_t>& labels) {
  CheckLogitsAndLabels("accuracy", logits, labels);
  const std::int64_t n = logits.dim(0), k = logits.dim(1);
  std::int64_t correct = 0;
  for (std::int64_t b = 0; b < n; ++b) {
    const T* z = logits.data() + b * k;
    correct += std::max_element(z, z + k) - z == labels[b];
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
