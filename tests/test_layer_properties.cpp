// A seeded property sweep over random layers: shapes from 1 x 1 up, ranks up to and above
// min(out, in), float and double, both scalings, every σ split and alpha policy. In each case
// forward, merge/unmerge, spectrum, resize and keepDirections keep their invariants against
// dense references, and bad calls throw lora::Error with the layer unchanged. 1 200 cases per
// scalar (2 400 per run), reproducible from LORA_PROPERTY_SEED (default 1).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lora/layer.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "support/matrices.hpp"

namespace {

using lora::test::gaussian;
using lora::test::Mat;
using lora::test::Vec;
using Index = Eigen::Index;

constexpr int kCasesPerScalar = 1200;

std::uint64_t baseSeed() {
  const char* env = std::getenv("LORA_PROPERTY_SEED");
  return env != nullptr && *env != '\0' ? std::strtoull(env, nullptr, 10) : 1;
}

template <typename S>
constexpr double tol() {
  return sizeof(S) == 4 ? 2e-4 : 1e-10;
}

// A snapshot of everything a failed call must leave as it was.
template <typename S>
struct PropertySnapshot {
  Mat<S> A, B, gA, gB, W;
  double alpha;
  bool merged;
  explicit PropertySnapshot(const lora::Layer<S>& l, const Mat<S>& w)
      : A(l.A()),
        B(l.B()),
        gA(l.gradA()),
        gB(l.gradB()),
        W(w),
        alpha(l.alpha()),
        merged(l.isMerged()) {}
  bool same(const lora::Layer<S>& l, const Mat<S>& w) const {
    return l.A() == A && l.B() == B && l.gradA() == gA && l.gradB() == gB && w == W &&
           l.alpha() == alpha && l.isMerged() == merged;
  }
};

Eigen::VectorXd denseSpectrum(const Eigen::MatrixXd& M) {
  return lora::linalg::singularValues(M);
}

template <typename S>
void runCase(int c, std::uint64_t seed, int& checks) {
  lora::Rng rng(seed);
  const auto pick = [&rng](Index lo, Index hi) {  // uniform in [lo, hi]
    return lo + static_cast<Index>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
  };
  const Index out = pick(1, 9), in = pick(1, 9), n = pick(1, 5);
  const Index r = pick(1, std::min(out, in) + 2);  // up to and above min(out, in)
  const auto mode = pick(0, 1) == 0 ? lora::ScalingMode::Standard : lora::ScalingMode::RsLora;
  const double alpha = 0.25 * double(pick(1, 64));
  const lora::ResizeOptions options{
      .split = static_cast<lora::SigmaSplit>(pick(0, 2)),
      .alpha = pick(0, 1) == 0 ? lora::AlphaPolicy::KeepScaling : lora::AlphaPolicy::KeepAlpha};
  SCOPED_TRACE(::testing::Message() << "case " << c << " seed " << seed << ": " << out << "x" << in
                                    << " r=" << r << " n=" << n << " alpha=" << alpha);

  auto layer = lora::Layer<S>::fromFactors(gaussian<S>(r, in, seed + 1, 0.5),
                                           gaussian<S>(out, r, seed + 2, 0.5), alpha, mode);
  Mat<S> W = gaussian<S>(out, in, seed + 3);
  const Mat<S> W0 = W;
  const Vec<S> b = gaussian<S>(out, 1, seed + 4);
  const Mat<S> X = gaussian<S>(n, in, seed + 5);
  const bool withBias = pick(0, 1) == 1;
  if (withBias)
    layer.bindBase(W, b);
  else
    layer.bindBase(W);
  const double s = lora::scalingFor(alpha, r, mode);
  EXPECT_DOUBLE_EQ(layer.scaling(), s);

  // forward = X W^T + b + s (X A^T) B^T, in double.
  const Eigen::MatrixXd Ad = layer.A().template cast<double>(),
                        Bd = layer.B().template cast<double>();
  const Eigen::MatrixXd Wd = W.template cast<double>(), Xd = X.template cast<double>();
  const Eigen::MatrixXd delta = s * Bd * Ad;
  Eigen::MatrixXd want = Xd * (Wd + delta).transpose();
  if (withBias) want.rowwise() += b.template cast<double>().transpose();
  const double scale = Xd.norm() * (Wd.norm() + s * Bd.norm() * Ad.norm()) + b.norm() + 1e-30;
  const Mat<S> Y = layer.forward(X);
  EXPECT_LE((Y.template cast<double>() - want).norm(), tol<S>() * scale);

  // merge: W = W0 + s B A, forward unchanged; unmerge: W back.
  layer.merge();
  EXPECT_LE((W.template cast<double>() - (Wd + delta)).norm(),
            tol<S>() * (Wd.norm() + delta.norm()));
  EXPECT_LE((layer.forward(X).template cast<double>() - want).norm(), tol<S>() * scale);
  {  // a resize while merged is refused, nothing changes
    const PropertySnapshot<S> before(layer, W);
    EXPECT_THROW(layer.resize(std::max<Index>(1, r - 1), options), lora::Error);
    EXPECT_TRUE(before.same(layer, W));
  }
  layer.unmerge();
  EXPECT_LE((W - W0).template cast<double>().norm(), tol<S>() * (Wd.norm() + delta.norm()));
  W = W0;  // exact again for what follows

  // spectrum = singular values of s B A (min(r, out, in) of them).
  const Eigen::VectorXd sigma = denseSpectrum(delta);
  const Index p = std::min({r, out, in});
  const Eigen::VectorXd spec = layer.spectrum().template cast<double>();
  ASSERT_EQ(spec.size(), p);
  const double sigmaMax = sigma.size() > 0 ? sigma(0) : 0.0;
  EXPECT_LE((spec - sigma.head(p)).cwiseAbs().maxCoeff(), tol<S>() * (sigmaMax + 1e-30));

  // Bad calls: errors, nothing changed.
  layer.backward(X, gaussian<S>(n, out, seed + 6));
  {
    const PropertySnapshot<S> before(layer, W);
    EXPECT_THROW(layer.resize(0, options), lora::Error);
    EXPECT_THROW(layer.keepDirections({p}, options), lora::Error);
    EXPECT_THROW(layer.keepDirections({}, options), lora::Error);
    EXPECT_THROW((void)layer.forward(Mat<S>(gaussian<S>(n, in + 1, seed + 7))), lora::Error);
    EXPECT_TRUE(before.same(layer, W));
  }

  if (pick(0, 1) == 0) {
    // resize(k): a grow keeps s B A; a shrink gives its best rank-k approximation.
    const Index k = pick(1, r + 2);
    layer.resize(k, options);
    EXPECT_EQ(layer.rank(), k);
    if (k != r) {
      EXPECT_EQ(layer.gradA().norm(), 0);  // new coordinates: gradients reset
    }
    const Eigen::MatrixXd after = layer.deltaWeight().template cast<double>();
    if (k >= r) {
      EXPECT_LE((after - delta).norm(), tol<S>() * (delta.norm() + 1e-30));
    } else {
      const Eigen::VectorXd kept = denseSpectrum(after);
      const Index q = std::min(k, p);
      EXPECT_LE((kept.head(q) - sigma.head(q)).cwiseAbs().maxCoeff(),
                tol<S>() * (sigmaMax + 1e-30));
      if (kept.size() > q) {
        EXPECT_LE(kept.tail(kept.size() - q).maxCoeff(), tol<S>() * (sigmaMax + 1e-30));
      }
      // Eckart–Young: what is left is exactly the dropped energy.
      const double dropped = sigma.size() > q ? sigma.tail(sigma.size() - q).squaredNorm() : 0.0;
      EXPECT_NEAR((delta - after).squaredNorm(), dropped,
                  tol<S>() * (sigmaMax * sigmaMax + 1e-30) * 10);
    }
  } else {
    // keepDirections: s B A becomes the sum of the chosen triplets.
    std::vector<Index> all(static_cast<std::size_t>(p));
    std::iota(all.begin(), all.end(), Index{0});
    std::vector<Index> keep;
    for (Index i : all)
      if (pick(0, 1) == 1) keep.push_back(i);
    if (keep.empty()) keep.push_back(pick(0, p - 1));
    std::reverse(keep.begin(), keep.end());  // any order
    layer.keepDirections(keep, options);
    EXPECT_EQ(layer.rank(), static_cast<Index>(keep.size()));
    const Eigen::VectorXd kept = denseSpectrum(layer.deltaWeight().template cast<double>());
    Eigen::VectorXd want(static_cast<Index>(keep.size()));
    for (std::size_t j = 0; j < keep.size(); ++j) want(static_cast<Index>(j)) = sigma(keep[j]);
    std::sort(want.data(), want.data() + want.size(), std::greater<>());
    const Index q = std::min<Index>(want.size(), kept.size());
    EXPECT_LE((kept.head(q) - want.head(q)).cwiseAbs().maxCoeff(), tol<S>() * (sigmaMax + 1e-30));
  }
  // Whatever happened, the layer still computes X W^T + b + s' (X A'^T) B'^T.
  const Eigen::MatrixXd delta2 = layer.deltaWeight().template cast<double>();
  Eigen::MatrixXd want2 = Xd * (Wd + delta2).transpose();
  if (withBias) want2.rowwise() += b.template cast<double>().transpose();
  EXPECT_LE((layer.forward(X).template cast<double>() - want2).norm(), tol<S>() * scale);
  ++checks;
}

template <typename S>
class LayerProperties : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(LayerProperties, Scalars);

TYPED_TEST(LayerProperties, HoldOnRandomLayersOrThrowWithNothingChanged) {
  const std::uint64_t seed = baseSeed() * 1000003ULL + (sizeof(TypeParam) == 4 ? 0 : 500000);
  int checks = 0;
  for (int c = 0; c < kCasesPerScalar; ++c) {
    runCase<TypeParam>(c, seed + 16ULL * static_cast<std::uint64_t>(c), checks);
    if (::testing::Test::HasFailure()) break;  // the first failing case, with its seed
  }
  EXPECT_EQ(checks, kCasesPerScalar);
}

}  // namespace
