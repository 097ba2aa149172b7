#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "nn/conv2d.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/normalization.h"
#include "nn/pooling.h"
#include "nn/train.h"

namespace symopt {
namespace nn {

namespace {

// The batch's images on the model's device: the host tensor itself for a CPU
// model, else an upload into *staged (kept across batches, so its device
// memory is reused). Labels stay on the host (the losses take them there).
const Tensor<float>& OnModelDevice(const Tensor<float>& images,
                                   Device device,
                                   Tensor<float>* staged) {
  if (device == images.device()) return images;
  if (staged->device() != device) *staged = Tensor<float>(Shape{0}, device);
  staged->CopyFrom(images);
  return *staged;
}

// The model's buffers (batch-norm running statistics), copied on their own
// device (device-to-device for a GPU model), and restored from such a copy.
std::vector<Tensor<float>> CopyBuffers(Sequential<float>& model) {
  std::vector<Tensor<float>> copy;
  for (Tensor<float>* b : model.Buffers()) copy.push_back(*b);
  return copy;
}

void RestoreBuffers(Sequential<float>& model,
                    const std::vector<Tensor<float>>& copy) {
  const std::vector<Tensor<float>*> buffers = model.Buffers();
  SYMOPT_CHECK(buffers.size() == copy.size(),
               "Train: the model has " << buffers.size()
                                       << " buffers, the accepted copy "
                                       << copy.size());
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    buffers[i]->CopyFrom(copy[i]);
  }
}

// Throws InvalidArgument unless every optimizer parameter is on the model's
// device (a model moved after its optimizer was built would otherwise step
// stale memory).
void CheckOptimizerDevice(const Sequential<float>& model,
                          const RiemannianSgd<float>& optimizer,
                          const char* who) {
  for (const Parameter<float>& p : optimizer.params()) {
    SYMOPT_CHECK(p.value.device == model.device(),
                 who << ": parameter '" << p.name << "' is on the "
                     << DeviceName(p.value.device)
                     << " but the model is on the "
                     << DeviceName(model.device())
                     << "; build the optimizer after Sequential::To");
  }
}

}  // namespace

bool TrainOptions::IsValid(std::string* error) const {
  std::string e;
  if (epochs < 0) e = "epochs must be >= 0, got " + std::to_string(epochs);
  if (batch_size < 1)
    e = "batch_size must be >= 1, got " + std::to_string(batch_size);
  if (eval_batch_size < 1) {
    e = "eval_batch_size must be >= 1, got " + std::to_string(eval_batch_size);
  }
  if (error != nullptr) *error = e;
  return e.empty();
}

EvalResult Evaluate(Sequential<float>& model,
                    const data::Dataset& dataset,
                    std::int64_t batch_size) {
  SYMOPT_CHECK(batch_size >= 1,
               "Evaluate: batch_size must be >= 1, got " << batch_size);
  dataset.Validate();
  data::BatchOptions options;
  options.batch_size = batch_size;
  options.shuffle = false;
  data::BatchIterator it(dataset, options);
  data::Batch batch;
  Tensor<float> staged;
  EvalResult result;
  double loss_sum = 0.0;
  std::int64_t correct = 0;
  while (it.Next(&batch)) {
    const Tensor<float>& logits = model.Forward(
        OnModelDevice(batch.images, model.device(), &staged), Mode::kEval);
    const std::int64_t b = std::int64_t(batch.labels.size());
    loss_sum += SoftmaxCrossEntropy(logits, batch.labels) * double(b);
    correct += CountCorrect(logits, batch.labels);
    result.count += b;
  }
  if (result.count > 0) {
    result.loss = loss_sum / double(result.count);
    result.accuracy = double(correct) / double(result.count);
  }
  return result;
}

EpochReport TrainEpoch(Sequential<float>& model,
                       RiemannianSgd<float>& optimizer,
                       const data::Dataset& train,
                       const TrainOptions& options,
                       int epoch) {
  std::string error;
  SYMOPT_CHECK(options.IsValid(&error), "TrainEpoch: " << error);
  CheckOptimizerDevice(model, optimizer, "TrainEpoch");
  const auto start = std::chrono::steady_clock::now();
  data::BatchOptions batching;
  batching.batch_size = options.batch_size;
  batching.seed = options.seed;
  batching.augment = options.augment;
  // A batch of one sample cannot be normalised by batch norm in training
  // mode; drop the remainder only when it is a single sample.
  batching.last_batch = train.size() % options.batch_size == 1
                            ? data::LastBatch::kDrop
                            : data::LastBatch::kKeep;
  data::BatchIterator it(train, batching);
  it.StartEpoch(epoch);
  data::Batch batch;
  Tensor<float> dlogits, staged;
  double loss_sum = 0.0;
  std::int64_t correct = 0, seen = 0, index = 0;
  while (it.Next(&batch)) {
    model.ZeroGrad();
    const Tensor<float>& logits = model.Forward(
        OnModelDevice(batch.images, model.device(), &staged), Mode::kTrain);
    const double loss = SoftmaxCrossEntropy(logits, batch.labels, &dlogits);
    if (!std::isfinite(loss)) {
      throw NumericalError("epoch " + std::to_string(epoch) + ", batch " +
                           std::to_string(index) +
                           ": the loss is not finite (" + std::to_string(loss) +
                           "); no parameter was changed by this batch");
    }
    const std::int64_t b = std::int64_t(batch.labels.size());
    correct += CountCorrect(logits, batch.labels);
    model.Backward(dlogits);
    const StepSummary step = optimizer.Step();
    if (!step.moved()) {
      throw NumericalError("epoch " + std::to_string(epoch) + ", batch " +
                           std::to_string(index) + ": " + step.message +
                           "; no parameter was changed by this batch");
    }
    loss_sum += loss * double(b);
    seen += b;
    ++index;
  }
  EpochReport report;
  report.epoch = epoch;
  report.train_loss = seen > 0 ? loss_sum / double(seen) : 0.0;
  report.train_accuracy = seen > 0 ? double(correct) / double(seen) : 0.0;
  report.lr = optimizer.lr();
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return report;
}

std::vector<EpochReport> Train(Sequential<float>& model,
                               RiemannianSgd<float>& optimizer,
                               const data::Dataset& train,
                               const data::Dataset* validation,
                               const data::Dataset* test,
                               const TrainOptions& options,
                               BoldDriver<float>* bold_driver) {
  std::string error;
  SYMOPT_CHECK(options.IsValid(&error), "Train: " << error);
  SYMOPT_CHECK(
      bold_driver == nullptr || &bold_driver->optimizer() == &optimizer,
      "Train: the bold driver drives another optimizer");
  SYMOPT_CHECK(bold_driver == nullptr || validation != nullptr,
               "Train: the bold driver needs a validation set");
  std::vector<EpochReport> reports;
  CheckOptimizerDevice(model, optimizer, "Train");
  std::vector<Tensor<float>> accepted_buffers = CopyBuffers(model);
  if (bold_driver != nullptr && !bold_driver->has_baseline()) {
    // The starting point's loss is the baseline.
    bold_driver->EndEpoch(
        Evaluate(model, *validation, options.eval_batch_size).loss);
  }
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    EpochReport report = TrainEpoch(model, optimizer, train, options, epoch);
    if (validation != nullptr) {
      report.validation = Evaluate(model, *validation, options.eval_batch_size);
    }
    if (bold_driver != nullptr) {
      const StepResult r = bold_driver->EndEpoch(report.validation.loss);
      report.accepted = r.accepted;
      if (r.accepted) {
        accepted_buffers = CopyBuffers(model);
      } else {
        RestoreBuffers(model, accepted_buffers);
      }
    }
    report.lr = optimizer.lr();
    if (test != nullptr)
      report.test = Evaluate(model, *test, options.eval_batch_size);
    reports.push_back(report);
    if (options.on_epoch) options.on_epoch(report);
  }
  return reports;
}

void BuildMlpBn(Sequential<float>& model,
                std::int64_t in,
                std::int64_t hidden,
                std::int64_t classes,
                std::uint64_t seed) {
  model.Emplace<Flatten<float>>();
  model.Emplace<Linear<float>>(in, hidden, seed * 2 + 1);
  model.Emplace<BatchNorm<float>>(hidden);
  model.Emplace<ReLU<float>>();
  model.Emplace<Linear<float>>(hidden, classes, seed * 2 + 2);
}

void BuildSmallCnn(Sequential<float>& model,
                   std::int64_t classes,
                   std::uint64_t seed) {
  model.Emplace<Conv2d<float>>(1, 16, 5, 1, 2, seed * 3 + 1);
  model.Emplace<BatchNorm<float>>(16);
  model.Emplace<ReLU<float>>();
  model.Emplace<MaxPool2d<float>>(2);
  model.Emplace<Conv2d<float>>(16, 32, 5, 1, 2, seed * 3 + 2);
  model.Emplace<BatchNorm<float>>(32);
  model.Emplace<ReLU<float>>();
  model.Emplace<MaxPool2d<float>>(2);
  model.Emplace<Flatten<float>>();
  model.Emplace<Linear<float>>(32 * 7 * 7, classes, seed * 3 + 3);
}

std::string FormatEpochReport(const EpochReport& r) {
  char buf[512];
  int n = std::snprintf(buf,
                        sizeof(buf),
                        "epoch %d: train loss %.4f acc %.2f%%",
                        r.epoch,
                        r.train_loss,
                        100 * r.train_accuracy);
  std::string s(buf, n);
  if (r.validation.count > 0) {
    n = std::snprintf(buf,
                      sizeof(buf),
                      " | val loss %.4f acc %.2f%%",
                      r.validation.loss,
                      100 * r.validation.accuracy);
    s.append(buf, n);
  }
  if (r.test.count > 0) {
    n = std::snprintf(buf,
                      sizeof(buf),
                      " | test loss %.4f acc %.2f%%",
                      r.test.loss,
                      100 * r.test.accuracy);
    s.append(buf, n);
  }
  n = std::snprintf(buf,
                    sizeof(buf),
                    " | lr %.4g%s | %.2f s",
                    r.lr,
                    r.accepted ? "" : " (rejected, rolled back)",
                    r.seconds);
  s.append(buf, n);
  return s;
}

}  // namespace nn
}  // namespace symopt
