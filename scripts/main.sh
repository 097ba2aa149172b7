#!/usr/bin/env bash
# The README's main command: install, build, run the main job on its default
# data. Until the comparison study exists, the main job is the worked example
# of the foundation (examples/worked_example.cpp).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
./build/examples/worked_example "$@"
