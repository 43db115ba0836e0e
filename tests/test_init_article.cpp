// The article's initializers, each against its formula: the distribution of the draws (with
// tolerances a wrong std, mean or law cannot meet), orthogonality, the SVD-based target, the
// statistics-adaptive branches, and weightStatistics against a dense SVD.

#include <cmath>
#include <memory>

#include <gtest/gtest.h>

#include "lora/init/init.hpp"
#include "lora/layer.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/weight_statistics.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

using lora::init::Factors;
using lora::init::Request;
using lora::test::errorOf;

Request<double> request(Eigen::Index out, Eigen::Index in, Eigen::Index rank) {
  Request<double> r;
  r.outFeatures = out;
  r.inFeatures = in;
  r.rank = rank;
  r.alpha = 16;
  return r;
}

// Sample moments of all entries of M.
struct Moments {
  double mean, std, excessKurtosis;
  Eigen::Index n;
};
Moments moments(const Eigen::MatrixXd& M) {
  const double n = static_cast<double>(M.size());
  const double mean = M.mean();
  const Eigen::ArrayXXd c = M.array() - mean;
  const double var = c.square().sum() / n;
  const double m4 = c.square().square().sum() / n;
  return {mean, std::sqrt(var), m4 / (var * var) - 3.0, M.size()};
}

// N(0, σ²) with n draws: the sample mean is within 6 standard errors (σ/√n), the sample std
// within 6 of its standard errors (σ/√(2n)), the excess kurtosis within 6·√(24/n) of 0. With
// n >= 20000 that is ±4.3% on σ and ±0.21 on the kurtosis: a std off by 10% or a uniform law
// (excess kurtosis −1.2) cannot pass.
void expectNormal(const Eigen::MatrixXd& M, double sigma, const char* what) {
  SCOPED_TRACE(what);
  ASSERT_GE(M.size(), 20000);
  const Moments m = moments(M);
  const double n = static_cast<double>(m.n);
  EXPECT_NEAR(m.mean, 0.0, 6 * sigma / std::sqrt(n));
  EXPECT_NEAR(m.std, sigma, 6 * sigma / std::sqrt(2 * n));
  EXPECT_NEAR(m.excessKurtosis, 0.0, 6 * std::sqrt(24 / n));
}

TEST(XavierLora, DrawsTheArticlesStd) {
  const auto req = request(300, 200, 100);
  lora::Rng rng(1);
  const lora::init::XavierLora policy{.gain = 2.0};
  const Factors<double> f = policy.initialize(req, rng);
  const double std = std::sqrt(2.0 / (200 + 300)) * 2.0;
  EXPECT_DOUBLE_EQ(policy.stdA(300, 200), std);
  expectNormal(f.A, std, "A");
  expectNormal(f.B, 0.1 * std, "B");
  EXPECT_EQ(f.baseUpdate, lora::init::BaseUpdate::Keep);
}

TEST(KaimingLora, FanInAndFanOut) {
  const auto req = request(400, 300, 80);
  {
    lora::Rng rng(2);
    const Factors<double> f = lora::init::KaimingLora{}.initialize(req, rng);
    expectNormal(f.A, std::sqrt(2.0 / 300), "A fan_in");
    expectNormal(f.B, 0.1 * std::sqrt(2.0 / 80), "B fan_in");
  }
  {
    lora::Rng rng(3);
    const Factors<double> f =
        lora::init::KaimingLora{.mode = lora::init::FanMode::FanOut}.initialize(req, rng);
    expectNormal(f.A, std::sqrt(2.0 / 80), "A fan_out");
    expectNormal(f.B, 0.1 * std::sqrt(2.0 / 400), "B fan_out");
  }
}

TEST(LayerAdaptive, DeeperLayersStartSmaller) {
  const auto req = request(300, 250, 90);
  const lora::init::LayerAdaptive policy{.depth = 6, .totalLayers = 12, .baseStd = 0.02};
  EXPECT_DOUBLE_EQ(policy.stdA(), 0.02 * 0.75);
  EXPECT_DOUBLE_EQ(policy.stdB(), 0.02 * 0.75 * 0.125);
  lora::Rng rng(4);
  const Factors<double> f = policy.initialize(req, rng);
  expectNormal(f.A, 0.015, "A");
  expectNormal(f.B, 0.001875, "B");
  const lora::init::LayerAdaptive last{.depth = 12, .totalLayers = 12};
  EXPECT_DOUBLE_EQ(last.stdA(), 0.01);
  EXPECT_DOUBLE_EQ(last.stdB(), 0.01 * 0.15);
  lora::Rng r2(1);
  EXPECT_CONTAINS(errorOf([&] {
                    lora::init::LayerAdaptive{.depth = 13, .totalLayers = 12}.initialize(req, r2);
                  }),
                  "LayerAdaptive::initialize(): expected 0 <= depth <= totalLayers = 12, got 13");
  EXPECT_CONTAINS(errorOf([&] { lora::init::LayerAdaptive{.totalLayers = 0}.initialize(req, r2); }),
                  "expected totalLayers >= 1, got 0");
}

TEST(PeftInits, DistributionsStillHold) {
  const auto req = request(64, 400, 64);
  lora::Rng rng(5);
  const Factors<double> g = lora::init::Gaussian{}.initialize(req, rng);
  expectNormal(g.A, 1.0 / 64, "gaussian A");
  EXPECT_EQ(g.B.norm(), 0.0);
  const Factors<double> d = lora::init::PeftDefault{}.initialize(req, rng);
  const Moments m = moments(d.A);  // U(-1/√in, 1/√in): std bound/√3, excess kurtosis −1.2
  EXPECT_NEAR(m.std, 1.0 / std::sqrt(400.0) / std::sqrt(3.0), 0.03 / std::sqrt(3 * 400.0));
  EXPECT_NEAR(m.excessKurtosis, -1.2, 0.1);
  EXPECT_LE(d.A.cwiseAbs().maxCoeff(), 1.0 / 20.0);
}

TEST(Orthogonal, OrthonormalFactorsWithTheirGains) {
  for (const auto& [out, in, r] :
       {std::tuple{40, 30, 8}, std::tuple{30, 40, 30}, std::tuple{12, 6, 9}}) {
    SCOPED_TRACE(testing::Message() << out << "x" << in << " r=" << r);
    lora::Rng rng(6);
    const Factors<double> f =
        lora::init::Orthogonal{.gain = 2.0}.initialize(request(out, in, r), rng);
    if (r <= in)
      EXPECT_TRUE((f.A * f.A.transpose()).isApprox(4.0 * Eigen::MatrixXd::Identity(r, r), 1e-12));
    else  // more rows than columns: orthonormal columns, as torch
      EXPECT_TRUE((f.A.transpose() * f.A).isApprox(4.0 * Eigen::MatrixXd::Identity(in, in), 1e-12));
    if (r <= out)
      EXPECT_TRUE((f.B.transpose() * f.B).isApprox(0.04 * Eigen::MatrixXd::Identity(r, r), 1e-12));
    else
      EXPECT_TRUE(
          (f.B * f.B.transpose()).isApprox(0.04 * Eigen::MatrixXd::Identity(out, out), 1e-12));
  }
  // Haar: over many draws the entries of a 1 x n orthogonal row are ±1/√n on average in square
  // and have no preferred sign (the sign fix of torch, d = sign(diag R), removes the QR bias).
  double first = 0;
  for (std::uint64_t seed = 0; seed < 400; ++seed) {
    lora::Rng rng(seed);
    first += lora::detail::orthogonalMatrix<double>(3, 3, 1.0, rng)(0, 0);
  }
  EXPECT_NEAR(first / 400, 0.0, 6 * std::sqrt(1.0 / 3 / 400));
}

TEST(SvdBased, NoiselessFactorsAreTheTruncatedSvd) {
  Eigen::MatrixXd T = lora::test::gaussian<double>(20, 14, 8);
  const auto target = std::make_shared<const Eigen::MatrixXd>(T);
  lora::Rng rng(7);
  const Factors<double> f =
      lora::init::SvdBased{.target = target, .noiseScale = 0.0}.initialize(request(20, 14, 5), rng);
  const auto svd = lora::linalg::denseSVD(T, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::MatrixXd best =
      svd.U.leftCols(5) * svd.S.head(5).asDiagonal() * svd.V.leftCols(5).transpose();
  EXPECT_LE((f.B * f.A - best).norm(), 1e-12 * best.norm());
  // balanced: ‖A‖_F = ‖B‖_F = sqrt(Σσ)
  EXPECT_NEAR(f.A.norm(), f.B.norm(), 1e-12);
}

TEST(SvdBased, NoiseHasItsScaleAndFallbackIsXavier) {
  const Eigen::MatrixXd T = lora::test::gaussian<double>(300, 200, 9);
  const auto target = std::make_shared<const Eigen::MatrixXd>(T);
  lora::Rng a(10), b(10);
  const auto noisy = lora::init::SvdBased{.target = target, .noiseScale = 0.05}.initialize(
      request(300, 200, 100), a);
  const auto clean = lora::init::SvdBased{.target = target, .noiseScale = 0.0}.initialize(
      request(300, 200, 100), b);
  expectNormal(noisy.A - clean.A, 0.05, "noise on A");
  lora::Rng c(11), d(11);
  const auto fallback = lora::init::SvdBased{}.initialize(request(30, 20, 4), c);
  const auto xavier = lora::init::XavierLora{}.initialize(request(30, 20, 4), d);
  EXPECT_TRUE(fallback.A == xavier.A && fallback.B == xavier.B);
  lora::Rng e(1);
  EXPECT_CONTAINS(
      errorOf([&] { lora::init::SvdBased{.target = target}.initialize(request(30, 20, 4), e); }),
      "SvdBased::initialize(): expected a target of 30x20 (out x in), got 300x200");
}

// W = U diag(σ) V^T with a planted spectrum, so every statistic is known.
Eigen::MatrixXd planted(Eigen::Index out, Eigen::Index in, const Eigen::VectorXd& sigma,
                        std::uint64_t seed) {
  const Eigen::Index k = sigma.size();
  const Eigen::MatrixXd U = lora::test::orthonormal(out, k, seed);
  const Eigen::MatrixXd V = lora::test::orthonormal(in, k, seed + 1);
  return U * sigma.asDiagonal() * V.transpose();
}

TEST(WeightStatistics, MatchesTheDefinitionsOnBothPaths) {
  Eigen::VectorXd sigma(12);
  sigma << 10, 8, 5, 3, 1, 0.5, 0.2, 0.15, 0.11, 0.09, 0.05, 0.001;  // 1% of σ1 = 0.1
  const Eigen::MatrixXd W = planted(40, 30, sigma, 12);
  for (Eigen::Index limit : {Eigen::Index{512}, Eigen::Index{0}}) {  // dense SVD, then Gram path
    SCOPED_TRACE(limit);
    const auto s = lora::linalg::weightStatistics(W, {.denseSvdLimit = limit});
    EXPECT_NEAR(s.mean, W.mean(), 1e-15);
    EXPECT_NEAR(s.std, std::sqrt((W.array() - W.mean()).square().sum() / (W.size() - 1)), 1e-15);
    EXPECT_NEAR(s.frobeniusNorm, sigma.norm(), 1e-12);
    EXPECT_NEAR(s.spectralNorm, 10.0, 1e-12);
    EXPECT_EQ(s.effectiveRank, 9);  // 10..0.11 are above 0.1
    ASSERT_EQ(s.singularValues.size(), 30);
    EXPECT_LE((s.singularValues.head(12) - sigma).cwiseAbs().maxCoeff(), 1e-9);
    EXPECT_LE(s.singularValues.tail(18).maxCoeff(), 1e-6);
  }
  EXPECT_CONTAINS(errorOf([&] { lora::linalg::weightStatistics(Eigen::MatrixXd(0, 3)); }),
                  "weightStatistics(): expected a non-empty weight, got 0x3");
  Eigen::MatrixXd bad = W;
  bad(1, 1) = NAN;
  EXPECT_CONTAINS(errorOf([&] { lora::linalg::weightStatistics(bad); }), "finite");
}

TEST(StatisticsAdaptive, TakesTheArticlesBranches) {
  // effective rank 9: r <= 4 is "low rank" (0.5, 0.1), r = 5 is not (0.2, 0.05)
  Eigen::VectorXd sigma = Eigen::VectorXd::LinSpaced(9, 9.0, 1.0);
  const Eigen::MatrixXd W = planted(400, 300, sigma, 13);
  const auto stats =
      std::make_shared<const lora::linalg::WeightStatistics>(lora::linalg::weightStatistics(W));
  ASSERT_EQ(stats->effectiveRank, 9);
  const lora::init::StatisticsAdaptive policy{.strength = 0.5, .statistics = stats};
  const double base = stats->std * stats->spectralNorm * 0.5;
  EXPECT_DOUBLE_EQ(policy.stds(*stats, 4).first, base * 0.5);
  EXPECT_DOUBLE_EQ(policy.stds(*stats, 4).second, base * 0.1);
  EXPECT_DOUBLE_EQ(policy.stds(*stats, 5).first, base * 0.2);
  EXPECT_DOUBLE_EQ(policy.stds(*stats, 5).second, base * 0.05);
  // the draws follow them (A: 4 x 300 = 1200 draws is too few for expectNormal; use r = 70, high)
  lora::Rng rng(14);
  const auto f = policy.initialize(request(400, 300, 70), rng);
  expectNormal(f.A, base * 0.2, "A high rank");
  expectNormal(f.B, base * 0.05, "B high rank");
  // from the request's weight: the same numbers as from precomputed statistics
  Request<double> req = request(400, 300, 4);
  req.weight = lora::BaseWeight<double>(W);
  lora::Rng r1(15), r2(15);
  const auto fromWeight = lora::init::StatisticsAdaptive{.strength = 0.5}.initialize(req, r1);
  const auto fromStats = policy.initialize(request(400, 300, 4), r2);
  EXPECT_TRUE(fromWeight.A.isApprox(fromStats.A, 1e-12));
  lora::Rng r3(1);
  EXPECT_CONTAINS(
      errorOf([&] { lora::init::StatisticsAdaptive{}.initialize(request(400, 300, 4), r3); }),
      "StatisticsAdaptive::initialize(): expected the layer's base weight");
  EXPECT_CONTAINS(errorOf([&] { policy.initialize(request(40, 30, 4), r3); }),
                  "expected statistics of a 40x30 weight, got 400x300");
}

TEST(SubtractDelta, KeepsTheOutputAndNamesItself) {
  EXPECT_EQ(lora::init::SubtractDelta<lora::init::XavierLora>::name(),
            "xavier_lora+subtract_delta");
  static_assert(lora::init::DataDependent<lora::init::SubtractDelta<lora::init::SvdBased>>);
  static_assert(!lora::init::DataDependent<lora::init::SubtractDelta<lora::init::XavierLora>>);
  Eigen::MatrixXf W = lora::test::gaussian<float>(30, 20, 16);
  const Eigen::MatrixXf W0 = W;
  const Eigen::MatrixXf X = lora::test::gaussian<float>(6, 20, 17);
  const lora::Layer<float> layer(W, {.rank = 4, .alpha = 8, .seed = 2},
                                 lora::init::SubtractDelta{lora::init::KaimingLora{}});
  EXPECT_GT((W - W0).norm(), 0.0f);
  const Eigen::MatrixXf y0 = X * W0.transpose();
  EXPECT_LE((layer.forward(X) - y0).norm(), 1e-5f * y0.norm());
}

TEST(Layer, GrowthOfADataDependentInitUsesPeftDefaultRows) {
  Eigen::MatrixXd W = lora::test::gaussian<double>(30, 25, 18);
  lora::Layer<double> layer(W, {.rank = 2, .alpha = 2, .seed = 3},
                            lora::init::StatisticsAdaptive{});
  layer.resize(6);
  // PeftDefault's rows: U(-1/√in, 1/√in); B's new columns zero
  EXPECT_LE(layer.A().bottomRows(4).cwiseAbs().maxCoeff(), 1.0 / std::sqrt(25.0));
  EXPECT_EQ(layer.B().rightCols(4).norm(), 0.0);
}

}  // namespace
