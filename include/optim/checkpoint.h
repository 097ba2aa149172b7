// Checkpoints: the optimizer's state and the parameter values in one
// versioned binary file, so training continues BIT-IDENTICALLY after a
// reload (the same values, momentum buffers, step count and learning rates
// as an uninterrupted run), optionally with the bold driver's state and the
// plateau / stopping bookkeeping.
//
// File format, version 1 (all integers little-endian; T values in the
// host's IEEE-754 little-endian layout):
//
//   offset 0   char[8]  magic "SYMOPTCK"
//          8   u32      format version (kCheckpointVersion)
//         12   u32      number of records
//         16   u64      byte length of the records section
//         24   records, each:
//                u32  role (what the record is: a parameter value, a
//                     momentum buffer, optimizer scalars, a bold-driver
//                     snapshot, ...)
//                u32  name length, then the name bytes (the parameter name,
//                     or the scalar's name, e.g. "step_count")
//                u32  kind length, then the kind bytes (the manifold's
//                     Name(): "oblique", "euclidean", ...; "state" for
//                     scalars)
//                i64  rows, i64 cols
//                u32  dtype (1 float32, 2 float64, 3 int64)
//                u64  payload byte length (= rows * cols * dtype size)
//                payload (row-major)
//   end - 4    u32      CRC-32 (zlib) of every byte before it
//
// Saving is atomic: the file is written to a temporary file in the target's
// directory, flushed and fsync'ed, then renamed over the target (and the
// directory fsync'ed). On any failure the temporary file is removed and the
// previous checkpoint at `path` is left byte-identical; FileError names the
// file and the system error.
//
// Loading validates EVERYTHING before changing anything: size, magic,
// version, truncation, CRC, the record structure, then against the
// optimizer: parameter count and names, manifold kinds, shapes, dtype,
// values on their manifolds and momentum buffers in their tangent spaces
// (within RiemannianSgd::PointTolerance), momentum present exactly where the
// optimizer keeps it, learning-rate groups. Corrupt or truncated files throw
// FileError; a file that does not fit the optimizer throws InvalidArgument.
// Either way the message starts with "checkpoint '<path>': " and the
// optimizer, its parameters and the other parts are untouched.
//
// Parameters are matched by name (their order may differ). Learning rates
// are restored from the file; options (momentum, weight decay, groups'
// momentum) come from the optimizer the file is loaded into.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "optim/bold_driver.h"
#include "optim/schedule.h"
#include "optim/sgd.h"

namespace symopt {

inline constexpr std::uint32_t kCheckpointVersion = 1;

// The optional parts saved and loaded next to the optimizer. Save writes the
// non-null ones; Load restores the non-null ones and requires the file to
// hold them (parts in the file that are not asked for are ignored).
template <typename T>
struct CheckpointParts {
  BoldDriver<T>* bold_driver = nullptr;
  PlateauDecay* plateau = nullptr;
  StoppingRule* stopping = nullptr;
};

// Requires: the directory of path exists and is writable.
// Ensures: path holds a complete checkpoint, or (on FileError) is unchanged.
template <typename T>
void SaveCheckpoint(const std::string& path,
                    const RiemannianSgd<T>& optimizer,
                    const CheckpointParts<T>& parts = {});

// Ensures: on success the optimizer (values, momentum, step count, learning
// rates) and the given parts equal those saved; on any error nothing changed.
template <typename T>
void LoadCheckpoint(const std::string& path,
                    RiemannianSgd<T>* optimizer,
                    const CheckpointParts<T>& parts = {});

// One record's header, for inspection and tools.
struct CheckpointRecordInfo {
  std::string role;  // "value", "momentum", "optimizer", "bold_driver", ...
  std::string name;
  std::string kind;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::string dtype;  // "float32", "float64", "int64"
};

// Reads and checks a checkpoint's structure (magic, version, truncation,
// CRC, records) and lists its records. Throws FileError like LoadCheckpoint.
std::vector<CheckpointRecordInfo> ListCheckpoint(const std::string& path);

extern template void SaveCheckpoint<float>(const std::string&,
                                           const RiemannianSgd<float>&,
                                           const CheckpointParts<float>&);
extern template void SaveCheckpoint<double>(const std::string&,
                                            const RiemannianSgd<double>&,
                                            const CheckpointParts<double>&);
extern template void LoadCheckpoint<float>(const std::string&,
                                           RiemannianSgd<float>*,
                                           const CheckpointParts<float>&);
extern template void LoadCheckpoint<double>(const std::string&,
                                            RiemannianSgd<double>*,
                                            const CheckpointParts<double>&);

}  // namespace symopt
