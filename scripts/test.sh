#!/usr/bin/env bash
# The README's test command: install, build, run the whole test suite.
# The last line printed is the ctest summary.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh || exit 1
bash scripts/build.sh || exit 1
log=$(mktemp)
(cd build && ctest --output-on-failure -j "$(nproc)" --timeout 600) 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
grep -E 'tests passed|tests failed' "$log" | tail -n 1
rm -f "$log"
exit "$status"
