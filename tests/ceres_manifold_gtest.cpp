// symopt manifolds through symopt::ceres::ManifoldAdapter, checked with Ceres's
// own invariants (ceres/manifold_test_utils.h, STYLE C6):
//   Plus(x, 0) = x, Minus(x, x) = 0, Minus(Plus(x, d), x) = d,
//   Plus(x, Minus(y, x)) = y, PlusJacobian and MinusJacobian equal Ridders
//   numerical derivatives, MinusJacobian * PlusJacobian = I, and
//   RightMultiplyByPlusJacobian = A * PlusJacobian (0-3 rows),
// on every manifold, several shapes and fixed-seed random points; plus our
// own RightMultiplyByPlusJacobian check on more rows and the never-throws
// contract (STYLE C4).
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "adapters/ceres_manifold.h"
#include "ceres/manifold_test_utils.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manifolds/euclidean.h"
#include "manifolds/linear_subspace.h"
#include "manifolds/oblique.h"
#include "manifolds/product.h"
#include "manifolds/tie_subspace.h"
#include "manifolds/tied_oblique.h"
#include "tie_patterns.h"

namespace symopt {
namespace ceres {
// gmock prints the manifold under test by name instead of as raw bytes.
void PrintTo(const ManifoldAdapter& adapter, std::ostream* os) {
  *os << "ManifoldAdapter(" << adapter.manifold().Describe() << ")";
}
}  // namespace ceres
}  // namespace symopt

namespace {

using symopt::ceres::FirstOrderLoss;
using symopt::ceres::ManifoldAdapter;
using ManifoldPtr = std::shared_ptr<const symopt::Manifold<double>>;
using ::ceres::Matrix;  // row-major dynamic
using ::ceres::Vector;

// Ceres's tolerance for its own manifolds (manifold_test.cc).
constexpr double kTolerance = 1e-9;
constexpr int kNumTrials = 5;

Vector Gaussian(int n, std::mt19937_64& rng, double scale) {
  std::normal_distribution<double> normal(0.0, scale);
  Vector v(n);
  for (int i = 0; i < n; ++i) v[i] = normal(rng);
  return v;
}

Vector RandomPoint(const symopt::Manifold<double>& m, std::uint64_t seed) {
  Vector x(m.AmbientSize());
  m.RandomPoint(symopt::TensorView<double>(x.data(), m.rows(), m.cols()), seed);
  return x;
}

// EXPECT_THAT_MANIFOLD_INVARIANTS_HOLD names Ceres's matchers unqualified.
void ExpectCeresInvariants(const ManifoldAdapter& manifold,
                           const Vector& x,
                           const Vector& delta,
                           const Vector& y) {
  using namespace ::ceres;  // NOLINT(build/namespaces)
  EXPECT_THAT_MANIFOLD_INVARIANTS_HOLD(manifold, x, delta, y, kTolerance);
}

// Runs Ceres's invariants at kNumTrials random points of `m`, with
//   delta: random tangent coordinates (unit scale, and one small 1e-5 step:
//          Ceres's relative tolerance 1e-9 on Minus(Plus(x, d), x) = d cannot
//          hold for |d| ~ 1e-8, where x + d - x alone loses 1e-8 relatively),
//   y:     Plus(x, random coordinates) -- a far point in the image of R_x --
//          and an independent random point, moved into the image of R_x by
//          into_image(x, y) where the manifold needs it (sphere rows: the
//          open hemisphere around x's row).
// Trial 0 of a manifold given `edge_x` starts from that point instead.
using IntoImage = std::function<void(const Vector& x, Vector& y)>;
void CheckAdapter(const ManifoldPtr& m,
                  std::uint64_t seed,
                  const Vector* edge_x = nullptr,
                  const IntoImage& into_image = nullptr) {
  ManifoldAdapter adapter(m);
  ASSERT_EQ(adapter.AmbientSize(), m->AmbientSize());
  ASSERT_EQ(adapter.TangentSize(), m->Dim());
  std::mt19937_64 rng(seed);
  const int d = adapter.TangentSize();
  for (int trial = 0; trial < kNumTrials; ++trial) {
    SCOPED_TRACE(m->Describe() + " trial " + std::to_string(trial));
    const Vector x = (trial == 0 && edge_x != nullptr)
                         ? *edge_x
                         : RandomPoint(*m, seed * 1000 + trial);
    const Vector delta = Gaussian(d, rng, trial == 1 ? 1e-5 : 1.0);
    Vector y(adapter.AmbientSize());
    ASSERT_TRUE(adapter.Plus(x.data(), Gaussian(d, rng, 1.0).data(), y.data()))
        << adapter.LastError();
    ExpectCeresInvariants(adapter, x, delta, y);
    Vector y_random = RandomPoint(*m, seed * 1000 + 500 + trial);
    if (into_image) into_image(x, y_random);
    ExpectCeresInvariants(adapter, x, delta, y_random);
  }
}

// ---- Euclidean --------------------------------------------------------------

TEST(CeresManifoldAdapter, EuclideanInvariants) {
  std::uint64_t seed = 11;
  for (auto [rows, cols] : {std::pair{1, 1}, {3, 4}, {5, 1}, {1, 7}}) {
    auto m = std::make_shared<symopt::Euclidean<double>>(rows, cols);
    const Vector zero = Vector::Zero(m->AmbientSize());
    CheckAdapter(m, seed++, &zero);
  }
}

TEST(CeresManifoldAdapter, EuclideanPlusMinusAreVectorArithmetic) {
  // The identity basis: Plus is x + delta, Minus is y - x, exactly.
  auto m = std::make_shared<symopt::Euclidean<double>>(2, 3);
  ManifoldAdapter adapter(m);
  std::mt19937_64 rng(3);
  const Vector x = Gaussian(6, rng, 1.0), delta = Gaussian(6, rng, 1.0);
  Vector out(6), diff(6);
  ASSERT_TRUE(adapter.Plus(x.data(), delta.data(), out.data()));
  EXPECT_EQ(out, Vector(x + delta));
  ASSERT_TRUE(adapter.Minus(out.data(), x.data(), diff.data()));
  EXPECT_LE((diff - delta).lpNorm<Eigen::Infinity>(), 1e-15);
}

// ---- Oblique ----------------------------------------------------------------

// Flips the rows of y that point away from x's rows: R_x reaches exactly the
// open hemispheres <x_r, y_r> > 0.
void IntoObliqueImage(const symopt::Manifold<double>& m,
                      const Vector& x,
                      Vector& y) {
  for (std::int64_t r = 0; r < m.rows(); ++r) {
    const auto xr = x.segment(r * m.cols(), m.cols());
    auto yr = y.segment(r * m.cols(), m.cols());
    if (xr.dot(yr) < 0) yr = -yr;
  }
}

// Rows that stress the Householder basis: +-e_0 (u = w - s e_0 is largest
// or the reflector's sign flips), w_r0 = 0 (the sign convention), a diagonal.
Vector ObliqueEdgePoint(int rows, int cols) {
  Vector x = Vector::Zero(rows * cols);
  for (int r = 0; r < rows; ++r) {
    auto xr = x.segment(r * cols, cols);
    switch (r % 4) {
      case 0:
        xr[0] = 1.0;
        break;
      case 1:
        xr[0] = -1.0;
        break;
      case 2:
        xr[cols - 1] = 1.0;
        break;  // w_r0 = 0 when cols > 1
      default:
        xr.setConstant(1.0 / std::sqrt(double(cols)));
    }
  }
  return x;
}

TEST(CeresManifoldAdapter, ObliqueInvariants) {
  std::uint64_t seed = 31;
  // (1, 2): one circle, TangentSize() == 1 (the DoF == 1 layout case).
  for (auto [rows, cols] : {std::pair{1, 2}, {4, 3}, {3, 7}, {5, 2}, {2, 16}}) {
    auto m = std::make_shared<symopt::Oblique<double>>(rows, cols);
    ASSERT_EQ(m->Dim(), rows * (cols - 1));
    const Vector edge = ObliqueEdgePoint(rows, cols);
    CheckAdapter(m, seed++, &edge, [&](const Vector& x, Vector& y) {
      IntoObliqueImage(*m, x, y);
    });
  }
}

TEST(CeresManifoldAdapter, ObliqueWithOneColumnHasNoTangentSpace) {
  // OB(3, 1): every row is +-1, so TangentSize() == 0 and Plus is the
  // identity (Ceres then holds the block constant).
  auto m = std::make_shared<symopt::Oblique<double>>(3, 1);
  ManifoldAdapter adapter(m);
  EXPECT_EQ(adapter.TangentSize(), 0);
  const Vector x = (Vector(3) << 1.0, -1.0, 1.0).finished();
  Vector out = Vector::Zero(3);
  ASSERT_TRUE(adapter.Plus(x.data(), nullptr, out.data()))
      << adapter.LastError();
  EXPECT_EQ(out, x);
  EXPECT_TRUE(adapter.Minus(x.data(), x.data(), nullptr))
      << adapter.LastError();
}

TEST(CeresManifoldAdapter, ObliqueFailuresAreValues) {
  auto m = std::make_shared<symopt::Oblique<double>>(3, 4);
  ManifoldAdapter adapter(m);
  const Vector x = RandomPoint(*m, 8);
  Vector out = Vector::Constant(12, 5.0);
  Vector coords = Vector::Constant(9, 5.0);
  // y with an antipodal row is not in the image of R_x: Minus refuses.
  Vector y = x;
  y.segment(4, 4) = -y.segment(4, 4);
  EXPECT_FALSE(adapter.Minus(y.data(), x.data(), coords.data()));
  EXPECT_THAT(
      adapter.LastError(),
      ::testing::AllOf(::testing::HasSubstr("Minus on oblique(3x4)"),
                       ::testing::HasSubstr("row 1 of y is not in the image")));
  EXPECT_TRUE((coords.array() == 5.0).all());
  // A (non-unit) row too short to normalise collapses: a defined event that
  // Plus reports as a failed step instead of writing a NaN.
  Vector tiny = x;
  tiny.segment(8, 4) << 1e-10, 0.0, 0.0, 0.0;
  const Vector zero = Vector::Zero(9);
  EXPECT_FALSE(adapter.Plus(tiny.data(), zero.data(), out.data()));
  EXPECT_THAT(adapter.LastError(),
              ::testing::HasSubstr("collapsed 1 row(s), first row 2"));
  EXPECT_TRUE((out.array() == 5.0).all());
  // Plus may write over its input (Ceres does not promise distinct buffers).
  Vector in_place = x;
  const Vector delta = Vector::Constant(9, 0.1);
  ASSERT_TRUE(adapter.Plus(x.data(), delta.data(), out.data()));
  ASSERT_TRUE(adapter.Plus(in_place.data(), delta.data(), in_place.data()));
  EXPECT_EQ(in_place, out);
}

// ---- TieSubspace ------------------------------------------------------------

// Tie patterns of every stored layout (contiguous runs, row-periodic mirror
// pairs, general CSR), with zeroed entries, under both metrics. Under kShared
// the basis is the class indicators (not Frobenius-orthonormal), so these
// also check that the adapter uses B^+ and B^T = B^+ rgrad where it must.
std::vector<symopt::TiePattern> TestPatterns() {
  using namespace symopt::testing;  // NOLINT(build/namespaces)
  return {RunPattern(4, 6, 3, 2),
          MirrorPattern(3, 5, {2}),
          MirrorPattern(1, 2),  // one class: TangentSize() == 1
          RandomPattern(5, 4, 7, 0.2, 9),
          PermuteIds(RandomPattern(2, 9, 5, 0.0, 10), 11)};
}

TEST(CeresManifoldAdapter, TieSubspaceInvariants) {
  std::uint64_t seed = 41;
  for (auto metric :
       {symopt::TieMetric::kEmbedded, symopt::TieMetric::kShared}) {
    for (const symopt::TiePattern& pattern : TestPatterns()) {
      auto m = std::make_shared<symopt::TieSubspace<double>>(pattern, metric);
      SCOPED_TRACE(
          std::string(symopt::TieLayoutName(m->layout())) +
          (metric == symopt::TieMetric::kShared ? " shared" : " embedded"));
      ASSERT_EQ(m->Dim(), pattern.num_classes);
      const Vector origin = Vector::Zero(m->AmbientSize());  // 0 is in E
      CheckAdapter(m, seed++, &origin);
    }
  }
}

TEST(CeresManifoldAdapter, TiedObliqueInvariants) {
  // Unit rows inside a tie subspace: every class within one row.
  using namespace symopt::testing;  // NOLINT(build/namespaces)
  std::uint64_t seed = 51;
  for (const symopt::TiePattern& pattern :
       {MirrorPattern(3, 5, {2}),
        MirrorPattern(2, 4),  // two classes per row: TangentSize() == rows
        RunPattern(4, 6, 3, 2),
        PermuteIds(MirrorPattern(2, 7, {0, 6}), 52)}) {
    auto m = std::make_shared<symopt::TiedOblique<double>>(pattern);
    ASSERT_EQ(m->Dim(), pattern.num_classes - pattern.rows);
    CheckAdapter(m, seed++, nullptr, [&](const Vector& x, Vector& y) {
      IntoObliqueImage(*m, x, y);
    });
  }
}

// ---- LinearSubspace ---------------------------------------------------------

// The span of `num_vectors` random vectors, the last `dependent` of them
// combinations of the others (so FromSpanningSet must drop them).
std::shared_ptr<symopt::LinearSubspace<double>> RandomLinearSubspace(
    int rows, int cols, int num_vectors, int dependent, std::uint64_t seed) {
  const int n = rows * cols;
  std::mt19937_64 rng(seed);
  Matrix v(n, num_vectors);  // row-major, as FromSpanningSet reads it
  for (int k = 0; k < num_vectors; ++k) {
    v.col(k) = k < num_vectors - dependent
                   ? Gaussian(n, rng, 1.0)
                   : Vector(v.leftCols(num_vectors - dependent) *
                            Gaussian(num_vectors - dependent, rng, 1.0));
  }
  return symopt::LinearSubspace<double>::FromSpanningSet(
      rows,
      cols,
      num_vectors,
      std::vector<double>(v.data(), v.data() + v.size()));
}

TEST(CeresManifoldAdapter, LinearSubspaceInvariants) {
  std::uint64_t seed = 61;
  for (auto [rows, cols, num, dependent] :
       {std::tuple{3, 4, 5, 1}, {2, 5, 1, 0}, {4, 4, 9, 3}, {1, 6, 6, 0}}) {
    std::shared_ptr<symopt::LinearSubspace<double>> m =
        RandomLinearSubspace(rows, cols, num, dependent, seed);
    ASSERT_EQ(m->Dim(), num - dependent);
    const Vector origin = Vector::Zero(m->AmbientSize());
    CheckAdapter(m, seed++, &origin);
  }
}

// ---- Product ----------------------------------------------------------------

// A model's parameter set: one block of every kind, as one flat vector.
std::shared_ptr<symopt::Product<double>> MixedProduct() {
  using namespace symopt::testing;  // NOLINT(build/namespaces)
  std::vector<symopt::Product<double>::Part> parts = {
      std::make_shared<symopt::Oblique<double>>(3, 4),
      std::make_shared<symopt::Euclidean<double>>(1, 3),
      std::make_shared<symopt::TieSubspace<double>>(
          RandomPattern(2, 5, 4, 0.2, 71), symopt::TieMetric::kShared),
      std::make_shared<symopt::TiedOblique<double>>(MirrorPattern(2, 5, {2})),
      RandomLinearSubspace(2, 3, 4, 1, 72),
      std::make_shared<symopt::TieSubspace<double>>(MirrorPattern(2, 4))};
  parts.push_back(parts[0]);  // a part may appear twice
  return std::make_shared<symopt::Product<double>>(parts);
}

TEST(CeresManifoldAdapter, ProductInvariants) {
  auto m = MixedProduct();
  std::int64_t dim = 0;
  for (const auto& part : m->parts()) dim += part->Dim();
  ASSERT_EQ(m->Dim(), dim);
  CheckAdapter(m, 81, nullptr, [&](const Vector& x, Vector& y) {
    // Flip the rows of the sphere-type parts that point away from x's.
    for (std::int64_t i = 0; i < m->NumParts(); ++i) {
      const symopt::Manifold<double>& part = m->part(i);
      if (part.Name() != "oblique" && part.Name() != "tied_oblique") continue;
      Vector x_i = x.segment(m->Offset(i), part.AmbientSize());
      Vector y_i = y.segment(m->Offset(i), part.AmbientSize());
      IntoObliqueImage(part, x_i, y_i);
      y.segment(m->Offset(i), part.AmbientSize()) = y_i;
    }
  });
}

TEST(CeresManifoldAdapter, ProductCoordinatesAreThePartsCoordinates) {
  // Plus on the product = Plus of each part's adapter on its own block with
  // its own slice of delta (the parts' coefficients concatenated).
  auto m = MixedProduct();
  ManifoldAdapter whole(m);
  std::mt19937_64 rng(91);
  const Vector x = RandomPoint(*m, 92);
  const Vector delta = Gaussian(whole.TangentSize(), rng, 0.3);
  Vector plus(whole.AmbientSize());
  ASSERT_TRUE(whole.Plus(x.data(), delta.data(), plus.data()))
      << whole.LastError();
  for (std::int64_t i = 0; i < m->NumParts(); ++i) {
    ManifoldAdapter part(m->parts()[std::size_t(i)]);
    SCOPED_TRACE(part.manifold().Describe());
    Vector part_plus(part.AmbientSize());
    ASSERT_TRUE(part.Plus(x.data() + m->Offset(i),
                          delta.data() + m->CoeffOffset(i),
                          part_plus.data()));
    EXPECT_LE((plus.segment(m->Offset(i), part.AmbientSize()) - part_plus)
                  .lpNorm<Eigen::Infinity>(),
              1e-15);
  }
}

TEST(CeresManifoldAdapter, TieSubspaceSharedCoordinatesAreTheta) {
  // Under kShared, Ceres's coordinates are the compact parameters theta:
  // Plus(x, delta) = x + Expand(delta), Minus(y, x) = Fold(y) - Fold(x), and
  // the gradient Ceres forms is the per-class sum of egrad (FoldSum).
  const symopt::TiePattern pattern = symopt::testing::MirrorPattern(2, 5, {0});
  auto m = std::make_shared<symopt::TieSubspace<double>>(
      pattern, symopt::TieMetric::kShared);
  ManifoldAdapter adapter(m);
  const int n = adapter.AmbientSize(), d = adapter.TangentSize();
  std::mt19937_64 rng(12);
  const Vector x = RandomPoint(*m, 13), delta = Gaussian(d, rng, 1.0);
  const Vector egrad = Gaussian(n, rng, 1.0);
  Vector plus(n), coords(d), grad(d);
  ASSERT_TRUE(adapter.Plus(x.data(), delta.data(), plus.data()));
  ASSERT_TRUE(adapter.Minus(plus.data(), x.data(), coords.data()));
  ASSERT_TRUE(adapter.RightMultiplyByPlusJacobian(
      x.data(), 1, egrad.data(), grad.data()));
  Vector expect_grad = Vector::Zero(d);
  for (int i = 0; i < n; ++i) {
    const int k = pattern.class_of[std::size_t(i)];
    if (k == symopt::TiePattern::kZero) {
      EXPECT_EQ(plus[i], 0.0);
      continue;
    }
    EXPECT_NEAR(plus[i], x[i] + delta[k], 1e-14);
    expect_grad[k] += egrad[i];
  }
  EXPECT_LE((coords - delta).lpNorm<Eigen::Infinity>(), 1e-14);
  EXPECT_LE((grad - expect_grad).lpNorm<Eigen::Infinity>(), 1e-14);
}

// ---- RightMultiplyByPlusJacobian on many rows -------------------------------

// tangent_matrix = ambient_matrix * PlusJacobian for num_rows up to 9 (Ceres's
// matcher stops at 3), computed row by row without forming the Jacobian.
void CheckRightMultiply(const ManifoldPtr& m, std::uint64_t seed) {
  SCOPED_TRACE(m->Describe());
  ManifoldAdapter adapter(m);
  const int n = adapter.AmbientSize(), d = adapter.TangentSize();
  const Vector x = RandomPoint(*m, seed);
  Matrix jacobian(n, d);
  ASSERT_TRUE(adapter.PlusJacobian(x.data(), jacobian.data()));
  std::mt19937_64 rng(seed);
  for (int num_rows : {1, 4, 9}) {
    Matrix ambient(num_rows, n);
    for (int r = 0; r < num_rows; ++r) ambient.row(r) = Gaussian(n, rng, 1.0);
    const Matrix expected = ambient * jacobian;
    Matrix actual = Matrix::Constant(num_rows, d, -7.0);
    ASSERT_TRUE(adapter.RightMultiplyByPlusJacobian(
        x.data(), num_rows, ambient.data(), actual.data()))
        << adapter.LastError();
    EXPECT_LE((actual - expected).norm(), 1e-12 * (1.0 + expected.norm()))
        << "num_rows " << num_rows;
  }
  // Zero rows: nothing is read or written, and it succeeds.
  EXPECT_TRUE(
      adapter.RightMultiplyByPlusJacobian(x.data(), 0, nullptr, nullptr));
}

TEST(CeresManifoldAdapter, RightMultiplyByPlusJacobian) {
  CheckRightMultiply(std::make_shared<symopt::Euclidean<double>>(4, 6), 21);
  CheckRightMultiply(std::make_shared<symopt::Oblique<double>>(6, 20), 22);
  CheckRightMultiply(std::make_shared<symopt::Oblique<double>>(1, 2), 23);
  for (auto metric :
       {symopt::TieMetric::kEmbedded, symopt::TieMetric::kShared}) {
    CheckRightMultiply(
        std::make_shared<symopt::TieSubspace<double>>(
            symopt::testing::RandomPattern(6, 7, 9, 0.1, 24), metric),
        25);
  }
}

// ---- Never throws (STYLE C4) ------------------------------------------------

// A manifold whose every operation throws: the adapter must turn each into
// false, leave its output untouched and say why.
class ThrowingManifold final : public symopt::Manifold<double> {
 public:
  explicit ThrowingManifold(bool throw_std) : Manifold(2, 2), std_(throw_std) {}
  std::int64_t Dim() const override { return 3; }
  std::string Name() const override { return "throwing"; }

 protected:
  [[noreturn]] void Fail() const {
    if (std_) throw symopt::NumericalError("deliberate failure");
    throw 42;  // not a std::exception either
  }
  void ProjectPointImpl(View) const override { Fail(); }
  void ProjectImpl(ConstView, View) const override { Fail(); }
  symopt::RetractReport RetractImpl(View, ConstView) const override { Fail(); }
  void InverseRetractImpl(ConstView, ConstView, View) const override { Fail(); }
  double DistanceToManifoldImpl(ConstView) const override { Fail(); }
  void TangentBasisMultiplyImpl(ConstView, const double*, View) const override {
    Fail();
  }
  void TangentBasisTransposeMultiplyImpl(ConstView,
                                         ConstView,
                                         double*) const override {
    Fail();
  }

 private:
  bool std_;
};

TEST(CeresManifoldAdapter, ExceptionsBecomeFalseAndLeaveOutputsUntouched) {
  for (bool throw_std : {true, false}) {
    SCOPED_TRACE(throw_std ? "std exception" : "non-std exception");
    ManifoldAdapter adapter(std::make_shared<ThrowingManifold>(throw_std));
    const Vector x = Vector::Ones(4), delta = Vector::Ones(3);
    Vector out4 = Vector::Constant(4, 5.0), out3 = Vector::Constant(3, 5.0);
    Matrix jac = Matrix::Constant(4, 3, 5.0),
           jac_t = Matrix::Constant(3, 4, 5.0);
    Matrix tangent = Matrix::Constant(2, 3, 5.0);
    const Matrix ambient = Matrix::Ones(2, 4);
    EXPECT_FALSE(adapter.Plus(x.data(), delta.data(), out4.data()));
    EXPECT_FALSE(adapter.Minus(x.data(), x.data(), out3.data()));
    EXPECT_FALSE(adapter.PlusJacobian(x.data(), jac.data()));
    EXPECT_FALSE(adapter.MinusJacobian(x.data(), jac_t.data()));
    EXPECT_FALSE(adapter.RightMultiplyByPlusJacobian(
        x.data(), 2, ambient.data(), tangent.data()));
    EXPECT_EQ(adapter.NumFailures(), 5);
    const std::string expected =
        throw_std ? "deliberate failure" : "unknown exception";
    EXPECT_THAT(
        adapter.LastError(),
        ::testing::AllOf(::testing::HasSubstr("RightMultiplyByPlusJacobian"),
                         ::testing::HasSubstr("throwing(2x2)"),
                         ::testing::HasSubstr(expected)));
    EXPECT_TRUE((out4.array() == 5.0).all());
    EXPECT_TRUE((out3.array() == 5.0).all());
    EXPECT_TRUE((jac.array() == 5.0).all());
    EXPECT_TRUE((jac_t.array() == 5.0).all());
    EXPECT_TRUE((tangent.array() == 5.0).all());
  }
}

TEST(CeresManifoldAdapter, BadCallsReturnFalseWithAReason) {
  auto m = std::make_shared<symopt::Euclidean<double>>(2, 2);
  ManifoldAdapter adapter(m);
  const Vector x = Vector::Ones(4);
  Vector out = Vector::Constant(4, 5.0);
  Vector delta = Vector::Ones(4);
  EXPECT_TRUE(adapter.LastError().empty());

  EXPECT_FALSE(adapter.Plus(nullptr, delta.data(), out.data()));
  EXPECT_THAT(adapter.LastError(), ::testing::HasSubstr("x is null"));
  EXPECT_FALSE(adapter.Minus(x.data(), nullptr, out.data()));
  EXPECT_THAT(adapter.LastError(), ::testing::HasSubstr("x is null"));
  EXPECT_FALSE(adapter.PlusJacobian(x.data(), nullptr));
  EXPECT_THAT(adapter.LastError(), ::testing::HasSubstr("jacobian is null"));
  EXPECT_FALSE(
      adapter.RightMultiplyByPlusJacobian(x.data(), -1, x.data(), out.data()));
  EXPECT_THAT(adapter.LastError(), ::testing::HasSubstr("num_rows"));

  // A NaN step is refused before anything moves; the output stays as it was.
  delta[2] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(adapter.Plus(x.data(), delta.data(), out.data()));
  EXPECT_THAT(adapter.LastError(),
              ::testing::HasSubstr("delta has a non-finite entry at index 2"));
  EXPECT_TRUE((out.array() == 5.0).all());
  // An infinite point gives an infinite difference: refused too.
  Vector y = x;
  y[3] = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(adapter.Minus(y.data(), x.data(), out.data()));
  EXPECT_THAT(adapter.LastError(), ::testing::HasSubstr("index 3"));
  EXPECT_TRUE((out.array() == 5.0).all());
  EXPECT_EQ(adapter.NumFailures(), 6);
}

TEST(CeresManifoldAdapter, ConstructorRejectsNull) {
  EXPECT_THROW(ManifoldAdapter(nullptr), symopt::InvalidArgument);
}

// ---- FirstOrderLoss ---------------------------------------------------------

TEST(CeresFirstOrderLoss, EvaluatesValueAndGradient) {
  // f(x) = 0.5 |x - a|^2, gradient x - a.
  const Vector a = (Vector(3) << 1.0, -2.0, 0.5).finished();
  FirstOrderLoss loss(3, [&](const double* x, double* g) {
    double f = 0.0;
    for (int i = 0; i < 3; ++i) {
      f += 0.5 * (x[i] - a[i]) * (x[i] - a[i]);
      if (g != nullptr) g[i] = x[i] - a[i];
    }
    return f;
  });
  EXPECT_EQ(loss.NumParameters(), 3);
  const Vector x = Vector::Zero(3);
  double cost = -1.0;
  Vector g(3);
  ASSERT_TRUE(loss.Evaluate(x.data(), &cost, g.data()));
  EXPECT_DOUBLE_EQ(cost, 0.5 * a.squaredNorm());
  EXPECT_EQ(g, Vector(-a));
  // Value only: Ceres passes a null gradient.
  cost = -1.0;
  ASSERT_TRUE(loss.Evaluate(x.data(), &cost, nullptr));
  EXPECT_DOUBLE_EQ(cost, 0.5 * a.squaredNorm());
}

TEST(CeresFirstOrderLoss, NonFiniteOrThrowingCallbacksReturnFalse) {
  int mode = 0;
  FirstOrderLoss loss(4, [&](const double*, double* g) -> double {
    if (g != nullptr) {
      for (int i = 0; i < 4; ++i) g[i] = 1.0;
    }
    if (mode == 1) return std::nan("");
    if (mode == 2 && g != nullptr)
      g[2] = -std::numeric_limits<double>::infinity();
    if (mode == 3) throw symopt::NumericalError("model diverged");
    return 1.0;
  });
  const Vector x = Vector::Zero(4);
  Vector g(4);
  double cost = 7.0;
  mode = 1;
  EXPECT_FALSE(loss.Evaluate(x.data(), &cost, g.data()));
  EXPECT_THAT(loss.LastError(), ::testing::HasSubstr("loss is not finite"));
  mode = 2;
  EXPECT_FALSE(loss.Evaluate(x.data(), &cost, g.data()));
  EXPECT_THAT(
      loss.LastError(),
      ::testing::HasSubstr("gradient has a non-finite entry at index 2"));
  mode = 3;
  EXPECT_FALSE(loss.Evaluate(x.data(), &cost, g.data()));
  EXPECT_THAT(loss.LastError(), ::testing::HasSubstr("model diverged"));
  EXPECT_EQ(cost, 7.0);  // never overwritten by a failed evaluation
  EXPECT_EQ(loss.NumFailures(), 3);
  mode = 0;
  EXPECT_TRUE(loss.Evaluate(x.data(), &cost, g.data()));
  EXPECT_EQ(cost, 1.0);
}

TEST(CeresFirstOrderLoss, ConstructorRejectsBadArguments) {
  EXPECT_THROW(FirstOrderLoss(0, [](const double*, double*) { return 0.0; }),
               symopt::InvalidArgument);
  EXPECT_THROW(FirstOrderLoss(3, nullptr), symopt::InvalidArgument);
}

}  // namespace
