// The JSON spec read by `symopt solve SPEC.json` (docs/constraint_spec.md has
// the full format with examples; examples/specs/ has ready-made files).
//
//   {
//     "output": [4068],                  shape of Y
//     "input": [256, 6, 6],              shape of X
//     "constraint": "invariance",        | "equivariance" | "representation"
//     "transforms": [ {"type": "flip", "axis": 2} ],
//     "group": {"kind": "cyclic", "order": 2},      optional
//     "support": {"type": "window", ...}            optional
//   }
//
// For "representation" every transform is {"out": T, "in": T}. "group" either
// declares that the transforms generate a finite group of a kind ("cyclic",
// "dihedral" with n, order 2n; "any" with its order) -- checked by closing
// them -- or names one ("cyclic_shift", "flips", "C4", "D4", "p4_filter"),
// whose generators are then added to the transforms.
//
// Errors: a malformed spec throws SpecError whose message starts with
// "SOURCE: PATH: " (e.g. "spec.json: transforms[1].axes: ..."), PATH being
// the JSON location of the problem. Reading a file that cannot be opened throws
// FileError. Parsing needs nlohmann/json at build time; without it these
// functions throw NotCompiledError.
#pragma once

#include <string>

#include "manifolds/check.h"
#include "symmetry/constraint.h"

namespace symopt {

class SpecError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

struct SolveSpec {
  std::string source;      // file name or label, for messages
  std::string constraint;  // "invariance", "equivariance" or "representation"
  ConstraintProblem problem{Shape({1}), Shape({1})};
  bool has_group = false;  // a group was declared or named and checked
  GroupKind group_kind;
  std::int64_t group_order = 0;
  bool has_support = false;
};

// Parses spec text. Requires: well-formed JSON in the format above.
SolveSpec ParseSolveSpec(const std::string& text, const std::string& source);
// Reads and parses a spec file.
SolveSpec LoadSolveSpec(const std::string& path);

struct SolveSpecOptions {
  bool json = false;     // JSON output instead of readable text
  bool classes = false;  // include the class id of every entry
};

// Solves the spec and formats the report the CLI prints: ambient size, dim E,
// whether E is a tie pattern, the number of zeroed entries, the group order
// when one was given, the compatibility verdict when a support was given, and
// optionally the class ids.
std::string RunSolveSpec(const SolveSpec& spec,
                         const SolveSpecOptions& options,
                         const SolveOptions& solve_options = SolveOptions());

}  // namespace symopt
