#include <cmath>
#include <limits>
#include <set>

#include "catch.h"
#include "data/dataset.h"
#include "data/transforms.h"
#include "data_test_util.h"

using namespace symopt;
using namespace symopt::data;
using namespace symopt::testing;

namespace {

// Image k of x ([n, c, h, w]) as its own [1, c, h, w] tensor.
template <typename T>
nn::Tensor<T> ImageAt(const nn::Tensor<T>& x, std::int64_t k) {
  nn::Tensor<T> y({1, x.dim(1), x.dim(2), x.dim(3)});
  const std::int64_t per = y.size();
  std::copy(x.data() + k * per, x.data() + (k + 1) * per, y.data());
  return y;
}

template <typename T>
double MaxAbsDiff(const nn::Tensor<T>& a, const nn::Tensor<T>& b) {
  REQUIRE(a.shape() == b.shape());
  double m = 0;
  for (std::int64_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  }
  return m;
}

bool Contains(const std::vector<GridSymmetry>& group, const GridSymmetry& g) {
  return std::find(group.begin(), group.end(), g) != group.end();
}

}  // namespace

TEST_CASE("Grid symmetry groups are closed and have the right orders",
          "[data][transforms]") {
  struct Case {
    std::vector<GridSymmetry> group;
    size_t order;
  };
  for (const Case& c : {Case{CyclicGroupC4(), 4},
                        Case{DihedralGroupD4(), 8},
                        Case{HorizontalFlipGroup(), 2},
                        Case{FlipGroup(), 4}}) {
    REQUIRE(c.group.size() == c.order);
    CHECK(c.group[0] == GridSymmetry::Identity());
    std::set<std::string> names;
    for (const GridSymmetry& g : c.group) {
      CHECK(g.IsValid());
      names.insert(g.Name());
      CHECK(Contains(c.group, g.Inverse()));
      CHECK(g * g.Inverse() == GridSymmetry::Identity());
      for (const GridSymmetry& h : c.group) CHECK(Contains(c.group, g * h));
    }
    CHECK(names.size() == c.order);  // distinct elements
  }
  CHECK(Contains(FlipGroup(), GridSymmetry::Rotation(2)));
  CHECK(!Contains(FlipGroup(), GridSymmetry::Rotation(1)));
  CHECK(GridSymmetry::Rotation(1).Name() == "rot90");
  CHECK(GridSymmetry::Rotation(-1) == GridSymmetry::Rotation(3));
  CHECK(!GridSymmetry{1, 1, 0, 1}.IsValid());
  CHECK_THROWS_AS(GenerateGroup({GridSymmetry{2, 0, 0, 1}}), InvalidArgument);
}

TEST_CASE("Exact rotations and flips match their index definitions",
          "[data][transforms]") {
  for (std::int64_t n : {1, 2, 5, 6, 28}) {
    const nn::Tensor<float> x = RandomImages<float>({1, 1, n, n}, 100 + n);
    const nn::Tensor<float> r = ApplySymmetry(GridSymmetry::Rotation(1), x);
    const nn::Tensor<float> fh =
        ApplySymmetry(GridSymmetry::FlipHorizontal(), x);
    const nn::Tensor<float> fv = ApplySymmetry(GridSymmetry::FlipVertical(), x);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j < n; ++j) {
        // numpy.rot90: counter-clockwise quarter turn.
        CHECK(r[i * n + j] == x[j * n + (n - 1 - i)]);
        CHECK(fh[i * n + j] == x[i * n + (n - 1 - j)]);
        CHECK(fv[i * n + j] == x[(n - 1 - i) * n + j]);
      }
    }
  }
  // A pixel right of the centre goes to the top under a counter-clockwise
  // quarter turn.
  nn::Tensor<float> dot({1, 1, 5, 5});
  dot[2 * 5 + 4] = 1;
  const nn::Tensor<float> turned =
      ApplySymmetry(GridSymmetry::Rotation(1), dot);
  CHECK(turned[0 * 5 + 2] == 1);
}

TEST_CASE(
    "Four quarter turns are the identity, and the action is a homomorphism",
    "[data][transforms]") {
  for (std::int64_t n : {5, 6}) {
    const nn::Tensor<double> x = RandomImages<double>({3, 2, n, n}, 7 + n);
    nn::Tensor<double> y = x;
    for (int k = 0; k < 4; ++k) {
      y = ApplySymmetry(GridSymmetry::Rotation(1), y);
      CHECK(SameValues(y, x) == (k == 3));
    }
    const std::vector<GridSymmetry> d4 = DihedralGroupD4();
    for (const GridSymmetry& g : d4) {
      for (const GridSymmetry& h : d4) {
        CHECK(SameValues(ApplySymmetry(g * h, x),
                         ApplySymmetry(g, ApplySymmetry(h, x))));
      }
    }
  }
}

TEST_CASE("Flips work on rectangles, and axis swaps need squares",
          "[data][transforms][errors]") {
  const nn::Tensor<float> x = RandomImages<float>({2, 1, 3, 5}, 3);
  const nn::Tensor<float> f = ApplySymmetry(GridSymmetry::FlipHorizontal(), x);
  CHECK(SameValues(ApplySymmetry(GridSymmetry::FlipHorizontal(), f), x));
  CHECK(SameValues(ApplySymmetry(GridSymmetry::Rotation(2), x),
                   ApplySymmetry(GridSymmetry::FlipVertical(), f)));
  CHECK_THROWS_AS(ApplySymmetry(GridSymmetry::Rotation(1), x), InvalidArgument);
  CHECK_THROWS_AS(OrbitStack(x, CyclicGroupC4()), InvalidArgument);
  nn::Tensor<float> y = x;
  AugmentOptions options;
  options.rotate90 = true;
  CHECK_THROWS_AS(Augment(y, options, 1), InvalidArgument);
  CHECK(SameValues(y, x));  // untouched
}

TEST_CASE("Bilinear rotation: 0 is the identity, quarter turns are exact",
          "[data][transforms]") {
  for (std::int64_t n : {5, 28}) {
    const nn::Tensor<float> x = RandomImages<float>({2, 1, n, n}, 40 + n);
    CHECK(SameValues(Rotate(x, 0.0), x));
    for (int k = 1; k <= 4; ++k) {
      const nn::Tensor<float> exact =
          ApplySymmetry(GridSymmetry::Rotation(k), x);
      const nn::Tensor<float> bilinear = Rotate(x, k * M_PI / 2);
      // Interpolation error only (the sample points are snapped to pixel
      // centres, so this is float rounding of the weights).
      CHECK(MaxAbsDiff(bilinear, exact) < 1e-6);
    }
  }
}

// Found under UBSan (docs/testing.md): a NaN or infinite angle made
// every sample coordinate NaN, whose conversion to int64 is undefined.
TEST_CASE("Rotation refuses non-finite angles and leaves the output alone",
          "[data][transforms][errors]") {
  const nn::Tensor<float> x = RandomImages<float>({3, 1, 5, 5}, 7);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double bad : {nan, inf, -inf}) {
    INFO("angle " << bad);
    CHECK_THROWS_AS(Rotate(x, bad), InvalidArgument);
    CHECK_THROWS_WITH(Rotate(x, bad),
                      Catch::Matchers::Contains("Rotate: the angle"));
    CHECK_THROWS_WITH(
        RotateEach(x, {0.5, bad, 1.0}),
        Catch::Matchers::Contains("RotateEach: angle 1 must be finite"));
    std::vector<float> dst(25, 3.0f);
    CHECK_THROWS_AS(RotateBilinear(x.data(), dst.data(), 5, 5, bad),
                    InvalidArgument);
    CHECK(dst == std::vector<float>(25, 3.0f));
  }
  // A finite angle, however large, is fine: cos and sin are bounded.
  CHECK_NOTHROW(Rotate(x, 1e300));
}

TEST_CASE("Bilinear rotation composes on affine images and cuts corners",
          "[data][transforms]") {
  // Bilinear interpolation reproduces affine functions exactly, so inside the
  // disc where every sample has its four neighbours, rotating by s then t
  // equals rotating by s + t.
  const std::int64_t n = 29;
  const double c = (n - 1) / 2.0;
  nn::Tensor<double> ramp({1, 1, n, n});
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j)
      ramp[i * n + j] = 0.3 * i - 0.7 * j + 2;
  }
  for (double s : {0.3, 1.1, -2.0}) {
    for (double t : {0.5, 2.9}) {
      const nn::Tensor<double> twice = Rotate(Rotate(ramp, s), t);
      const nn::Tensor<double> once = Rotate(ramp, s + t);
      double worst = 0;
      int inside = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        for (std::int64_t j = 0; j < n; ++j) {
          if (std::hypot(i - c, j - c) > c - 2) continue;
          worst = std::max(worst, std::abs(twice[i * n + j] - once[i * n + j]));
          ++inside;
        }
      }
      CHECK(inside > 400);
      CHECK(worst < 1e-9);
      CHECK(MaxAbsDiff(twice, once) > 0.1);  // outside the disc they differ
    }
  }
  // A constant image stays constant inside and is zero in the corners
  // (zero outside), for a 45 degree turn.
  nn::Tensor<float> ones({1, 1, n, n}, 1.0f);
  const nn::Tensor<float> r = Rotate(ones, M_PI / 4);
  CHECK(r[0] == 0.0f);
  CHECK(r[n * n - 1] == 0.0f);
  CHECK(std::abs(r[(n / 2) * n + n / 2] - 1.0f) < 1e-6);
  CHECK(std::abs(r[(n / 2) * n + 2] - 1.0f) < 1e-6);
}

TEST_CASE("Random rotation angles are seeded and uniform",
          "[data][transforms]") {
  const std::vector<double> a = RandomAngles(20000, 1);
  CHECK(a == RandomAngles(20000, 1));
  CHECK(a != RandomAngles(20000, 2));
  double sum = 0;
  int first_quadrant = 0;
  for (double v : a) {
    REQUIRE(v >= 0);
    REQUIRE(v < 2 * M_PI);
    sum += v;
    first_quadrant += v < M_PI / 2;
  }
  CHECK(std::abs(sum / a.size() - M_PI) < 0.05);
  CHECK(std::abs(first_quadrant / 20000.0 - 0.25) < 0.02);
}

TEST_CASE("Random augmentation draws each transform per image",
          "[data][transforms]") {
  const std::int64_t n = 400;
  const nn::Tensor<float> x = RandomImages<float>({n, 2, 6, 6}, 5);
  auto classify = [&](const nn::Tensor<float>& y,
                      const std::vector<GridSymmetry>& candidates) {
    std::vector<int> counts(candidates.size(), 0);
    for (std::int64_t k = 0; k < n; ++k) {
      const nn::Tensor<float> yk = ImageAt(y, k), xk = ImageAt(x, k);
      int found = -1;
      for (size_t e = 0; e < candidates.size(); ++e) {
        if (SameValues(yk, ApplySymmetry(candidates[e], xk))) found = int(e);
      }
      REQUIRE(found >= 0);  // both channels got the same transform
      ++counts[found];
    }
    return counts;
  };
  SECTION("horizontal flips") {
    AugmentOptions options;
    options.flip_horizontal = true;
    nn::Tensor<float> y = x;
    Augment(y, options, 9);
    const std::vector<int> counts = classify(y, HorizontalFlipGroup());
    CHECK(std::abs(counts[1] - n / 2) < n / 8);
  }
  SECTION("both flips") {
    AugmentOptions options;
    options.flip_horizontal = options.flip_vertical = true;
    nn::Tensor<float> y = x;
    Augment(y, options, 9);
    for (int c : classify(y, FlipGroup())) CHECK(std::abs(c - n / 4) < n / 10);
  }
  SECTION("quarter turns") {
    AugmentOptions options;
    options.rotate90 = true;
    nn::Tensor<float> y = x;
    Augment(y, options, 10);
    for (int c : classify(y, CyclicGroupC4()))
      CHECK(std::abs(c - n / 4) < n / 10);
    nn::Tensor<float> again = x;
    Augment(again, options, 10);
    CHECK(SameValues(again, y));
    Augment(again = x, options, 11);
    CHECK(!SameValues(again, y));
  }
  SECTION("arbitrary angles") {
    // An off-centre blob moves but keeps its mass under any rotation.
    nn::Tensor<float> blob({50, 1, 28, 28});
    for (std::int64_t k = 0; k < 50; ++k) {
      for (std::int64_t i = 0; i < 28; ++i) {
        for (std::int64_t j = 0; j < 28; ++j) {
          const double di = i - 13.5 - 3 - (k % 3), dj = j - 13.5;
          blob[(k * 28 + i) * 28 + j] =
              float(std::exp(-(di * di + dj * dj) / 8));
        }
      }
    }
    AugmentOptions options;
    options.max_angle = M_PI;
    nn::Tensor<float> y = blob;
    Augment(y, options, 3);
    int changed = 0;
    for (std::int64_t k = 0; k < 50; ++k) {
      const nn::Tensor<float> yk = ImageAt(y, k), bk = ImageAt(blob, k);
      double sy = 0, sb = 0;
      for (std::int64_t i = 0; i < yk.size(); ++i) {
        sy += yk[i];
        sb += bk[i];
        REQUIRE(yk[i] >= 0.0f);
        REQUIRE(yk[i] <= 1.0f);
      }
      CHECK(std::abs(sy / sb - 1) < 0.01);
      changed += MaxAbsDiff(yk, bk) > 0.05;
    }
    CHECK(changed > 45);
  }
}

TEST_CASE("Orbit augmentation applies every group element to every sample",
          "[data][transforms]") {
  const nn::Tensor<float> x = RandomImages<float>({3, 1, 4, 4}, 21);
  for (const std::vector<GridSymmetry>& group :
       {CyclicGroupC4(), DihedralGroupD4(), FlipGroup()}) {
    const nn::Tensor<float> y = OrbitStack(x, group);
    const std::int64_t g = std::int64_t(group.size());
    REQUIRE(y.shape() == nn::Shape{3 * g, 1, 4, 4});
    for (std::int64_t e = 0; e < g; ++e) {
      for (std::int64_t k = 0; k < 3; ++k) {
        CHECK(SameValues(ImageAt(y, e * 3 + k),
                         ApplySymmetry(group[e], ImageAt(x, k))));
      }
    }
    // The orbit is invariant: transforming it by any group element permutes
    // its images (per sample).
    for (const GridSymmetry& h : group) {
      const nn::Tensor<float> hy = ApplySymmetry(h, y);
      for (std::int64_t e = 0; e < g; ++e) {
        const std::int64_t e2 =
            std::find(group.begin(), group.end(), h * group[e]) - group.begin();
        REQUIRE(e2 < g);
        for (std::int64_t k = 0; k < 3; ++k) {
          CHECK(SameValues(ImageAt(hy, e * 3 + k), ImageAt(y, e2 * 3 + k)));
        }
      }
    }
  }
  Dataset d;
  d.images = x;
  d.labels = {2, 0, 1};
  const Dataset o = OrbitAugment(d, DihedralGroupD4());
  CHECK(o.size() == 24);
  CHECK(o.images.dim(0) == 24);
  for (std::int64_t k = 0; k < 24; ++k) CHECK(o.labels[k] == d.labels[k % 3]);
  CHECK(SameValues(Head(o, 3).images, x));  // identity block first
}

TEST_CASE("Rotated datasets are reproducible from a seed",
          "[data][transforms]") {
  Dataset d;
  d.images = RandomImages<float>({12, 1, 28, 28}, 8);
  d.labels = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1};
  const Dataset r = RandomlyRotated(d, 77);
  CHECK(r.labels == d.labels);
  CHECK(SameValues(r.images, RandomlyRotated(d, 77).images));
  CHECK(!SameValues(r.images, RandomlyRotated(d, 78).images));
  const std::vector<double> angles = RandomAngles(12, 77);
  for (std::int64_t k = 0; k < 12; ++k) {
    CHECK(SameValues(ImageAt(r.images, k),
                     Rotate(ImageAt(d.images, k), angles[k])));
  }
  const Dataset q = RandomlyRotated90(d, 5);
  std::set<int> turns;
  for (std::int64_t k = 0; k < 12; ++k) {
    int found = -1;
    for (int t = 0; t < 4; ++t) {
      if (SameValues(
              ImageAt(q.images, k),
              ApplySymmetry(GridSymmetry::Rotation(t), ImageAt(d.images, k)))) {
        found = t;
      }
    }
    REQUIRE(found >= 0);
    turns.insert(found);
  }
  CHECK(turns.size() > 1);
}
