// Trains a small classifier on Fashion-MNIST with a symopt optimizer.
//
//   build/examples/train_fashion_mnist --model mlp --optimizer sgd --lr 0.1 \
//       --epochs 10 --threads 2
//   build/examples/train_fashion_mnist --optimizer bold --manifold oblique
//
// Models: "mlp" (flatten, linear 784->hidden, batch norm, relu, linear
// hidden->10) or "cnn" (two conv-bn-relu-maxpool blocks, linear; see
// nn/train.h). Optimizers (RiemannianSgd, optim/sgd.h): "sgd" (plain),
// "momentum" (heavy ball), "nesterov", and "bold" (plain SGD with the bold
// driver of papers/001 deciding each epoch on a validation split). --manifold
// oblique puts every weight that feeds a batch norm on unit-norm rows
// (nn::UseObliqueBeforeNormalization); "euclidean" leaves all parameters free.
//
// --save PATH writes the trained model (nn::SaveModel: weights and batch-norm
// statistics) after training; --load PATH loads one saved with the same
// --model/--hidden/--manifold before training, so --epochs 0 evaluates it on
// the test set and --epochs N trains it further (with a fresh optimizer).
//
//   build/examples/train_fashion_mnist --manifold oblique --save mlp.model
//   build/examples/train_fashion_mnist --manifold oblique --load mlp.model \
//       --epochs 0
//
// Needs Debian's dataset-fashion-mnist (or $SYMOPT_FASHION_MNIST_DIR).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "data/dataset.h"
#include "manifolds/parallel.h"
#include "nn/model_io.h"
#include "nn/train.h"
#include "optim/bold_driver.h"
#include "optim/sgd.h"

using namespace symopt;

// Outside the try below are only CLI11's option set-up (throws on a
// programming error) and string copies.
// NOLINTNEXTLINE(bugprone-exception-escape): see above
int main(int argc, char** argv) {
  CLI::App app{"Train an MLP or a small CNN on Fashion-MNIST with symopt"};
  std::string model_kind = "mlp", optimizer_kind = "sgd",
              manifold = "euclidean";
  int epochs = 10, threads = 0;
  double lr = 0.1, momentum = 0.9;
  std::uint64_t seed = 1;
  std::int64_t batch_size = 128, hidden = 256, train_subset = 0,
               validation_size = 5000;
  std::string data_dir = data::FashionMnistDir();
  std::string save_path, load_path;
  app.add_option("--model", model_kind, "mlp or cnn")
      ->check(CLI::IsMember({"mlp", "cnn"}));
  app.add_option(
         "--optimizer", optimizer_kind, "sgd, momentum, nesterov or bold")
      ->check(CLI::IsMember({"sgd", "momentum", "nesterov", "bold"}));
  app.add_option("--manifold",
                 manifold,
                 "weights before batch norm: euclidean or oblique")
      ->check(CLI::IsMember({"euclidean", "oblique"}));
  app.add_option("--epochs", epochs, "training epochs")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--lr", lr, "learning rate")->check(CLI::PositiveNumber);
  app.add_option("--momentum", momentum, "momentum for momentum/nesterov")
      ->check(CLI::Range(0.0, 0.999));
  app.add_option("--batch-size", batch_size, "mini-batch size")
      ->check(CLI::PositiveNumber);
  app.add_option("--hidden", hidden, "hidden units of the MLP")
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "initialisation and batch-order seed");
  app.add_option("--threads", threads, "CPU threads (0: OpenMP default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--train-subset",
                 train_subset,
                 "use only the first N training images (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--validation",
                 validation_size,
                 "images held out of the training set for the bold driver")
      ->check(CLI::PositiveNumber);
  app.add_option(
      "--data", data_dir, "directory with the Fashion-MNIST IDX files");
  app.add_option("--save", save_path, "write the trained model to this file");
  app.add_option("--load",
                 load_path,
                 "start from the model in this file (saved with the same "
                 "--model, --hidden and --manifold); --epochs 0 only "
                 "evaluates it");
  CLI11_PARSE(app, argc, argv);

  try {
    if (threads > 0) SetNumThreads(threads);
    data::TrainTest data = data::LoadFashionMnist(data_dir);
    data::Dataset train = data.train;
    if (train_subset > 0) train = data::Head(train, train_subset);
    data::Dataset validation;
    const bool bold = optimizer_kind == "bold";
    if (bold) {
      // Hold out the last validation_size training images.
      const std::int64_t n = train.size();
      if (validation_size >= n) {
        std::fprintf(
            stderr,
            "--validation %lld leaves no training images (have %lld)\n",
            (long long)validation_size,
            (long long)n);
        return 2;
      }
      std::vector<std::int64_t> head, tail;
      for (std::int64_t i = 0; i < n; ++i)
        (i < n - validation_size ? head : tail).push_back(i);
      validation = data::Subset(train, tail);
      train = data::Subset(train, head);
    }

    nn::Sequential<float> model;
    if (model_kind == "mlp") {
      nn::BuildMlpBn(model, 28 * 28, hidden, 10, seed);
    } else {
      nn::BuildSmallCnn(model, 10, seed);
    }
    if (manifold == "oblique") nn::UseObliqueBeforeNormalization(model);
    std::printf("%s\n", model.Summary({batch_size, 1, 28, 28}).c_str());
    for (const Parameter<float>& p : model.Params()) {
      std::printf(
          "  %-20s %s\n", p.name.c_str(), p.manifold->Describe().c_str());
    }

    if (!load_path.empty()) {
      nn::LoadModel(model, load_path);
      const nn::EvalResult loaded = nn::Evaluate(model, data.test);
      std::printf("loaded %s: test accuracy %.2f%% (loss %.4f)\n",
                  load_path.c_str(),
                  100 * loaded.accuracy,
                  loaded.loss);
    }

    SgdOptions options;
    options.lr = lr;
    if (optimizer_kind == "momentum" || optimizer_kind == "nesterov")
      options.momentum = momentum;
    options.nesterov = optimizer_kind == "nesterov";
    RiemannianSgd<float> optimizer(model.Params(), options);
    std::unique_ptr<BoldDriver<float>> driver;
    if (bold) driver = std::make_unique<BoldDriver<float>>(&optimizer);

    nn::TrainOptions train_options;
    train_options.epochs = epochs;
    train_options.batch_size = batch_size;
    train_options.seed = seed;
    train_options.on_epoch = [](const nn::EpochReport& r) {
      std::printf("%s\n", nn::FormatEpochReport(r).c_str());
      std::fflush(stdout);
    };
    std::printf(
        "train %lld, validation %lld, test %lld images; %s, lr %g, %d "
        "threads\n",
        (long long)train.size(),
        (long long)validation.size(),
        (long long)data.test.size(),
        optimizer_kind.c_str(),
        lr,
        NumThreads());
    const std::vector<nn::EpochReport> reports =
        nn::Train(model,
                  optimizer,
                  train,
                  bold ? &validation : nullptr,
                  &data.test,
                  train_options,
                  driver.get());
    double seconds = 0;
    for (const auto& r : reports) seconds += r.seconds;
    const nn::EvalResult final_test = nn::Evaluate(model, data.test);
    std::printf(
        "final test accuracy %.2f%% (loss %.4f) after %d epochs, %.1f s "
        "training\n",
        100 * final_test.accuracy,
        final_test.loss,
        epochs,
        seconds);
    if (!save_path.empty()) {
      nn::SaveModel(model, save_path);
      std::printf("saved the model to %s\n", save_path.c_str());
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // e.g. std::bad_alloc for a huge model
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
