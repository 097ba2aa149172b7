#!/usr/bin/env bash
# Static analysis for developers (not run by CI): clang-tidy with the
# checked-in .clang-tidy over symopt's C++ translation units.
#
#   scripts/tidy.sh [-j N | -jN] [REGEX]
#
# Configures a compile database in ./build-tidy (no build), runs clang-tidy on
# every .cpp under src/, tests/, examples/, apps/ and bench/ whose path matches
# REGEX (default: all), prints each warning once, and exits non-zero when
# there is any warning or error. The CUDA sources (cuda/*.cu) are compiled by
# nvcc and are not analysed. -j defaults to 2 (the development machine has 2
# cores); each translation unit takes 10-60 s (Eigen).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=2
if [[ "${1:-}" == "-j" ]]; then
  jobs="$2"
  shift 2
elif [[ "${1:-}" =~ ^-j([0-9]+)$ ]]; then
  jobs="${BASH_REMATCH[1]}"
  shift
fi
filter="${1:-.}"

cmake -S . -B build-tidy -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DCMAKE_BUILD_TYPE=Release >/dev/null

root="$(pwd)"
mapfile -t files < <(python3 - "$root" "$filter" <<'EOF'
import json, re, sys
root, pattern = sys.argv[1], re.compile(sys.argv[2])
dirs = ("src/", "tests/", "examples/", "apps/", "bench/")
for entry in json.load(open(root + "/build-tidy/compile_commands.json")):
    rel = entry["file"][len(root) + 1:] if entry["file"].startswith(root + "/") else ""
    if rel.endswith(".cpp") and rel.startswith(dirs) and pattern.search(rel):
        print(entry["file"])
EOF
)
if [[ ${#files[@]} -eq 0 ]]; then
  echo "tidy.sh: no translation unit matches '$filter'" >&2
  exit 2
fi

log_dir="build-tidy/tidy-logs"
rm -rf "$log_dir"
mkdir -p "$log_dir"
echo "tidy.sh: clang-tidy on ${#files[@]} translation units, -j $jobs" >&2
# g++ 12 defaults to C++17, so CMake passes no -std flag; clang-tidy 14 would
# parse as C++14 without the extra argument.
printf '%s\n' "${files[@]}" | xargs -P "$jobs" -I{} sh -c '
  f="$1"; log="$2/$(echo "${f#$3/}" | tr / _).log"
  clang-tidy -p build-tidy --quiet --extra-arg=-std=c++17 "$f" >"$log" 2>&1 ||
    echo "clang-tidy exited non-zero on $f" >>"$log"' _ {} "$log_dir" "$root"

# A header's warning is reported by every translation unit including it:
# print each diagnostic (with its code excerpt) once.
python3 - "$log_dir" <<'EOF'
import glob, re, sys
seen, out = set(), []
diag = re.compile(r"^(/\S+:\d+:\d+: (warning|error): .*)$")
for path in sorted(glob.glob(sys.argv[1] + "/*.log")):
    block = None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        m = diag.match(line)
        if m:
            block = None
            if m.group(1) not in seen:
                seen.add(m.group(1))
                block = [line]
                out.append(block)
        elif line.startswith("clang-tidy exited non-zero"):
            out.append([line])
            block = None
        elif block is not None and not re.match(r"^\d+ (warnings?|errors?)", line):
            block.append(line)
for block in out:
    print("\n".join(block))
n = sum(1 for b in out if ": warning: " in b[0] or ": error: " in b[0]
        or b[0].startswith("clang-tidy exited"))
print(f"tidy.sh: {n} finding(s)", file=sys.stderr)
sys.exit(1 if n else 0)
EOF
