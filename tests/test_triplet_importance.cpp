// AdaLoRA-style triplet importance on plain LoRA layers: the sensitivity against the dense
// gradient, the moving averages by hand, the global budget, and pruning a layer with it.

#include <cmath>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>


#include "lora/linalg/dense_svd.hpp"
#include "lora/rank/adalora_schedule.hpp"
#include "lora/rank/triplet_importance.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

using lora::test::errorOf;

lora::Layer<double> randomLayer(Eigen::Index out, Eigen::Index in, Eigen::Index r, std::uint64_t seed) {
  return lora::Layer<double>::fromFactors(lora::test::gaussian<double>(r, in, seed),
                                          lora::test::gaussian<double>(out, r, seed + 1), 2.0 * r);
}

TEST(TripletImportance, SensitivityIsSigmaTimesTheDenseDerivative) {
  const auto layer = randomLayer(14, 11, 5, 1);
  const Eigen::MatrixXd X = lora::test::gaussian<double>(9, 11, 3), dY = lora::test::gaussian<double>(9, 14, 4);
  const Eigen::VectorXd I = lora::rank::TripletImportance::sensitivity(layer, X, dY);
  // dense reference: SVD of the materialized delta, G = dY^T X
  const auto svd = lora::linalg::denseSVD(layer.deltaWeight(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::MatrixXd G = dY.transpose() * X;
  ASSERT_EQ(I.size(), 5);
  for (Eigen::Index i = 0; i < 5; ++i) {
    const double want = std::abs(svd.S(i) *
                                 svd.U.col(i).dot(G * svd.V.col(i)));
    EXPECT_NEAR(I(i), want, 1e-10 * (1 + want)) << i;
  }
  // and the derivative is what finite differences of L(σ) = <G, Σ σ_j u_j v_j^T> give: linear,
  // so the central difference is exact up to rounding
  EXPECT_CONTAINS(errorOf([&] { lora::rank::TripletImportance::sensitivity(layer, X, dY.leftCols(3)); }),
                  "TripletImportance::sensitivity(): expected X (N x 11) and dY (N x 14)");
}

TEST(TripletImportance, MovingAveragesAsPeft) {
  lora::rank::TripletImportance t({.beta1 = 0.5, .beta2 = 0.75});
  Eigen::VectorXd I1(2), I2(2);
  I1 << 4, 2;
  I2 << 0, 2;
  t.observe(I1);  // Ī = 2, 1; Ū = 0.25·|4 − 2|, 0.25·|2 − 1| = 0.5, 0.25
  EXPECT_TRUE(t.smoothedImportance().isApprox(Eigen::Vector2d(2, 1)));
  EXPECT_TRUE(t.uncertainty().isApprox(Eigen::Vector2d(0.5, 0.25)));
  t.observe(I2);  // Ī = 1, 1.5; Ū = 0.375 + 0.25·1, 0.1875 + 0.25·0.5
  EXPECT_TRUE(t.smoothedImportance().isApprox(Eigen::Vector2d(1, 1.5)));
  EXPECT_TRUE(t.uncertainty().isApprox(Eigen::Vector2d(0.625, 0.3125)));
  EXPECT_TRUE(t.scores().isApprox(Eigen::Vector2d(0.625, 0.46875)));
  t.keep({1});
  EXPECT_TRUE(t.smoothedImportance().isApprox(Eigen::VectorXd::Constant(1, 1.5)));
  EXPECT_CONTAINS(errorOf([&] { t.keep({1}); }), "expected increasing indices below 1, got 1");
  Eigen::VectorXd bad(1);
  bad << NAN;
  EXPECT_CONTAINS(errorOf([&] { t.observe(bad); }), "TripletImportance::observe(): expected finite");
  EXPECT_CONTAINS(errorOf([] { lora::rank::TripletImportance({.beta1 = 1.0}); }), "beta1");
}

TEST(KeepToBudget, MeetsTheBudgetWithTheBestScores) {
  lora::Rng rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t layers = 1 + trial % 5;
    std::vector<Eigen::VectorXd> scores;
    Eigen::Index total = 0;
    for (std::size_t l = 0; l < layers; ++l) {
      Eigen::VectorXd s(2 + static_cast<Eigen::Index>(rng() % 6));
      lora::fillUniform(s, rng, 0.0, 1.0);
      total += s.size();
      scores.push_back(s);
    }
    const Eigen::Index floor = static_cast<Eigen::Index>(layers);
    const Eigen::Index budget = floor + static_cast<Eigen::Index>(rng() % static_cast<std::uint64_t>(total - floor + 1));
    const auto keep = lora::rank::keepToBudget(scores, budget);
    Eigen::Index kept = 0;
    double worstKept = INFINITY, bestDropped = -INFINITY;
    for (std::size_t l = 0; l < layers; ++l) {
      ASSERT_GE(keep[l].size(), 1u);
      ASSERT_TRUE(std::is_sorted(keep[l].begin(), keep[l].end()));
      kept += static_cast<Eigen::Index>(keep[l].size());
      std::vector<bool> in(static_cast<std::size_t>(scores[l].size()), false);
      for (auto i : keep[l]) in[static_cast<std::size_t>(i)] = true;
      double layerBest = -INFINITY;
      for (Eigen::Index i = 0; i < scores[l].size(); ++i) layerBest = std::max(layerBest, scores[l](i));
      for (Eigen::Index i = 0; i < scores[l].size(); ++i) {
        if (in[static_cast<std::size_t>(i)]) {
          if (keep[l].size() > 1 || scores[l](i) != layerBest) worstKept = std::min(worstKept, scores[l](i));
        } else {
          bestDropped = std::max(bestDropped, scores[l](i));
        }
      }
    }
    EXPECT_EQ(kept, budget);
    // apart from each layer's guaranteed best, everything kept beats everything dropped
    EXPECT_GE(worstKept, bestDropped);
  }
  const std::vector<Eigen::VectorXd> two = {Eigen::Vector2d(1, 2), Eigen::Vector2d(3, 4)};
  EXPECT_CONTAINS(errorOf([&] { lora::rank::keepToBudget(two, 1); }), "keepToBudget(): expected a budget in [2, 4]");
  EXPECT_CONTAINS(errorOf([&] { lora::rank::keepToBudget(two, 5); }), "got 5");
}

TEST(TripletImportance, PrunesLayersOnTheAdaLoraSchedule) {
  // Two layers whose deltas have 2 and 4 strong directions; the regression gradient points along
  // them, so after the masking steps the budget (target 3 per layer -> 6) goes 2 + 4.
  const Eigen::Index in = 12, out = 10, n = 64;
  std::vector<lora::Layer<double>> layers;
  std::vector<lora::rank::TripletImportance> importance(2);
  const Eigen::Index strong[2] = {2, 4};
  for (int l = 0; l < 2; ++l) {
    auto layer = randomLayer(out, in, 6, 10 + l);
    // shape the spectrum: strong directions 1..strong, the rest tiny
    Eigen::VectorXd s = Eigen::VectorXd::Constant(6, 1e-3);
    s.head(strong[l]).setConstant(1.0);
    const lora::linalg::FactoredSVD<double> svd(layer.B(), layer.A(), layer.scaling());
    layer.setFactors(s.asDiagonal() * svd.matrixV().transpose(), svd.matrixU() / layer.scaling());
    layers.push_back(std::move(layer));
  }
  const lora::rank::AdaLoraSchedule schedule{.initRank = 6, .targetRank = 3, .tinit = 2, .tfinal = 2,
                                             .deltaT = 2, .totalStep = 10, .modules = 2};
  for (Eigen::Index step = 0; step <= 10; ++step) {
    for (int l = 0; l < 2; ++l) {
      const Eigen::MatrixXd X = lora::test::gaussian<double>(n, in, 100 + step * 2 + l);
      const Eigen::MatrixXd dY = layers[l].adapterForward(X);  // gradient along the delta itself
      importance[l].update(layers[l], X, dY);
    }
    const auto [budget, mask] = schedule.at(step);
    if (!mask) continue;
    const Eigen::Index current = layers[0].rank() + layers[1].rank();
    if (budget >= current) continue;
    const auto keep = lora::rank::keepToBudget({importance[0].scores(), importance[1].scores()}, budget);
    for (int l = 0; l < 2; ++l) {
      layers[l].keepDirections(keep[static_cast<std::size_t>(l)]);
      importance[l].keep(keep[static_cast<std::size_t>(l)]);
    }
  }
  EXPECT_EQ(layers[0].rank(), 2);
  EXPECT_EQ(layers[1].rank(), 4);
  EXPECT_NEAR(layers[0].spectrum()(1), 1.0, 1e-9);
  EXPECT_NEAR(layers[1].spectrum()(3), 1.0, 1e-9);
}

}  // namespace
