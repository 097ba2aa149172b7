#!/usr/bin/env python3
"""PyTorch's time for the GPU training epochs of bench/nn_gpu_train_bench.cpp,
on the same GPU, for the ratio symopt / PyTorch in bench/RESULTS.md.

The same models (model 0: 784-256-BN-ReLU-10; model 1: the small CNN of
nn::BuildSmallCnn, conv5x5(1->16)-BN-ReLU-maxpool2-conv5x5(16->32)-BN-ReLU-
maxpool2-linear(1568->10)), the same epoch sizes (60,000 and 10,000 images of
1x28x28, synthetic: what is timed does not depend on the pixel values), batches
of 128, softmax cross-entropy, SGD with momentum 0.9 and lr 0.02. The loop
does what symopt's nn::TrainEpoch does: shuffle on the host, upload each batch
from host memory, read each batch's loss on the host. PyTorch's weights are
plain Euclidean (symopt's first layer is oblique, which adds its retraction).
One warm-up epoch, then the median of --epochs timed epochs, each ended by a
device synchronisation. Prints one line per model: images per second.

    python3 bench/pytorch_gpu_epoch.py [--epochs 3]
"""
import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.BatchNorm1d(256),
                         nn.ReLU(), nn.Linear(256, 10))


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(16, 32, 5, padding=2),
                         nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * 7 * 7, 10))


def epoch(model, opt, images, labels, rng, dev):
    order = torch.from_numpy(rng.permutation(len(labels)))
    total = 0.0
    for s in range(0, len(labels), 128):
        idx = order[s:s + 128]
        x = images[idx].to(dev)
        y = labels[idx].to(dev)
        opt.zero_grad(set_to_none=False)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    torch.cuda.synchronize()
    return total / len(labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    dev = torch.device("cuda")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    for kind, build, n in ((0, mlp, 60000), (1, small_cnn, 10000)):
        images = torch.rand(n, 1, 28, 28)
        labels = torch.randint(0, 10, (n,))
        model = build().to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
        epoch(model, opt, images, labels, rng, dev)  # warm-up
        times = []
        for _ in range(args.epochs):
            t0 = time.perf_counter()
            epoch(model, opt, images, labels, rng, dev)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        print(f"pytorch model:{kind} images:{n} epoch {t * 1e3:.1f} ms "
              f"items_per_s {n / t:.0f}")


if __name__ == "__main__":
    main()
