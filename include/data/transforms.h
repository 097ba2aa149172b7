// Geometric transforms of images: the exact symmetries of the pixel grid (90°
// rotations and flips, index permutations), bilinear rotation by any angle,
// random augmentation and orbit augmentation over a finite group.
//
// Coordinates. An image is h x w, row-major, row 0 at the top. Centred
// coordinates of pixel (i, j) are x = j - (w-1)/2 (right) and
// y = (h-1)/2 - i (up), so the centre of rotation is the centre of the image
// (between pixels for even sizes, as in mnist-rot). A positive angle turns the
// picture counter-clockwise as displayed.
//
// Grid symmetries (the dihedral group D4 of the square). A GridSymmetry is a
// signed permutation matrix M = [a b; c d] acting on centred coordinates; the
// transformed image is  (g·x)(p) = x(M^-1 p),  so M maps where a pixel was to
// where it goes. M^-1 = M^T, and for centred integer-or-half-integer
// coordinates M^-1 p is again a pixel centre: the transform is an exact index
// permutation, no interpolation. Rotation(1) is the counter-clockwise quarter
// turn M = [0 -1; 1 0], equal to numpy.rot90(x): y[i][j] = x[j][w-1-i].
// Elements with a == 0 (axis swaps: odd rotations, diagonal flips) need
// square images. Composition: (g * h)·x = g·(h·x).
//
// Groups are derived, not listed: GenerateGroup closes a set of generators
// under composition (breadth-first from the identity), so C4 = <rot90>,
// D4 = <rot90, flip>, and the flip groups come out of the same code.
//
// Bilinear rotation by an angle t: output pixel p samples the input at
// R(-t) p with bilinear weights; neighbours outside the image count as 0
// (so the rotated digit's corners are cut, as in mnist-rot). Sample
// positions within 1e-9 of a pixel centre are snapped to it, so rotations by
// multiples of pi/2 reproduce the exact grid rotation (up to float rounding of
// the weights; tests check it).
//
// Shapes: every tensor function takes [..., h, w] (NCHW batches, or any
// leading dims) and treats each trailing h x w plane as one image. Outputs
// never alias inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/tensor.h"

namespace symopt {
namespace data {

struct GridSymmetry {
  int a = 1, b = 0, c = 0, d = 1;  // M = [a b; c d]

  static GridSymmetry Identity() { return {}; }
  // Counter-clockwise rotation by k * 90 degrees (any integer k).
  static GridSymmetry Rotation(int k);
  // Left-right mirror (x -> -x): y[i][j] = x[i][w-1-j].
  static GridSymmetry FlipHorizontal() { return {-1, 0, 0, 1}; }
  // Up-down mirror (y -> -y): y[i][j] = x[h-1-i][j].
  static GridSymmetry FlipVertical() { return {1, 0, 0, -1}; }

  // Composition: (*this * o)·x = this·(o·x).
  GridSymmetry operator*(const GridSymmetry& o) const {
    return {a * o.a + b * o.c,
            a * o.b + b * o.d,
            c * o.a + d * o.c,
            c * o.b + d * o.d};
  }
  GridSymmetry Inverse() const { return {a, c, b, d}; }
  bool operator==(const GridSymmetry& o) const {
    return a == o.a && b == o.b && c == o.c && d == o.d;
  }
  bool operator!=(const GridSymmetry& o) const { return !(*this == o); }
  // True for a signed permutation matrix (an element of D4).
  bool IsValid() const;
  // True when the element exchanges the x and y axes (needs h == w).
  bool SwapsAxes() const { return a == 0; }
  // "rot90", "rot180", "rot270", "id", "flip_h", "flip_v", "transpose",
  // "antitranspose".
  std::string Name() const;
};

// The closure of `generators` under composition, identity first, then in
// breadth-first order of word length (ties in generator order).
// Requires: every generator IsValid().
std::vector<GridSymmetry> GenerateGroup(
    const std::vector<GridSymmetry>& generators);
// C4 = <Rotation(1)>: 4 rotations.
std::vector<GridSymmetry> CyclicGroupC4();
// D4 = <Rotation(1), FlipHorizontal()>: 8 elements.
std::vector<GridSymmetry> DihedralGroupD4();
// <FlipHorizontal()>: 2 elements.
std::vector<GridSymmetry> HorizontalFlipGroup();
// <FlipHorizontal(), FlipVertical()>: 4 elements (includes rot180).
std::vector<GridSymmetry> FlipGroup();

// dst = g·src for one h x w image. Requires: g.IsValid(), h == w when
// g.SwapsAxes(); src and dst do not overlap.
template <typename T>
void ApplySymmetry(const GridSymmetry& g,
                   const T* src,
                   T* dst,
                   std::int64_t h,
                   std::int64_t w);
// g applied to every trailing h x w plane of x ([..., h, w], rank >= 2).
template <typename T>
nn::Tensor<T> ApplySymmetry(const GridSymmetry& g, const nn::Tensor<T>& x);

// dst = src rotated counter-clockwise by `angle` radians, bilinear, zero
// outside. src and dst do not overlap. Requires (else InvalidArgument): the
// angle (every angle, for RotateEach) is finite.
template <typename T>
void RotateBilinear(
    const T* src, T* dst, std::int64_t h, std::int64_t w, double angle);
// Every plane of x rotated by the same angle.
template <typename T>
nn::Tensor<T> Rotate(const nn::Tensor<T>& x, double angle);
// Plane k of x ([n, c, h, w]: image k = x[k], all c channels) rotated by
// angles[k]. Requires: angles.size() == n.
template <typename T>
nn::Tensor<T> RotateEach(const nn::Tensor<T>& x,
                         const std::vector<double>& angles);

// The mnist-rot angles: angle k = 2 pi * Uniform01(RandomBits(seed, k)),
// uniform in [0, 2 pi), k = 0..n-1.
std::vector<double> RandomAngles(std::int64_t n, std::uint64_t seed);

// Random augmentation: for each image k of a [n, c, h, w] batch, independent
// draws from RandomBits(seed, k, stream) decide
//   flip_horizontal: left-right mirror with probability 1/2 (stream 0)
//   flip_vertical:   up-down mirror with probability 1/2 (stream 1)
//   rotate90:        rotation by k*90°, k uniform in {0,1,2,3} (stream 2)
//   max_angle > 0:   bilinear rotation by an angle uniform in
//                    [-max_angle, max_angle) (stream 3); pi = any angle
// applied in that order (the exact ones first, as one index permutation).
// rotate90 and max_angle need square images.
struct AugmentOptions {
  bool flip_horizontal = false;
  bool flip_vertical = false;
  bool rotate90 = false;
  double max_angle = 0;

  bool Any() const {
    return flip_horizontal || flip_vertical || rotate90 || max_angle > 0;
  }
};

// Augments `images` ([n, c, h, w]) in place as described above. Same
// (options, seed, images) => same result.
template <typename T>
void Augment(nn::Tensor<T>& images,
             const AugmentOptions& options,
             std::uint64_t seed);

// Orbit augmentation: every element of `group` applied to every image.
// x is [n, c, h, w]; the result is [|G| n, c, h, w] with
// result[e * n + k] = group[e]·x[k] (element-major: the first n images are
// group[0]·x, the identity when the group comes from GenerateGroup).
template <typename T>
nn::Tensor<T> OrbitStack(const nn::Tensor<T>& x,
                         const std::vector<GridSymmetry>& group);

}  // namespace data
}  // namespace symopt
