// Model files: a trained Sequential's weights (every parameter, on its
// manifold) and buffers (batch-norm running statistics) in one versioned,
// CRC-checked binary file, so the model can be evaluated later, compared
// with another run, or trained further (with a fresh optimizer; the
// optimizer's own state goes in a checkpoint, optim/checkpoint.h).
//
// What is a model's point: Sequential::Params() (name "<layer>.<kind>.<local>",
// rows x cols, manifold) and, per layer, Layer::Buffers(), named
// "<layer>.<kind>.buffer<k>" (k-th buffer of that layer). A loaded model
// holds bitwise the saved values, so it computes bitwise the same outputs in
// eval mode.
//
// File format, version 1 (integers little-endian; T values in the host's
// IEEE-754 little-endian layout):
//
//   offset 0   char[8]  magic "SYMOPTNN"
//          8   u32      format version (kModelFileVersion)
//         12   u32      dtype of every payload (1 float32, 2 float64)
//         16   u64      byte length of the body
//         24   body:
//                string   the model's Name() ("sequential(5 layers)")
//                u32      number of layers L, then L strings: each layer's
//                         Name() ("linear(784->256)", "batchnorm(256)", ...)
//                u32      number of records, then the records in layer order
//                         (parameters in Params() order, then buffers):
//                  u32     role (1 parameter, 2 buffer)
//                  string  name
//                  string  kind: the manifold's Name() ("oblique",
//                          "euclidean", "tie_subspace", ...), "buffer"
//                  string  the manifold's Describe() ("oblique(32x25)"); ""
//                          for buffers
//                  u32     rank r, then r i64 dims (parameters: rows, cols;
//                          buffers: the tensor's shape)
//                  payload: prod(dims) values of T, row-major
//   end - 4    u32      CRC-32 (zlib) of every byte before it
// (string = u32 byte length, then the bytes.)
//
// Saving copies device tensors to the host, checks every value is finite,
// and writes atomically: a temporary file beside `path`, fsync'ed, renamed
// over it. On failure the previous file at `path` is byte-identical.
//
// Loading reads and validates EVERYTHING on the host before changing the
// model: size, magic, version, length, CRC and record structure (FileError:
// the file is corrupt), then against the model (InvalidArgument): dtype;
// layer count and kinds (a different architecture, naming the first layer
// that differs); parameter count, names, manifold kinds and shapes (naming
// the parameter and both shapes or kinds); buffer names and shapes; every
// value finite; every parameter value on its manifold, i.e.
// DistanceToManifold(value) <= DefaultPointTolerance<T>(rows) (optim/sgd.h:
// 1e-5 sqrt(rows) for float, 1e-10 sqrt(rows) for double; what an optimizer
// accepts); and finally each layer's full Name() (hyper-parameters without
// weights: pooling size, dropout rate). Only then are the values copied into
// the model's tensors on the model's device. Every message starts with
// "model file '<path>': ". On any error the model is bitwise unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/sequential.h"

namespace symopt {
namespace nn {

inline constexpr std::uint32_t kModelFileVersion = 1;

// Requires: the directory of `path` exists and is writable; every parameter
// and buffer value is finite (else InvalidArgument naming the tensor and the
// flat index; nothing is written). The model may be on either device; it is
// not changed.
// Ensures: `path` holds the complete model file, or (on FileError or
// InvalidArgument) is unchanged and no temporary file is left.
template <typename T>
void SaveModel(Sequential<T>& model, const std::string& path);

// Requires: `model` has the architecture the file was saved from (same
// layers, parameter names, manifold kinds and shapes), on either device.
// Ensures: on success every parameter and buffer holds bitwise the saved
// values (on the model's device); on FileError / InvalidArgument nothing in
// the model changed.
template <typename T>
void LoadModel(Sequential<T>& model, const std::string& path);

// One record of a model file, for inspection and tools.
struct ModelRecordInfo {
  std::string role;  // "parameter" or "buffer"
  std::string name;
  std::string kind;         // manifold Name(), or "buffer"
  std::string description;  // manifold Describe(), or ""
  std::vector<std::int64_t> shape;
};

struct ModelFileInfo {
  std::uint32_t version = 0;
  std::string dtype;  // "float32" or "float64"
  std::string model_name;
  std::vector<std::string> layers;  // each layer's Name()
  std::vector<ModelRecordInfo> records;
};

// Reads and checks a model file's structure (magic, version, length, CRC,
// records) without a model. Throws FileError like LoadModel.
ModelFileInfo ReadModelFileInfo(const std::string& path);

extern template void SaveModel<float>(Sequential<float>&, const std::string&);
extern template void SaveModel<double>(Sequential<double>&, const std::string&);
extern template void LoadModel<float>(Sequential<float>&, const std::string&);
extern template void LoadModel<double>(Sequential<double>&, const std::string&);

}  // namespace nn
}  // namespace symopt
