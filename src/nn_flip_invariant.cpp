#include <Eigen/Core>
#include <cmath>
#include <random>
#include <sstream>

#include "manifolds/euclidean.h"
#include "nn/flip_invariant.h"
#include "nn_orbits.h"

namespace symopt {
namespace nn {
namespace {

template <typename T>
using RowMatrix =
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace

TiePattern FlipPattern(std::int64_t channels,
                       std::int64_t height,
                       std::int64_t width) {
  SYMOPT_CHECK(channels >= 1 && height >= 1 && width >= 1,
               "FlipPattern: sizes must be >= 1, got C="
                   << channels << " H=" << height << " W=" << width);
  const std::int64_t n = channels * height * width;
  // The flip (T x)[c, h, w] = x[c, h, W-1-w] as an index permutation; the
  // invariance W = W T ties every input index to its image (000_* eq. 26).
  std::vector<std::int64_t> flip(n);
  for (std::int64_t row = 0; row < channels * height; ++row) {
    for (std::int64_t w = 0; w < width; ++w) {
      flip[row * width + w] = row * width + (width - 1 - w);
    }
  }
  TiePattern pattern;
  pattern.rows = 1;
  pattern.cols = n;
  pattern.class_of = internal::OrbitClasses(n, {flip}, &pattern.num_classes);
  return pattern;
}

template <typename T>
FlipInvariantDense<T>::FlipInvariantDense(std::int64_t channels,
                                          std::int64_t height,
                                          std::int64_t width,
                                          std::int64_t out_features,
                                          bool bias,
                                          std::uint64_t seed)
    : c_(channels), h_(height), w_(width), f_(out_features) {
  SYMOPT_CHECK(channels >= 1 && height >= 1 && width >= 1 && out_features >= 1,
               "FlipInvariantDense: sizes must be >= 1, got C="
                   << channels << " H=" << height << " W=" << width
                   << " F=" << out_features);
  pattern_ = FlipPattern(c_, h_, w_);
  const internal::ClassMembers m =
      internal::MembersOf(pattern_.class_of, pattern_.num_classes);
  offsets_ = m.offsets;
  members_ = m.members;
  theta_.resize(f_ * pattern_.num_classes);
  dtheta_.assign(theta_.size(), T(0));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(
      0.0, std::sqrt(2.0 / double(c_ * h_ * w_)));
  for (T& w : theta_) w = T(normal(rng));
  if (bias) {
    bias_.assign(f_, T(0));
    dbias_.assign(f_, T(0));
    bias_manifold_ = std::make_shared<Euclidean<T>>(1, f_);
  }
  weight_manifold_ = std::make_shared<Euclidean<T>>(f_, pattern_.num_classes);
}

template <typename T>
void FlipInvariantDense<T>::SetWeightManifold(
    std::shared_ptr<const Manifold<T>> manifold) {
  SYMOPT_CHECK(manifold != nullptr, Name() << ": weight manifold is null");
  SYMOPT_CHECK(manifold->rows() == f_ && manifold->cols() == NumOrbits(),
               Name() << ": weight manifold " << manifold->Describe()
                      << " does not match the weight shape " << f_ << "x"
                      << NumOrbits());
  weight_manifold_ = std::move(manifold);
}

template <typename T>
std::string FlipInvariantDense<T>::Name() const {
  std::ostringstream os;
  os << "flip_invariant_dense([" << c_ << ", " << h_ << ", " << w_ << "]->"
     << f_ << ")";
  return os.str();
}

template <typename T>
Shape FlipInvariantDense<T>::OutputShape(const Shape& x) const {
  SYMOPT_CHECK(
      x.size() == 4 && x[0] >= 1 && x[1] == c_ && x[2] == h_ && x[3] == w_,
      Name() << ": input shape " << ShapeString(x)
             << " does not match the expected [N, " << c_ << ", " << h_ << ", "
             << w_ << "]");
  return {x[0], f_};
}

template <typename T>
void FlipInvariantDense<T>::Fold(const T* x, std::int64_t n, T* xf) const {
  const std::int64_t d = in_features(), K = NumOrbits();
#pragma omp parallel for schedule(static)
  for (std::int64_t s = 0; s < n; ++s) {
    const T* xs = x + s * d;
    T* out = xf + s * K;
    for (std::int64_t k = 0; k < K; ++k) {
      T acc = T(0);
      for (std::int64_t m = offsets_[k]; m < offsets_[k + 1]; ++m) {
        acc += xs[members_[m]];
      }
      out[k] = acc;
    }
  }
}

template <typename T>
void FlipInvariantDense<T>::ExpandWeights(T* dense) const {
  const std::int64_t d = in_features(), K = NumOrbits();
  for (std::int64_t f = 0; f < f_; ++f) {
    for (std::int64_t i = 0; i < d; ++i) {
      dense[f * d + i] = theta_[f * K + pattern_.class_of[i]];
    }
  }
}

template <typename T>
void FlipInvariantDense<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape ys = OutputShape(x.shape());
  const std::int64_t N = ys[0], K = NumOrbits();
  std::vector<T> xf(N * K);
  Fold(x.data(), N, xf.data());
  y.Resize(ys);
  Eigen::Map<RowMatrix<T>> Y(y.data(), N, f_);
  const Eigen::Map<const RowMatrix<T>> Theta(theta_.data(), f_, K);
  Y.noalias() =
      Eigen::Map<const RowMatrix<T>>(xf.data(), N, K) * Theta.transpose();
  if (!bias_.empty()) {
    Y.rowwise() +=
        Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias_.data(), f_);
  }
}

template <typename T>
void FlipInvariantDense<T>::Backward(const Tensor<T>& x,
                                     const Tensor<T>&,
                                     const Tensor<T>& dy,
                                     Tensor<T>& dx) {
  const Shape ys = OutputShape(x.shape());
  SYMOPT_CHECK(dy.shape() == ys,
               Name() << ": output gradient shape " << ShapeString(dy.shape())
                      << " does not match the output shape "
                      << ShapeString(ys));
  const std::int64_t N = ys[0], K = NumOrbits(), d = in_features();
  std::vector<T> xf(N * K);
  Fold(x.data(), N, xf.data());
  const Eigen::Map<const RowMatrix<T>> dY(dy.data(), N, f_);
  const Eigen::Map<const RowMatrix<T>> Xf(xf.data(), N, K);
  const Eigen::Map<const RowMatrix<T>> Theta(theta_.data(), f_, K);
  Eigen::Map<RowMatrix<T>>(dtheta_.data(), f_, K).noalias() +=
      dY.transpose() * Xf;
  if (!bias_.empty()) {
    Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(dbias_.data(), f_) +=
        dY.colwise().sum();
  }
  // dxf = dy theta, reusing xf's storage; then unfold to every orbit member.
  Eigen::Map<RowMatrix<T>> dXf(xf.data(), N, K);
  dXf.noalias() = dY * Theta;
  dx.Resize(x.shape());
  const std::vector<std::int32_t>& cls = pattern_.class_of;
  T* dxd = dx.data();
  const T* dxf = xf.data();
#pragma omp parallel for schedule(static)
  for (std::int64_t s = 0; s < N; ++s) {
    for (std::int64_t i = 0; i < d; ++i) dxd[s * d + i] = dxf[s * K + cls[i]];
  }
}

template <typename T>
std::vector<Parameter<T>> FlipInvariantDense<T>::Params() {
  std::vector<Parameter<T>> p;
  p.push_back(MakeParameter<T>(Name() + ".weight",
                               theta_.data(),
                               dtheta_.data(),
                               f_,
                               NumOrbits(),
                               weight_manifold_));
  if (!bias_.empty()) {
    p.push_back(MakeParameter<T>(
        Name() + ".bias", bias_.data(), dbias_.data(), 1, f_, bias_manifold_));
  }
  return p;
}

template class FlipInvariantDense<float>;
template class FlipInvariantDense<double>;

}  // namespace nn
}  // namespace symopt
