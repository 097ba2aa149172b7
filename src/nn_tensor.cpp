#include <sstream>

#include "nn/tensor.h"

namespace symopt {
namespace nn {

std::string ShapeString(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

std::int64_t NumElements(const Shape& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    SYMOPT_CHECK(d >= 0, "negative dimension in shape " << ShapeString(shape));
    n *= d;
  }
  return n;
}

}  // namespace nn
}  // namespace symopt
