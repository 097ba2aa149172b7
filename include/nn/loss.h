// Losses: a value and the gradient with respect to the network output.
//
//   SoftmaxCrossEntropy: logits z [N, K], labels t_n in [0, K)
//     L = (1/N) sum_n ( logsumexp(z_n) - z_n[t_n] )
//     dL/dz_n = (softmax(z_n) - onehot(t_n)) / N
//   logsumexp is computed stably as m + log sum exp(z - m), m = max z_n, so
//   large logits neither overflow nor lose the gradient.
//
//   MeanSquaredError: prediction p, target q of the same shape, S entries
//     L = (1/S) sum_i (p_i - q_i)^2,   dL/dp = 2 (p - q) / S
//
// Both return the loss in double and, when grad is non-null, resize *grad to
// the output's shape and write the gradient (never accumulate). grad must not
// alias the inputs. Labels outside [0, K) or a count other than N throw
// InvalidArgument naming the index and value; nothing is written then.
//
// CountCorrect: how many rows of z have their (first) maximum at the label.
//
// Devices: on CUDA logits (and, for MSE, a CUDA prediction and target) the
// losses run on the GPU: the labels are given on the host and uploaded, the
// gradient is written on the device (grad is resized onto the logits'
// device), and the value comes back to the host as a double (the call waits
// for it). MSE refuses a prediction and a target on different devices.
#pragma once

#include <cstdint>
#include <vector>

#include "nn/tensor.h"

namespace symopt {
namespace nn {

template <typename T>
double SoftmaxCrossEntropy(const Tensor<T>& logits,
                           const std::vector<std::int32_t>& labels,
                           Tensor<T>* grad = nullptr);

template <typename T>
double MeanSquaredError(const Tensor<T>& prediction,
                        const Tensor<T>& target,
                        Tensor<T>* grad = nullptr);

template <typename T>
std::int64_t CountCorrect(const Tensor<T>& logits,
                          const std::vector<std::int32_t>& labels);

}  // namespace nn
}  // namespace symopt
