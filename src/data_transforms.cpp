#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <deque>

#include "data/random.h"
#include "data/transforms.h"

namespace symopt {
namespace data {
namespace {

// Checks x is [..., h, w] and returns (h, w, number of planes).
void PlaneShape(const nn::Shape& shape,
                const char* what,
                std::int64_t* h,
                std::int64_t* w,
                std::int64_t* planes) {
  SYMOPT_CHECK(
      shape.size() >= 2,
      what << ": expected images [..., h, w], got " << nn::ShapeString(shape));
  *h = shape[shape.size() - 2];
  *w = shape[shape.size() - 1];
  *planes = (*h) * (*w) == 0 ? 0 : nn::NumElements(shape) / ((*h) * (*w));
}

void CheckSquare(const char* what,
                 const nn::Shape& shape,
                 std::int64_t h,
                 std::int64_t w) {
  SYMOPT_CHECK(h == w,
               what << " exchanges rows and columns, so it needs "
                       "square images; got "
                    << nn::ShapeString(shape));
}

// Snaps a sample coordinate to the nearest pixel centre when within 1e-9, so
// that quarter turns are exact (cos(pi/2) is 6e-17 in double, not 0).
// (Floor by truncation: std::floor/std::round are library calls on baseline
// x86-64, and they were most of the cost. Sample coordinates are within a few
// image sizes of 0, far inside the range of int64.)
double Floor(double v) {
  const double t = double(std::int64_t(v));
  return t > v ? t - 1 : t;
}
double Snap(double v) {
  const double r = Floor(v + 0.5);
  return std::abs(v - r) < 1e-9 ? r : v;
}

// Parallel loops pay only for large tensors (whole datasets): a parallel
// region costs microseconds, and milliseconds when the cores are shared (seen
// here: an augmented epoch took 5.3 s with threads vs 0.17 s without on a
// loaded 2-core machine). Mini-batch augmentation (Augment below 2^20 pixels)
// runs on the calling thread; the training step's layers use the cores.
constexpr std::int64_t kParallelPixels = std::int64_t(1) << 18;

}  // namespace

GridSymmetry GridSymmetry::Rotation(int k) {
  const int q = ((k % 4) + 4) % 4;
  GridSymmetry g;
  const GridSymmetry quarter{0, -1, 1, 0};
  for (int i = 0; i < q; ++i) g = quarter * g;
  return g;
}

bool GridSymmetry::IsValid() const {
  const bool diagonal =
      b == 0 && c == 0 && std::abs(a) == 1 && std::abs(d) == 1;
  const bool anti = a == 0 && d == 0 && std::abs(b) == 1 && std::abs(c) == 1;
  return diagonal || anti;
}

std::string GridSymmetry::Name() const {
  if (*this == Identity()) return "id";
  if (*this == Rotation(1)) return "rot90";
  if (*this == Rotation(2)) return "rot180";
  if (*this == Rotation(3)) return "rot270";
  if (*this == FlipHorizontal()) return "flip_h";
  if (*this == FlipVertical()) return "flip_v";
  if (a == 0 && b == 1 && c == 1 && d == 0) return "transpose";
  if (a == 0 && b == -1 && c == -1 && d == 0) return "antitranspose";
  return "[" + std::to_string(a) + " " + std::to_string(b) + "; " +
         std::to_string(c) + " " + std::to_string(d) + "]";
}

std::vector<GridSymmetry> GenerateGroup(
    const std::vector<GridSymmetry>& generators) {
  for (const GridSymmetry& g : generators) {
    SYMOPT_CHECK(g.IsValid(),
                 "GenerateGroup: generator " << g.Name()
                                             << " is not a signed "
                                                "permutation");
  }
  std::vector<GridSymmetry> group{GridSymmetry::Identity()};
  std::deque<GridSymmetry> frontier{GridSymmetry::Identity()};
  while (!frontier.empty()) {
    const GridSymmetry h = frontier.front();
    frontier.pop_front();
    for (const GridSymmetry& g : generators) {
      const GridSymmetry gh = g * h;
      bool seen = false;
      for (const GridSymmetry& e : group) seen = seen || e == gh;
      if (!seen) {
        group.push_back(gh);
        frontier.push_back(gh);
      }
    }
  }
  return group;
}

std::vector<GridSymmetry> CyclicGroupC4() {
  return GenerateGroup({GridSymmetry::Rotation(1)});
}
std::vector<GridSymmetry> DihedralGroupD4() {
  return GenerateGroup(
      {GridSymmetry::Rotation(1), GridSymmetry::FlipHorizontal()});
}
std::vector<GridSymmetry> HorizontalFlipGroup() {
  return GenerateGroup({GridSymmetry::FlipHorizontal()});
}
std::vector<GridSymmetry> FlipGroup() {
  return GenerateGroup(
      {GridSymmetry::FlipHorizontal(), GridSymmetry::FlipVertical()});
}

template <typename T>
void ApplySymmetry(const GridSymmetry& g,
                   const T* src,
                   T* dst,
                   std::int64_t h,
                   std::int64_t w) {
  SYMOPT_CHECK(g.IsValid(),
               "ApplySymmetry: " << g.Name() << " is not a signed permutation");
  SYMOPT_CHECK(!g.SwapsAxes() || h == w,
               "ApplySymmetry: " << g.Name() << " needs a square image, got "
                                 << h << " x " << w);
  // Doubled centred coordinates keep half-integer centres integral:
  // X = 2j - (w-1), Y = (h-1) - 2i; the source is M^T (X, Y).
  for (std::int64_t i = 0; i < h; ++i) {
    const std::int64_t y2 = (h - 1) - 2 * i;
    for (std::int64_t j = 0; j < w; ++j) {
      const std::int64_t x2 = 2 * j - (w - 1);
      const std::int64_t xs = g.a * x2 + g.c * y2;
      const std::int64_t ys = g.b * x2 + g.d * y2;
      const std::int64_t js = (xs + (w - 1)) / 2;
      const std::int64_t is = ((h - 1) - ys) / 2;
      dst[i * w + j] = src[is * w + js];
    }
  }
}

template <typename T>
nn::Tensor<T> ApplySymmetry(const GridSymmetry& g, const nn::Tensor<T>& x) {
  std::int64_t h, w, planes;
  PlaneShape(x.shape(), "ApplySymmetry", &h, &w, &planes);
  if (g.SwapsAxes()) CheckSquare(g.Name().c_str(), x.shape(), h, w);
  nn::Tensor<T> y(x.shape());
#pragma omp parallel for schedule(static) if (x.size() >= kParallelPixels)
  for (std::int64_t p = 0; p < planes; ++p) {
    ApplySymmetry(g, x.data() + p * h * w, y.data() + p * h * w, h, w);
  }
  return y;
}

template <typename T>
void RotateBilinear(
    const T* src, T* dst, std::int64_t h, std::int64_t w, double angle) {
  // A non-finite angle makes every sample coordinate NaN, and Floor's
  // conversion of NaN to int64 is undefined behaviour.
  SYMOPT_CHECK(std::isfinite(angle),
               "RotateBilinear: the angle must be finite, got " << angle);
  const double cx = 0.5 * double(w - 1), cy = 0.5 * double(h - 1);
  const double cs = std::cos(angle), sn = std::sin(angle);
  for (std::int64_t i = 0; i < h; ++i) {
    const double y = cy - double(i);
    for (std::int64_t j = 0; j < w; ++j) {
      const double x = double(j) - cx;
      // Source position R(-angle) (x, y), back in row/column coordinates.
      const double js = Snap(cs * x + sn * y + cx);
      const double is = Snap(cy - (-sn * x + cs * y));
      const double i0 = Floor(is), j0 = Floor(js);
      const double fi = is - i0, fj = js - j0;
      const std::int64_t a = std::int64_t(i0), b = std::int64_t(j0);
      if (a >= 0 && a + 1 < h && b >= 0 && b + 1 < w) {
        // All four neighbours inside (the common case).
        const T* p = src + a * w + b;
        dst[i * w + j] =
            T((1 - fi) * ((1 - fj) * double(p[0]) + fj * double(p[1])) +
              fi * ((1 - fj) * double(p[w]) + fj * double(p[w + 1])));
        continue;
      }
      const double weights[4] = {
          (1 - fi) * (1 - fj), (1 - fi) * fj, fi * (1 - fj), fi * fj};
      double sum = 0;
      for (int n = 0; n < 4; ++n) {
        if (weights[n] == 0) continue;
        const std::int64_t ii = a + n / 2, jj = b + n % 2;
        if (ii < 0 || ii >= h || jj < 0 || jj >= w) continue;  // zero outside
        sum += weights[n] * double(src[ii * w + jj]);
      }
      dst[i * w + j] = T(sum);
    }
  }
}

template <typename T>
nn::Tensor<T> Rotate(const nn::Tensor<T>& x, double angle) {
  std::int64_t h, w, planes;
  PlaneShape(x.shape(), "Rotate", &h, &w, &planes);
  SYMOPT_CHECK(std::isfinite(angle),
               "Rotate: the angle must be finite, got " << angle);
  nn::Tensor<T> y(x.shape());
#pragma omp parallel for schedule(static) if (x.size() >= kParallelPixels)
  for (std::int64_t p = 0; p < planes; ++p) {
    RotateBilinear(x.data() + p * h * w, y.data() + p * h * w, h, w, angle);
  }
  return y;
}

template <typename T>
nn::Tensor<T> RotateEach(const nn::Tensor<T>& x,
                         const std::vector<double>& angles) {
  std::int64_t h, w, planes;
  PlaneShape(x.shape(), "RotateEach", &h, &w, &planes);
  SYMOPT_CHECK(x.ndim() >= 3 && std::int64_t(angles.size()) == x.dim(0),
               "RotateEach: " << angles.size() << " angles for images "
                              << nn::ShapeString(x.shape()));
  for (std::size_t k = 0; k < angles.size(); ++k) {
    SYMOPT_CHECK(
        std::isfinite(angles[k]),
        "RotateEach: angle " << k << " must be finite, got " << angles[k]);
  }
  nn::Tensor<T> y(x.shape());
  if (planes == 0) return y;
  const std::int64_t per_image = planes / x.dim(0);  // planes > 0: dim(0) > 0
#pragma omp parallel for schedule(static) if (x.size() >= kParallelPixels)
  for (std::int64_t p = 0; p < planes; ++p) {
    RotateBilinear(x.data() + p * h * w,
                   y.data() + p * h * w,
                   h,
                   w,
                   angles[p / per_image]);
  }
  return y;
}

std::vector<double> RandomAngles(std::int64_t n, std::uint64_t seed) {
  SYMOPT_CHECK(n >= 0, "RandomAngles: negative count " << n);
  const double two_pi = 2 * M_PI;
  std::vector<double> angles(n);
  for (std::int64_t k = 0; k < n; ++k) {
    angles[k] = two_pi * Uniform01(RandomBits(seed, std::uint64_t(k)));
  }
  return angles;
}

template <typename T>
void Augment(nn::Tensor<T>& images,
             const AugmentOptions& options,
             std::uint64_t seed) {
  SYMOPT_CHECK(images.ndim() == 4,
               "Augment: expected images [n, c, h, w], got "
                   << nn::ShapeString(images.shape()));
  SYMOPT_CHECK(
      options.max_angle >= 0 && std::isfinite(options.max_angle),
      "Augment: max_angle must be finite and >= 0, got " << options.max_angle);
  if (!options.Any()) return;
  const std::int64_t n = images.dim(0), c = images.dim(1), h = images.dim(2),
                     w = images.dim(3);
  if (options.rotate90) CheckSquare("rotate90", images.shape(), h, w);
  if (options.max_angle > 0) CheckSquare("rotation", images.shape(), h, w);
#pragma omp parallel if (images.size() >= 4 * kParallelPixels)
  {
    std::vector<T> tmp(h * w);
#pragma omp for schedule(static)
    for (std::int64_t k = 0; k < n; ++k) {
      GridSymmetry g;
      if (options.flip_horizontal && (RandomBits(seed, k, 0) >> 63)) {
        g = GridSymmetry::FlipHorizontal() * g;
      }
      if (options.flip_vertical && (RandomBits(seed, k, 1) >> 63)) {
        g = GridSymmetry::FlipVertical() * g;
      }
      if (options.rotate90) {
        g = GridSymmetry::Rotation(int(RandomBits(seed, k, 2) >> 62)) * g;
      }
      const double angle =
          options.max_angle > 0
              ? options.max_angle * (2 * Uniform01(RandomBits(seed, k, 3)) - 1)
              : 0.0;
      for (std::int64_t ch = 0; ch < c; ++ch) {
        T* plane = images.data() + (k * c + ch) * h * w;
        if (g != GridSymmetry::Identity()) {
          ApplySymmetry(g, plane, tmp.data(), h, w);
          std::copy(tmp.begin(), tmp.end(), plane);
        }
        if (angle != 0) {
          RotateBilinear(plane, tmp.data(), h, w, angle);
          std::copy(tmp.begin(), tmp.end(), plane);
        }
      }
    }
  }
}

template <typename T>
nn::Tensor<T> OrbitStack(const nn::Tensor<T>& x,
                         const std::vector<GridSymmetry>& group) {
  SYMOPT_CHECK(x.ndim() >= 3,
               "OrbitStack: expected images [n, ..., h, w], got "
                   << nn::ShapeString(x.shape()));
  SYMOPT_CHECK(!group.empty(), "OrbitStack: empty group");
  std::int64_t h, w, planes;
  PlaneShape(x.shape(), "OrbitStack", &h, &w, &planes);
  for (const GridSymmetry& g : group) {
    SYMOPT_CHECK(g.IsValid(),
                 "OrbitStack: " << g.Name() << " is not a signed permutation");
    if (g.SwapsAxes()) CheckSquare(g.Name().c_str(), x.shape(), h, w);
  }
  nn::Shape shape = x.shape();
  shape[0] *= std::int64_t(group.size());
  nn::Tensor<T> y(shape);
  const std::int64_t total = planes * std::int64_t(group.size());
#pragma omp parallel for schedule(static) if (y.size() >= kParallelPixels)
  for (std::int64_t q = 0; q < total; ++q) {
    const std::int64_t e = q / planes, p = q % planes;
    ApplySymmetry(group[e], x.data() + p * h * w, y.data() + q * h * w, h, w);
  }
  return y;
}

#define SYMOPT_INSTANTIATE_TRANSFORMS(T)                              \
  template void ApplySymmetry<T>(                                     \
      const GridSymmetry&, const T*, T*, std::int64_t, std::int64_t); \
  template nn::Tensor<T> ApplySymmetry<T>(const GridSymmetry&,        \
                                          const nn::Tensor<T>&);      \
  template void RotateBilinear<T>(                                    \
      const T*, T*, std::int64_t, std::int64_t, double);              \
  template nn::Tensor<T> Rotate<T>(const nn::Tensor<T>&, double);     \
  template nn::Tensor<T> RotateEach<T>(const nn::Tensor<T>&,          \
                                       const std::vector<double>&);   \
  template void Augment<T>(                                           \
      nn::Tensor<T>&, const AugmentOptions&, std::uint64_t);          \
  template nn::Tensor<T> OrbitStack<T>(const nn::Tensor<T>&,          \
                                       const std::vector<GridSymmetry>&);
SYMOPT_INSTANTIATE_TRANSFORMS(float)
SYMOPT_INSTANTIATE_TRANSFORMS(double)
#undef SYMOPT_INSTANTIATE_TRANSFORMS

}  // namespace data
}  // namespace symopt
