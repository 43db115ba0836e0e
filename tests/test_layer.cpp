// lora::Layer: forward/backward against explicit formulas and finite differences, merge, resize
// against the dense SVD, and every bad input.
#include <functional>
#include <initializer_list>
#include <string>

#include <gtest/gtest.h>

#include "lora/init/init.hpp"
#include "lora/layer.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "support/matrices.hpp"

namespace {

using lora::test::gaussian;
using lora::test::Mat;
using lora::test::tolerance;
using lora::test::Vec;
template <typename S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

using lora::test::relErr;

// A layer with non-zero B so that the delta matters.
template <typename S>
lora::Layer<S> trainedLayer(Eigen::Index out, Eigen::Index in, Eigen::Index r, double alpha,
                            lora::ScalingMode mode, std::uint64_t seed) {
  return lora::Layer<S>::fromFactors(gaussian<S>(r, in, seed, 0.3),
                                     gaussian<S>(out, r, seed + 1, 0.3), alpha, mode);
}

template <typename S>
class LayerTest : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(LayerTest, Scalars);

TYPED_TEST(LayerTest, ForwardIsPeftFormulaInEveryLayout) {
  using S = TypeParam;
  for (auto mode : {lora::ScalingMode::Standard, lora::ScalingMode::RsLora}) {
    auto layer = trainedLayer<S>(20, 12, 4, 8.0, mode, 3);
    Mat<S> W = gaussian<S>(20, 12, 5);
    Vec<S> b = gaussian<S>(20, 1, 6);
    Mat<S> X = gaussian<S>(7, 12, 7);
    const S s = S(lora::scalingFor(8.0, 4, mode));
    EXPECT_EQ(double(s), layer.scaling());
    const Mat<S> want = (X * W.transpose()).rowwise() + b.transpose() +
                        s * (X * layer.A().transpose()) * layer.B().transpose();
    layer.bindBase(W, b);
    EXPECT_LE(relErr<S>(layer.forward(X), want), 10 * tolerance<S>());

    // A row-major weight buffer (PyTorch's layout), row-major input and output buffers.
    RowMat<S> Wr = W;
    RowMat<S> Xr = X;
    RowMat<S> Yr(7, 20);
    Eigen::Map<RowMat<S>> Xmap(Xr.data(), 7, 12);
    layer.bindBase(lora::BaseWeight<S>(Wr.data(), 20, 12, lora::Layout::RowMajor), b);
    layer.forward(Xmap, Yr);
    EXPECT_LE(relErr<S>(Mat<S>(Yr), want), 10 * tolerance<S>());
    // A block of a larger column-major matrix (outer stride), read-only.
    Mat<S> big = Mat<S>::Zero(25, 12);
    big.topRows(20) = W;
    const auto& constBlock = big;
    layer.bindBase(lora::BaseWeight<S>(constBlock.data(), 20, 12, lora::Layout::ColMajor, 25), b);
    EXPECT_LE(relErr<S>(layer.forward(X), want), 10 * tolerance<S>());
    const Mat<S> baseOut = (X * W.transpose()).rowwise() + b.transpose();
    EXPECT_LE(relErr<S>(layer.adapterForward(X), Mat<S>(want - baseOut)), 100 * tolerance<S>());
  }
}

TYPED_TEST(LayerTest, AcceptsExpressionsAsInputs) {
  using S = TypeParam;
  auto layer = trainedLayer<S>(9, 7, 3, 6.0, lora::ScalingMode::Standard, 13);
  Mat<S> W = gaussian<S>(9, 7, 1);
  layer.bindBase(W);
  const Mat<S> X = gaussian<S>(4, 7, 2);
  // Constant, scaled and block expressions give what their evaluated matrices give.
  EXPECT_LE(relErr<S>(layer.forward(Mat<S>::Ones(2, 7)), layer.forward(Mat<S>(Mat<S>::Ones(2, 7)))),
            tolerance<S>());
  EXPECT_LE(relErr<S>(layer.forward(S(2) * X), layer.forward(Mat<S>(S(2) * X))), tolerance<S>());
  EXPECT_LE(
      relErr<S>(layer.adapterForward(X.topRows(2)), layer.adapterForward(Mat<S>(X.topRows(2)))),
      tolerance<S>());
  Mat<S> dXfull = Mat<S>::Zero(6, 7);
  layer.backward(S(1) * X, Mat<S>::Ones(4, 9), dXfull.topRows(4), lora::GradMode::Overwrite);
  const Mat<S> gA = layer.gradA();
  Mat<S> dX;
  layer.backward(X, Mat<S>(Mat<S>::Ones(4, 9)), dX, lora::GradMode::Overwrite);
  EXPECT_LE(relErr<S>(layer.gradA(), gA), tolerance<S>());
  EXPECT_LE(relErr<S>(Mat<S>(dXfull.topRows(4)), dX), tolerance<S>());
  EXPECT_TRUE(dXfull.bottomRows(2).isZero(0));
}

TYPED_TEST(LayerTest, FreshLayersFollowTheirInitializer) {
  using S = TypeParam;
  lora::Layer<S> a(30, 400, {.rank = 8, .alpha = 16, .seed = 9});
  lora::Layer<S> b(30, 400, {.rank = 8, .alpha = 16, .seed = 9});
  lora::Layer<S> c(30, 400, {.rank = 8, .alpha = 16, .seed = 10});
  EXPECT_EQ(a.A(), b.A());
  EXPECT_NE(a.A(), c.A());
  EXPECT_TRUE(a.B().isZero(0));
  const double bound = 1.0 / std::sqrt(400.0);
  EXPECT_LE(double(a.A().cwiseAbs().maxCoeff()), bound);
  EXPECT_GT(double(a.A().cwiseAbs().maxCoeff()), 0.95 * bound);
  // U(-b, b) has variance b²/3.
  EXPECT_NEAR(double(a.A().squaredNorm()) / double(a.A().size()), bound * bound / 3,
              0.1 * bound * bound / 3);

  lora::Layer<S> g(30, 400, {.rank = 8, .alpha = 16, .seed = 9}, lora::init::Gaussian{});
  EXPECT_EQ(g.initializerName(), "gaussian");
  EXPECT_TRUE(g.B().isZero(0));
  EXPECT_NEAR(std::sqrt(double(g.A().squaredNorm()) / double(g.A().size())), 1.0 / 8, 0.01);
  // A fresh layer leaves the base model unchanged.
  Mat<S> W = gaussian<S>(30, 400, 1);
  Mat<S> X = gaussian<S>(3, 400, 2);
  a.bindBase(W);
  EXPECT_EQ(a.forward(X), Mat<S>(X * W.transpose()));
  EXPECT_EQ(a.parameterCount(), 8 * (30 + 400));
}

TEST(LayerGradients, MatchCentralFiniteDifferences) {
  using S = double;
  const std::tuple<int, int, int> shapes[] = {{9, 7, 3}, {5, 11, 1}, {6, 6, 8}, {13, 4, 2}};
  std::uint64_t seed = 100;
  for (auto [out, in, r] : shapes) {
    for (auto mode : {lora::ScalingMode::Standard, lora::ScalingMode::RsLora}) {
      SCOPED_TRACE(testing::Message()
                   << out << "x" << in << " r=" << r << " " << lora::toString(mode));
      auto layer = trainedLayer<S>(out, in, r, 5.0, mode, seed++);
      Mat<S> W = gaussian<S>(out, in, seed++);
      Vec<S> b = gaussian<S>(out, 1, seed++);
      const Mat<S> X = gaussian<S>(4, in, seed++);
      const Mat<S> R = gaussian<S>(4, out, seed++);  // L = sum(Y ⊙ R), so dL/dY = R
      layer.bindBase(W, b);
      Mat<S> dX;
      layer.backward(X, R, dX, lora::GradMode::Overwrite);
      const auto loss = [&](const lora::Layer<S>& l, const Mat<S>& x) {
        return (l.forward(x).array() * R.array()).sum();
      };
      const double h = 1e-6;
      Mat<S> numA(r, in), numB(out, r), numX(4, in);
      for (int i = 0; i < r; ++i)
        for (int j = 0; j < in; ++j) {
          Mat<S> Ap = layer.A(), Am = layer.A();
          Ap(i, j) += h;
          Am(i, j) -= h;
          auto lp = layer, lm = layer;  // copies are unbound: bind them
          lp.bindBase(W, b);
          lm.bindBase(W, b);
          lp.setFactors(Ap, layer.B());
          lm.setFactors(Am, layer.B());
          numA(i, j) = (loss(lp, X) - loss(lm, X)) / (2 * h);
        }
      for (int i = 0; i < out; ++i)
        for (int j = 0; j < r; ++j) {
          Mat<S> Bp = layer.B(), Bm = layer.B();
          Bp(i, j) += h;
          Bm(i, j) -= h;
          auto lp = layer, lm = layer;  // copies are unbound: bind them
          lp.bindBase(W, b);
          lm.bindBase(W, b);
          lp.setFactors(layer.A(), Bp);
          lm.setFactors(layer.A(), Bm);
          numB(i, j) = (loss(lp, X) - loss(lm, X)) / (2 * h);
        }
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < in; ++j) {
          Mat<S> xp = X, xm = X;
          xp(i, j) += h;
          xm(i, j) -= h;
          numX(i, j) = (loss(layer, xp) - loss(layer, xm)) / (2 * h);
        }
      EXPECT_LE(relErr<S>(layer.gradA(), numA), 1e-7);
      EXPECT_LE(relErr<S>(layer.gradB(), numB), 1e-7);
      EXPECT_LE(relErr<S>(dX, numX), 1e-7);
    }
  }
}

TYPED_TEST(LayerTest, BackwardAccumulatesOrOverwrites) {
  using S = TypeParam;
  auto layer = trainedLayer<S>(8, 6, 3, 4.0, lora::ScalingMode::Standard, 7);
  const Mat<S> X = gaussian<S>(5, 6, 1), dY = gaussian<S>(5, 8, 2);
  layer.backward(X, dY);  // no base needed for dA, dB
  const Mat<S> gA = layer.gradA(), gB = layer.gradB();
  layer.backward(X, dY);
  EXPECT_LE(relErr<S>(layer.gradA(), Mat<S>(2 * gA)), tolerance<S>());
  EXPECT_LE(relErr<S>(layer.gradB(), Mat<S>(2 * gB)), tolerance<S>());
  layer.backward(X, dY, lora::GradMode::Overwrite);
  EXPECT_EQ(layer.gradA(), gA);
  EXPECT_EQ(layer.gradB(), gB);
  layer.zeroGrad();
  EXPECT_TRUE(layer.gradA().isZero(0));
  EXPECT_TRUE(layer.gradB().isZero(0));
}

TYPED_TEST(LayerTest, MergeUnmergeAndMergedForward) {
  using S = TypeParam;
  auto layer = trainedLayer<S>(16, 10, 4, 6.0, lora::ScalingMode::RsLora, 17);
  Mat<S> W = gaussian<S>(16, 10, 1);
  const Mat<S> W0 = W;
  Vec<S> b = gaussian<S>(16, 1, 2);
  const Mat<S> X = gaussian<S>(3, 10, 3);
  layer.bindBase(W, b);
  const Mat<S> before = layer.forward(X);
  layer.merge();
  EXPECT_TRUE(layer.isMerged());
  EXPECT_LE(relErr<S>(W, Mat<S>(W0 + layer.deltaWeight())), tolerance<S>());
  EXPECT_LE(relErr<S>(layer.forward(X), before), 10 * tolerance<S>());
  // Gradients of A and B do not depend on the merge; dX uses the merged W.
  Mat<S> dX;
  const Mat<S> dY = gaussian<S>(3, 16, 4);
  layer.backward(X, dY, dX, lora::GradMode::Overwrite);
  const Mat<S> mergedGA = layer.gradA();
  layer.unmerge();
  EXPECT_FALSE(layer.isMerged());
  EXPECT_LE(relErr<S>(W, W0), 10 * tolerance<S>());
  Mat<S> dX2;
  layer.backward(X, dY, dX2, lora::GradMode::Overwrite);
  EXPECT_EQ(layer.gradA(), mergedGA);
  EXPECT_LE(relErr<S>(dX, dX2), 10 * tolerance<S>());
}

TYPED_TEST(LayerTest, DoraForwardAndMerge) {
  using S = TypeParam;
  auto layer = trainedLayer<S>(12, 9, 3, 6.0, lora::ScalingMode::Standard, 27);
  Mat<S> W = gaussian<S>(12, 9, 1);
  const Mat<S> W0 = W;
  Vec<S> b = gaussian<S>(12, 1, 2);
  const Mat<S> X = gaussian<S>(4, 9, 3);
  layer.bindBase(W, b);
  layer.initDoraMagnitude();
  const Mat<S> V = W + layer.deltaWeight();
  EXPECT_LE(relErr<S>(Mat<S>(layer.magnitude()), Mat<S>(V.rowwise().norm())), 10 * tolerance<S>());
  Vec<S> m = layer.magnitude();
  m.array() *= (Vec<S>::LinSpaced(12, 0.5, 1.5)).array();  // as if trained
  layer.setMagnitude(m);
  const Vec<S> c = m.cwiseQuotient(V.rowwise().norm());
  const Mat<S> want =
      ((X * V.transpose()).array().rowwise() * c.transpose().array()).matrix().rowwise() +
      b.transpose();
  EXPECT_LE(relErr<S>(layer.forward(X), want), 20 * tolerance<S>());
  EXPECT_EQ(layer.parameterCount(), 3 * (12 + 9) + 12);
  layer.merge();
  EXPECT_LE(relErr<S>(W, Mat<S>(c.asDiagonal() * V)), 10 * tolerance<S>());
  EXPECT_LE(relErr<S>(layer.forward(X), want), 20 * tolerance<S>());
  layer.unmerge();
  EXPECT_LE(relErr<S>(W, W0), 20 * tolerance<S>());
  // DoRA backward (checked in test_dora.cpp) needs the base; unbound, it is refused.
  layer.unbindBase();
  EXPECT_THROW(layer.backward(X, want), lora::Error);
}

TYPED_TEST(LayerTest, ShrinkIsTheTruncatedSvdOfTheDelta) {
  using S = TypeParam;
  for (auto split :
       {lora::SigmaSplit::Balanced, lora::SigmaSplit::IntoA, lora::SigmaSplit::IntoB}) {
    for (auto policy : {lora::AlphaPolicy::KeepScaling, lora::AlphaPolicy::KeepAlpha}) {
      auto layer = trainedLayer<S>(30, 24, 8, 16.0, lora::ScalingMode::Standard, 37);
      const Mat<S> delta = layer.deltaWeight();
      const auto ref = lora::linalg::denseSVD(delta, Eigen::ComputeThinU | Eigen::ComputeThinV);
      const int k = 3;
      const Mat<S> best =
          ref.U.leftCols(k) * ref.S.head(k).asDiagonal() * ref.V.leftCols(k).transpose();
      const Mat<S> oldA = layer.A(), oldB = layer.B();
      auto report = layer.resize(k, {.split = split, .alpha = policy});
      EXPECT_TRUE(report.shrank());
      EXPECT_EQ(layer.rank(), k);
      EXPECT_LE(relErr<S>(layer.deltaWeight(), best), 10 * tolerance<S>());
      const auto sv = ref.S;
      ASSERT_EQ(report.singularValues.size(), 8);
      EXPECT_LE(double((report.singularValues - sv.head(8)).norm()),
                10 * tolerance<S>() * double(sv(0)));
      EXPECT_EQ(report.discarded.size(), 5);
      const double energy = double(sv.head(k).squaredNorm()) / double(sv.squaredNorm());
      EXPECT_NEAR(report.retainedEnergy, energy, 10 * tolerance<S>());
      if (policy == lora::AlphaPolicy::KeepAlpha) {
        EXPECT_EQ(layer.alpha(), 16.0);
        EXPECT_DOUBLE_EQ(layer.scaling(), 16.0 / k);
      } else {
        EXPECT_DOUBLE_EQ(layer.scaling(), 2.0);
        EXPECT_DOUBLE_EQ(layer.alpha(), 2.0 * k);
      }
      // The change of basis maps the old factors onto the new ones.
      EXPECT_LE(relErr<S>(Mat<S>(report.transformA * oldA), layer.A()), 100 * tolerance<S>());
      EXPECT_LE(relErr<S>(Mat<S>(oldB * report.transformB), layer.B()), 100 * tolerance<S>());
      if (split == lora::SigmaSplit::IntoB) {
        EXPECT_LE(double((layer.A() * layer.A().transpose() - Mat<S>::Identity(k, k)).norm()),
                  100 * tolerance<S>());
      }
      EXPECT_TRUE(layer.gradA().isZero(0));
      EXPECT_EQ(layer.gradA().rows(), k);
    }
  }
}

TYPED_TEST(LayerTest, GrowKeepsTheDeltaAndTheOutput) {
  using S = TypeParam;
  auto layer = trainedLayer<S>(20, 14, 4, 8.0, lora::ScalingMode::RsLora, 47);
  Mat<S> W = gaussian<S>(20, 14, 1);
  const Mat<S> X = gaussian<S>(6, 14, 2);
  layer.bindBase(W);
  const Mat<S> y0 = layer.forward(X);
  const Mat<S> A0 = layer.A(), B0 = layer.B();
  const Mat<S> delta0 = layer.deltaWeight();
  auto report = layer.resize(9);
  EXPECT_TRUE(report.grew());
  EXPECT_EQ(layer.rank(), 9);
  // KeepScaling (default): the old factors are kept bit for bit, the new B columns are zero.
  EXPECT_EQ(Mat<S>(layer.A().topRows(4)), A0);
  EXPECT_EQ(Mat<S>(layer.B().leftCols(4)), B0);
  EXPECT_TRUE(layer.B().rightCols(5).isZero(0));
  EXPECT_FALSE(layer.A().bottomRows(5).isZero(0));
  EXPECT_EQ(layer.scaling(), report.oldScaling);
  EXPECT_DOUBLE_EQ(layer.alpha(), report.oldScaling * 3.0);  // s·sqrt(9)
  EXPECT_LE(relErr<S>(layer.deltaWeight(), delta0), tolerance<S>());
  EXPECT_LE(relErr<S>(layer.forward(X), y0), tolerance<S>());
  // The change of basis keeps the old rows; fresh rows have zero rows in transformA.
  const Mat<S> mapped = report.transformA * A0;
  EXPECT_EQ(Mat<S>(mapped.topRows(4)), Mat<S>(layer.A().topRows(4)));
  EXPECT_TRUE(mapped.bottomRows(5).isZero(0));
  // New rows of A follow the initializer (PEFT default: |a| <= 1/sqrt(in)).
  EXPECT_LE(double(layer.A().bottomRows(5).cwiseAbs().maxCoeff()), 1.0 / std::sqrt(14.0));

  // Grow then shrink back returns the original delta.
  layer.resize(4);
  EXPECT_LE(relErr<S>(layer.deltaWeight(), delta0), 10 * tolerance<S>());
  EXPECT_LE(relErr<S>(layer.forward(X), y0), 10 * tolerance<S>());

  // KeepAlpha: the factors absorb the change of s, the delta is kept to rounding.
  auto keep = trainedLayer<S>(20, 14, 4, 8.0, lora::ScalingMode::Standard, 48);
  const Mat<S> d1 = keep.deltaWeight();
  keep.resize(7, {.alpha = lora::AlphaPolicy::KeepAlpha});
  EXPECT_EQ(keep.alpha(), 8.0);
  EXPECT_DOUBLE_EQ(keep.scaling(), 8.0 / 7);
  EXPECT_LE(relErr<S>(keep.deltaWeight(), d1), 10 * tolerance<S>());
}

TYPED_TEST(LayerTest, KeepDirectionsKeepsTheChosenTriplets) {
  using S = TypeParam;
  auto layer = trainedLayer<S>(26, 18, 6, 12.0, lora::ScalingMode::Standard, 77);
  const Mat<S> oldA = layer.A(), oldB = layer.B();
  const auto ref =
      lora::linalg::denseSVD(layer.deltaWeight(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  const auto& sv = ref.S;
  // Keep the 1st and 4th largest (not a prefix): Σ over {0, 3} of σ_i u_i v_i^T.
  const Mat<S> want = sv(0) * ref.U.col(0) * ref.V.col(0).transpose() +
                      sv(3) * ref.U.col(3) * ref.V.col(3).transpose();
  auto report = layer.keepDirections({3, 0});
  EXPECT_EQ(layer.rank(), 2);
  EXPECT_LE(relErr<S>(layer.deltaWeight(), want), 10 * tolerance<S>());
  ASSERT_EQ(report.discarded.size(), 4);
  EXPECT_NEAR(double(report.discarded(0)), double(sv(1)), 10 * tolerance<S>() * double(sv(0)));
  const double energy = double(sv(0) * sv(0) + sv(3) * sv(3)) / double(sv.squaredNorm());
  EXPECT_NEAR(report.retainedEnergy, energy, 10 * tolerance<S>());
  EXPECT_LE(relErr<S>(Mat<S>(report.transformA * oldA), layer.A()), 100 * tolerance<S>());
  EXPECT_LE(relErr<S>(Mat<S>(oldB * report.transformB), layer.B()), 100 * tolerance<S>());
  // Keeping the top k is exactly resize(k).
  auto a = trainedLayer<S>(26, 18, 6, 12.0, lora::ScalingMode::Standard, 78);
  auto b = a;
  a.keepDirections({0, 1, 2});
  b.resize(3);
  EXPECT_EQ(a.A(), b.A());
  EXPECT_EQ(a.B(), b.B());
  // Bad selections change nothing.
  const Mat<S> A0 = a.A();
  EXPECT_THROW(a.keepDirections({}), lora::Error);
  EXPECT_THROW(a.keepDirections({0, 0}), lora::Error);
  try {
    a.keepDirections({1, 3});
    ADD_FAILURE() << "index out of range accepted";
  } catch (const lora::Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("Layer::keepDirections(): expected indices in [0, 3), got 3"),
        std::string::npos)
        << e.what();
  }
  EXPECT_EQ(a.A(), A0);
}

TYPED_TEST(LayerTest, ShrinkingAFreshAdapterKeepsItTrainable) {
  using S = TypeParam;
  lora::Layer<S> layer(16, 12, {.rank = 6, .alpha = 12, .seed = 3});
  auto report = layer.resize(2);
  EXPECT_EQ(report.retainedEnergy, 1.0);
  EXPECT_TRUE(layer.B().isZero(0));
  EXPECT_LE(double((layer.A().rowwise().norm().array() - S(1)).abs().maxCoeff()),
            10 * tolerance<S>());
}

TYPED_TEST(LayerTest, RankAboveMinDimension) {
  using S = TypeParam;
  auto layer = trainedLayer<S>(5, 7, 9, 9.0, lora::ScalingMode::Standard, 57);  // r > min(out, in)
  EXPECT_EQ(layer.spectrum().size(), 5);
  const Mat<S> delta = layer.deltaWeight();
  auto report = layer.resize(6);  // still above min(out, in): nothing is lost
  EXPECT_EQ(report.singularValues.size(), 5);
  EXPECT_EQ(report.discarded.size(), 0);
  EXPECT_EQ(layer.rank(), 6);
  EXPECT_LE(relErr<S>(layer.deltaWeight(), delta), 10 * tolerance<S>());
  layer.resize(2);
  EXPECT_EQ(layer.rank(), 2);
}

// ---- bad input ------------------------------------------------------------------------------

template <typename S>
struct Snapshot {
  Mat<S> A, B, gA, gB;
  double alpha;
  bool merged;
  explicit Snapshot(const lora::Layer<S>& l)
      : A(l.A()), B(l.B()), gA(l.gradA()), gB(l.gradB()), alpha(l.alpha()), merged(l.isMerged()) {}
  bool operator==(const Snapshot& o) const {
    const auto same = [](const Mat<S>& a, const Mat<S>& b) {
      return a.rows() == b.rows() && a.cols() == b.cols() &&
             a == b;  // Eigen's == needs equal sizes
    };
    return same(A, o.A) && same(B, o.B) && same(gA, o.gA) && same(gB, o.gB) && alpha == o.alpha &&
           merged == o.merged;
  }
};

// Runs f, expects lora::Error whose message contains every fragment, and the layer unchanged.
template <typename S>
void expectRejected(lora::Layer<S>& layer, const std::function<void()>& f,
                    std::initializer_list<std::string> fragments) {
  const Snapshot<S> before(layer);
  try {
    f();
    ADD_FAILURE() << "no exception";
  } catch (const lora::Error& e) {
    const std::string what = e.what();
    for (const auto& frag : fragments) EXPECT_NE(what.find(frag), std::string::npos) << what;
  }
  EXPECT_TRUE(Snapshot<S>(layer) == before) << "the layer changed";
}

TYPED_TEST(LayerTest, BadInputIsAnErrorAndChangesNothing) {
  using S = TypeParam;
  const S nan = std::numeric_limits<S>::quiet_NaN();
  const S inf = std::numeric_limits<S>::infinity();
  auto layer = trainedLayer<S>(6, 5, 2, 4.0, lora::ScalingMode::Standard, 67);
  Mat<S> W = gaussian<S>(6, 5, 1);
  Vec<S> b = gaussian<S>(6, 1, 2);
  const Mat<S> X = gaussian<S>(3, 5, 3), dY = gaussian<S>(3, 6, 4);
  layer.backward(X, dY);  // non-zero gradients, to see that they survive

  EXPECT_THROW((lora::Layer<S>(6, 5, {.rank = 0, .alpha = 1})), lora::Error);
  EXPECT_THROW((lora::Layer<S>(0, 5, {.rank = 1, .alpha = 1})), lora::Error);
  for (double a : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                   std::numeric_limits<double>::infinity()}) {
    EXPECT_THROW((lora::Layer<S>(6, 5, {.rank = 2, .alpha = a})), lora::Error) << a;
  }
  try {
    lora::Layer<S>(6, 5, {.rank = 2, .alpha = -3});
    ADD_FAILURE() << "expected lora::Error for alpha = -3";
  } catch (const lora::Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "Layer::Layer(): expected alpha to be a positive finite number, got -3"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(
      lora::Layer<S>::fromFactors(Mat<S>(gaussian<S>(2, 5, 1)), Mat<S>(gaussian<S>(6, 3, 1)), 1.0),
      lora::Error);

  expectRejected(layer, [&] { (void)layer.forward(X); }, {"Layer::forward()", "bindBase"});
  Mat<S> narrowW = W.leftCols(4);
  expectRejected(layer, [&] { layer.bindBase(narrowW); }, {"Layer::bindBase()", "6x5", "6x4"});
  Vec<S> shortBias = b.head(5);
  expectRejected(layer, [&] { layer.bindBase(W, shortBias); },
                 {"Layer::bindBase()", "6 entries", "got 5"});
  expectRejected(layer, [&] { layer.merge(); }, {"Layer::merge()", "bindBase"});
  layer.bindBase(W, b);
  expectRejected(layer, [&] { (void)layer.forward(Mat<S>(gaussian<S>(3, 4, 1))); },
                 {"Layer::forward()", "5 columns", "3x4"});
  Mat<S> fixedOut(2, 6);
  expectRejected(layer, [&] { layer.forward(X, Eigen::Map<Mat<S>>(fixedOut.data(), 2, 6)); },
                 {"Layer::forward()", "3x6", "2x6"});
  expectRejected(layer, [&] { layer.backward(X, Mat<S>(gaussian<S>(3, 5, 1))); },
                 {"Layer::backward()", "dY of 3x6", "3x5"});
  Mat<S> nanDY = dY;
  nanDY(1, 1) = nan;
  expectRejected(layer, [&] { layer.backward(X, nanDY); },
                 {"Layer::backward()", "finite gradients"});
  expectRejected(layer, [&] { layer.resize(0); }, {"Layer::resize()", "rank >= 1, got 0"});
  expectRejected(layer, [&] { layer.setAlpha(0.0); }, {"Layer::setAlpha()", "got 0"});
  Mat<S> nanA = layer.A();
  nanA(0, 0) = nan;
  expectRejected(layer, [&] { layer.setFactors(nanA, layer.B()); },
                 {"Layer::setFactors()", "finite entries in A"});
  expectRejected(layer, [&] { layer.setFactors(layer.A(), Mat<S>(gaussian<S>(7, 2, 1))); },
                 {"Layer::setFactors()", "7x2"});
  Mat<S> infB = Mat<S>::Zero(6, 2);
  infB(0, 0) = inf;
  expectRejected(layer, [&] { layer.updateFactors(Mat<S>::Zero(2, 5), infB); },
                 {"Layer::updateFactors()", "finite entries in B"});
  expectRejected(layer, [&] { layer.updateFactors(Mat<S>::Zero(2, 4), infB); },
                 {"Layer::updateFactors()", "dA 2x5"});
  expectRejected(layer, [&] { layer.setMagnitude(Vec<S>::Ones(5)); },
                 {"Layer::setMagnitude()", "6 entries"});
  expectRejected(layer, [&] { layer.unmerge(); }, {"Layer::unmerge()", "not merged"});

  // Merged: a second merge, parameter changes and rebinding are errors.
  layer.merge();
  expectRejected(layer, [&] { layer.merge(); }, {"Layer::merge()", "already merged"});
  expectRejected(layer, [&] { layer.resize(1); }, {"Layer::resize()", "unmerge first"});
  expectRejected(layer, [&] { layer.setFactors(layer.A(), layer.B()); },
                 {"Layer::setFactors()", "merged"});
  expectRejected(layer, [&] { layer.setAlpha(2.0); }, {"Layer::setAlpha()", "merged"});
  expectRejected(layer, [&] { layer.bindBase(W, b); }, {"Layer::bindBase()", "merged"});
  layer.unmerge();

  // A read-only base can run forward but not merge.
  const Mat<S> constW = W;
  layer.bindBase(constW);
  (void)layer.forward(X);
  expectRejected(layer, [&] { layer.merge(); }, {"Layer::merge()", "read-only"});

  // A merge that would overflow to Inf is refused and W is left as it was.
  if constexpr (std::is_same_v<S, float>) {
    auto huge = lora::Layer<S>::fromFactors(Mat<S>::Constant(2, 5, S(1e20)),
                                            Mat<S>::Constant(6, 2, S(1e20)), 2.0);
    Mat<S> W2 = W;
    huge.bindBase(W2);
    expectRejected(huge, [&] { huge.merge(); }, {"Layer::merge()", "overflow"});
    EXPECT_EQ(W2, W);
  }
}

}  // namespace
