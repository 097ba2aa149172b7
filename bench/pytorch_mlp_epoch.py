#!/usr/bin/python3
"""One training epoch of the MLP 784-256-BN-ReLU-10 on Fashion-MNIST in
PyTorch and in symopt, in the same run, on the same number of threads.

The model, data and step are the same on both sides: 60,000 training images
(pixels / 255), shuffled batches of 128, softmax cross-entropy, plain SGD with
lr 0.1 (no momentum, no weight decay), PyTorch-default initialisation. The
PyTorch side runs a warm-up epoch, then times --epochs epochs and reports the
median; the symopt side runs `nn_bench --benchmark_filter=MlpEpoch`
(bench/nn_bench.cpp), which times two epochs after its own start-up.

    /usr/bin/python3 bench/pytorch_mlp_epoch.py --threads 2 \
        --bench build/bench/nn_bench

Prints both times and the ratio symopt / PyTorch (target: <= 1). Needs
Debian's python3-torch (run with /usr/bin/python3, which has it) and
dataset-fashion-mnist.
"""
import argparse
import gzip
import json
import os
import statistics
import struct
import subprocess
import sys
import time

import numpy as np
import torch


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, dtype, rank = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit(f"{path}: not a uint8 IDX file")
    dims = struct.unpack(">" + "I" * rank, raw[4:4 + 4 * rank])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def find(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    sys.exit(f"{stem} not found in {directory} (apt-get install dataset-fashion-mnist)")


def torch_epoch_seconds(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    images = read_idx(find(args.data, "train-images-idx3-ubyte"))
    labels = read_idx(find(args.data, "train-labels-idx1-ubyte"))
    x = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    t = torch.from_numpy(labels.astype(np.int64))
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 256),
        torch.nn.BatchNorm1d(256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = x.shape[0]

    def epoch():
        model.train()
        order = torch.randperm(n)
        for start in range(0, n, args.batch_size):
            idx = order[start:start + args.batch_size]
            optimizer.zero_grad(set_to_none=False)
            loss = loss_fn(model(x[idx]), t[idx])
            loss.backward()
            optimizer.step()
        return float(loss)

    epoch()  # warm-up
    times = []
    for _ in range(args.epochs):
        begin = time.perf_counter()
        last = epoch()
        times.append(time.perf_counter() - begin)
    if not np.isfinite(last):
        sys.exit("PyTorch training diverged")
    return statistics.median(times)


def symopt_epoch_seconds(args):
    env = dict(os.environ, SYMOPT_FASHION_MNIST_DIR=args.data)
    out = subprocess.run(
        [args.bench, f"--threads={args.threads}", "--benchmark_filter=MlpEpoch",
         "--benchmark_format=json"],
        check=True, capture_output=True, text=True, env=env).stdout
    runs = [b for b in json.loads(out)["benchmarks"] if b.get("run_type") == "iteration"]
    if not runs or runs[0].get("error_occurred"):
        sys.exit("nn_bench MlpEpoch failed: " + (runs[0].get("error_message", "") if runs else out))
    run = runs[0]
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[run["time_unit"]]
    return run["real_time"] * scale, run.get("test_acc")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="timed PyTorch epochs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--bench", default="build/bench/nn_bench")
    parser.add_argument("--data", default=os.environ.get(
        "SYMOPT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    args = parser.parse_args()
    if args.batch_size != 128:
        sys.exit("nn_bench times batches of 128; keep --batch-size 128 for the ratio")

    torch_s = torch_epoch_seconds(args)
    symopt_s, test_acc = symopt_epoch_seconds(args)
    print(f"threads {args.threads}, batch {args.batch_size}, 60000 images, "
          f"MLP 784-256-BN-ReLU-10, SGD lr 0.1")
    print(f"pytorch {torch.__version__}: {torch_s:.3f} s/epoch")
    print(f"symopt: {symopt_s:.3f} s/epoch (test accuracy after its epochs: {test_acc:.4f})")
    print(f"ratio symopt/pytorch = {symopt_s / torch_s:.3f} (target <= 1)")


if __name__ == "__main__":
    main()
