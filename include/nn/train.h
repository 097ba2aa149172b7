// Training and evaluation loops: a Sequential<float> classifier, a symopt
// optimizer and a labelled image dataset (DESIGN.md section 1: data ->
// model -> Parameter{value, grad, manifold} -> optimizer).
//
// One training step on a mini-batch (x, t):
//   model.ZeroGrad();  z = model.Forward(x, kTrain);
//   L = SoftmaxCrossEntropy(z, t, &dz);  model.Backward(dz);
//   optimizer.Step()   (Riemannian SGD on every parameter's own manifold)
// An epoch visits the training set once in a seeded random order
// (data::BatchIterator: epoch e's order depends only on (seed, e)). When the
// last batch would hold a single image (which batch norm cannot normalise in
// training mode) it is dropped for that epoch.
//
// With a bold driver (optim/bold_driver.h) the end of each epoch computes the
// loss of the current parameters on a held-out set (eval mode) and calls
// EndEpoch(loss): a rise rolls the parameters and optimizer state back to the
// last accepted point, and Train also restores the model's buffers (batch-norm
// running statistics) taken at that point, so the rolled-back model is
// exactly the accepted one.
//
// Devices: the loops run on the model's device (model.device(), set by
// Sequential::To). For a GPU model each batch's images are uploaded once
// (labels stay on the host), forward, loss (SoftmaxCrossEntropy,
// CountCorrect on the device logits), backward and the optimizer step run on
// the GPU, and the bold driver's rollback restores the parameters, momentum
// buffers and the model's buffers (batch-norm running statistics) with
// device-to-device copies. The optimizer must be built from the model's
// parameters after the move (every parameter on the model's device, else
// InvalidArgument naming it).
//
// Bad numbers: the loss of every batch and the gradients are screened. A
// non-finite loss, or a step the optimizer refuses because a gradient holds
// NaN/Inf (StepStatus::kNonFiniteGradient: nothing was written), throws
// NumericalError naming the epoch, the batch and the parameter; the weights
// are those before the bad batch.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "nn/sequential.h"
#include "optim/bold_driver.h"
#include "optim/sgd.h"

namespace symopt {
namespace nn {

struct EvalResult {
  double loss = 0.0;      // mean softmax cross-entropy
  double accuracy = 0.0;  // fraction of arg-max hits
  std::int64_t count = 0;
};

struct EpochReport {
  int epoch = 0;
  double train_loss = 0.0;      // mean over the epoch's batches (moving point)
  double train_accuracy = 0.0;  // likewise, in training mode
  EvalResult validation;        // count == 0 when no validation set
  EvalResult test;              // count == 0 when no test set
  double lr = 0.0;              // the optimizer's learning rate after the epoch
  bool accepted = true;         // false when the bold driver rolled back
  double seconds = 0.0;         // training time of the epoch (no evaluation)
};

struct TrainOptions {
  int epochs = 10;
  std::int64_t batch_size = 128;
  std::uint64_t seed = 0;  // batch order (and augmentation draws)
  data::AugmentOptions augment;
  std::int64_t eval_batch_size = 1000;
  // Called after every epoch (logging, early stopping by throwing, ...).
  std::function<void(const EpochReport&)> on_epoch;

  bool IsValid(std::string* error) const;
};

// The loss and accuracy of `model` on `dataset` in eval mode, in batches of
// batch_size (the result does not depend on batch_size beyond rounding).
// Requires: the model maps [b, c, h, w] images to [b, num_classes] logits.
EvalResult Evaluate(Sequential<float>& model,
                    const data::Dataset& dataset,
                    std::int64_t batch_size = 1000);

// One epoch (`epoch` selects the batch order). Returns the report with the
// training fields filled.
EpochReport TrainEpoch(Sequential<float>& model,
                       RiemannianSgd<float>& optimizer,
                       const data::Dataset& train,
                       const TrainOptions& options,
                       int epoch);

// options.epochs epochs. bold_driver may be null; when not, it must drive
// `optimizer` and `validation` must be non-null (its loss decides each
// epoch). validation and test may be null (not evaluated).
std::vector<EpochReport> Train(Sequential<float>& model,
                               RiemannianSgd<float>& optimizer,
                               const data::Dataset& train,
                               const data::Dataset* validation,
                               const data::Dataset* test,
                               const TrainOptions& options,
                               BoldDriver<float>* bold_driver = nullptr);

// Reference models for 28 x 28 grey images, 10 classes (what the example,
// the benchmarks and the training test use). Layer seeds derive from seed.
//   MLP with batch norm (papers/001's archBN, one hidden layer):
//     flatten, linear(in -> hidden), batchnorm(hidden), relu,
//     linear(hidden -> classes)
//   small CNN: conv2d(1->16, k5, p2), batchnorm, relu, maxpool(2),
//     conv2d(16->32, k5, p2), batchnorm, relu, maxpool(2), flatten,
//     linear(32*7*7 -> classes)
// Requires: sizes >= 1. Appends to `model`.
void BuildMlpBn(Sequential<float>& model,
                std::int64_t in,
                std::int64_t hidden,
                std::int64_t classes,
                std::uint64_t seed);
void BuildSmallCnn(Sequential<float>& model,
                   std::int64_t classes,
                   std::uint64_t seed);

// "epoch 3: train loss 0.4123 acc 85.31% | val loss 0.40 acc 85.9% |
//  test loss ... | lr 0.1 | 1.92 s"
std::string FormatEpochReport(const EpochReport& report);

}  // namespace nn
}  // namespace symopt
