// Rank selectors: the article's rules step for step (expected decisions produced by running the
// article's own Python classes), the flaws they carry, and the signals added beside them.

#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lora/linalg/dense_svd.hpp"
#include "lora/rank/article_gradient.hpp"
#include "lora/rank/full_gradient_selector.hpp"
#include "lora/rank/gradient_signal.hpp"
#include "lora/rank/loss_plateau.hpp"
#include "lora/rank/slope_plateau.hpp"
#include "lora/rank/svd_energy_selector.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

using lora::rank::Decision;
}  // namespace

namespace lora::rank {
void PrintTo(const Decision& d, std::ostream* os) {
  *os << "{" << (d.adjust ? "adjust" : "keep") << ", " << d.reason << ", " << d.newRank << "}";
}
}  // namespace lora::rank

namespace {
using lora::test::errorOf;

static_assert(lora::rank::Selector<lora::rank::ArticleLossPlateau, double>);
static_assert(lora::rank::Selector<lora::rank::SlopePlateau, double>);
static_assert(lora::rank::Selector<lora::rank::ArticleGradientBased, Eigen::VectorXd>);
static_assert(
    lora::rank::Selector<lora::rank::ArticleGradientInformed, lora::rank::FactorGradients>);
static_assert(lora::rank::Selector<lora::rank::SvdEnergySelector, Eigen::VectorXd>);
static_assert(lora::rank::Selector<lora::rank::FullGradientSelector, lora::rank::GradientSignal>);

// Runs an adjuster over losses as the article's example loop does: apply every adjustment.
template <typename S>
std::vector<Decision> replay(S& s, const std::vector<double>& losses) {
  std::vector<Decision> out;
  for (double loss : losses) {
    Decision d = s.observe(loss);
    if (d.adjust) s.setRank(d.newRank);
    out.push_back(d);
  }
  return out;
}

const std::vector<double> kArticleLosses = {2.5,  2.3,  2.1,  2.0,  1.95, 1.94, 1.94, 1.93, 1.93,
                                            1.93, 1.94, 1.92, 1.95, 1.91, 1.96, 1.90, 1.97, 1.89};

lora::rank::ArticleLossPlateauOptions articleExample() {
  return {.initialRank = 8, .minRank = 2, .maxRank = 32, .patience = 5};
}

// Expected values: the article's LossBasedRankAdjuster run in Python (numpy) on the same input.
TEST(ArticleLossPlateau, ArticlesOwnExampleNeverAdjusts) {
  lora::rank::ArticleLossPlateau s(articleExample());
  const auto got = replay(s, kArticleLosses);
  const std::vector<std::string> reasons = {
      "loss_improved",        "loss_improved",        "loss_improved",
      "loss_improved",        "loss_improved",        "no_adjustment_needed",
      "no_adjustment_needed", "loss_improved",        "no_adjustment_needed",
      "no_adjustment_needed", "no_adjustment_needed", "no_adjustment_needed",
      "no_clear_signal",      "loss_improved",        "no_adjustment_needed",
      "no_adjustment_needed", "no_adjustment_needed", "loss_improved"};
  ASSERT_EQ(got.size(), reasons.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_FALSE(got[i].adjust);
    EXPECT_EQ(got[i].reason, reasons[i]);
    EXPECT_EQ(got[i].newRank, 8);
  }
  // The flaw, at step 12: the window 1.93 1.93 1.94 1.92 1.95 is flat, yet "oscillating"
  // (std of the differences > their mean absolute value), with a variance far below 0.01.
  EXPECT_EQ(lora::rank::articleLossTrend({1.93, 1.93, 1.94, 1.92, 1.95}),
            lora::rank::LossTrend::Oscillating);
  EXPECT_EQ(lora::rank::articleLossTrend({1.93, 1.93, 1.93, 1.93, 1.93}),
            lora::rank::LossTrend::Plateau);
}

TEST(ArticleLossPlateau, PlateauGrowsAndOscillationShrinks) {
  {  // Python: adjusts once, at step 7, to 12
    lora::rank::ArticleLossPlateau s(articleExample());
    const std::vector<double> losses = {1.0,   1.0, 1.0, 1.0,  1.001, 1.0, 1.001, 1.0, 1.001, 1.0,
                                        1.001, 1.2, 0.9, 1.25, 0.85,  1.3, 0.8,   1.3, 0.8};
    const auto got = replay(s, losses);
    for (std::size_t i = 0; i < got.size(); ++i) {
      SCOPED_TRACE(i);
      EXPECT_EQ(got[i].adjust, i == 7);
    }
    EXPECT_EQ(got[5].reason, "no_clear_signal");
    EXPECT_EQ(got[7], (Decision{true, "plateau_increase_rank", 12}));
    EXPECT_EQ(got[12].reason, "loss_improved");
    EXPECT_EQ(s.currentRank(), 12);
  }
  {  // Python: 8 -> 6 -> 4 -> 3 -> 2 at steps 5, 10, 15, 20
    lora::rank::ArticleLossPlateau s(articleExample());
    std::vector<double> losses = {0.5};
    for (int i = 0; i < 7; ++i) losses.insert(losses.end(), {1.0, 1.3, 1.0});
    const auto got = replay(s, losses);
    const std::vector<std::pair<std::size_t, Eigen::Index>> expected = {
        {5, 6}, {10, 4}, {15, 3}, {20, 2}};
    for (const auto& [step, rank] : expected)
      EXPECT_EQ(got[step], (Decision{true, "oscillating_decrease_rank", rank})) << step;
    int adjustments = 0;
    for (const auto& d : got) adjustments += d.adjust;
    EXPECT_EQ(adjustments, 4);
    EXPECT_EQ(s.currentRank(), 2);  // at minRank: no further shrink
  }
}

TEST(ArticleLossPlateau, BadInput) {
  lora::rank::ArticleLossPlateau s;
  EXPECT_CONTAINS(errorOf([&] { s.observe(NAN); }),
                  "ArticleLossPlateau::observe(): expected a finite loss, got nan");
  EXPECT_CONTAINS(errorOf([&] { s.observe(INFINITY); }), "got inf");
  EXPECT_EQ(s.currentRank(), 8);
  EXPECT_CONTAINS(errorOf([] { lora::rank::ArticleLossPlateau({.minRank = 5, .maxRank = 4}); }),
                  "expected 1 <= minRank <= maxRank, got minRank 5 and maxRank 4");
  EXPECT_CONTAINS(errorOf([] { lora::rank::ArticleLossPlateau({.patience = 0}); }), "patience");
}

TEST(SlopePlateau, FindsThePlateauTheArticleMisses) {
  lora::rank::SlopePlateau s({.initialRank = 8, .minRank = 2, .maxRank = 32, .window = 5});
  const auto got = replay(s, kArticleLosses);
  std::size_t first = got.size();
  for (std::size_t i = 0; i < got.size(); ++i)
    if (got[i].adjust && first == got.size()) first = i;
  ASSERT_LT(first, got.size()) << "never adjusted";
  EXPECT_GE(first, 8u);  // not during the descent 2.5 -> 1.94
  EXPECT_EQ(got[first], (Decision{true, "plateau_increase_rank", 12}));
  EXPECT_EQ(got[first + 1].reason, "cooldown");
  EXPECT_EQ(got[2].reason, "insufficient_history");
  EXPECT_EQ(got[4].reason, "improving");
}

TEST(SlopePlateau, NeverAdjustsWhileImprovingAndRespectsMaxRank) {
  lora::rank::SlopePlateau s({.initialRank = 4, .maxRank = 6, .window = 10});
  std::vector<double> decay;
  for (int t = 0; t < 100; ++t) decay.push_back(std::exp(-0.05 * t) + 0.01 * std::sin(t));
  for (const auto& d : replay(s, decay)) EXPECT_FALSE(d.adjust) << d.reason;
  // a flat, noisy loss: a plateau once the slope is pinned, then growth up to maxRank only
  lora::rank::SlopePlateau flat({.initialRank = 4, .maxRank = 6, .window = 10});
  lora::Rng rng(3);
  std::vector<double> noisy;
  for (int t = 0; t < 200; ++t) noisy.push_back(1.0 + 0.002 * rng.normal());
  const auto got = replay(flat, noisy);
  int adjustments = 0;
  for (const auto& d : got) adjustments += d.adjust;
  EXPECT_EQ(adjustments, 1);  // 4 -> 6 (int(4·1.5)), then at_max_rank
  EXPECT_EQ(flat.currentRank(), 6);
  EXPECT_EQ(got.back().reason, "at_max_rank");
  // a rising loss is a learning-rate problem, not a plateau
  lora::rank::SlopePlateau rising({.window = 6});
  Decision last;
  for (int t = 0; t < 6; ++t) last = rising.observe(1.0 + 0.1 * t);
  EXPECT_EQ(last, (Decision{false, "loss_increasing", 8}));
  EXPECT_CONTAINS(errorOf([&] { rising.observe(NAN); }),
                  "SlopePlateau::observe(): expected a finite loss");
  EXPECT_CONTAINS(errorOf([] { lora::rank::SlopePlateau({.window = 3}); }),
                  "expected window >= 4, got 3");
}

TEST(SlopePlateau, StopsGrowingWhenGrowthDoesNotPay) {
  // a flat loss that no rank improves: one growth, then growth_did_not_help
  lora::rank::SlopePlateau s({.initialRank = 2, .maxRank = 64, .window = 8});
  lora::Rng rng(4);
  std::vector<Decision> got;
  for (int t = 0; t < 120; ++t) {
    Decision d = s.observe(1.0 + 0.001 * rng.normal());
    if (d.adjust) s.setRank(d.newRank);
    got.push_back(d);
  }
  int adjustments = 0;
  for (const auto& d : got) adjustments += d.adjust;
  EXPECT_EQ(adjustments, 1);
  EXPECT_EQ(s.currentRank(), 3);
  EXPECT_EQ(got.back().reason, "growth_did_not_help");
  // when growth pays (each growth lowers the plateau by 10%), it keeps growing
  lora::rank::SlopePlateau paying({.initialRank = 2, .maxRank = 64, .window = 8});
  double level = 1.0;
  int grown = 0;
  for (int t = 0; t < 120; ++t) {
    Decision d = paying.observe(level + 0.001 * rng.normal());
    if (d.adjust) {
      paying.setRank(d.newRank);
      level *= 0.9;
      ++grown;
    }
  }
  EXPECT_GE(grown, 3);
}

TEST(FitSlope, IsTheLeastSquaresLine) {
  Eigen::ArrayXd y(5);
  y << 1, 3, 2, 5, 4;  // slope 0.8, intercept 1.4; residuals -0.4 0.8 -1 1.2 -0.6
  const auto fit = lora::rank::fitSlope(y);
  EXPECT_NEAR(fit.slope, 0.8, 1e-15);
  EXPECT_NEAR(fit.mean, 3.0, 1e-15);
  EXPECT_NEAR(fit.standardError, std::sqrt(3.6 / 3 / 10), 1e-15);
}

// σ with a known 95% energy rank: k ones then small values
Eigen::VectorXd plantedSpectrum(Eigen::Index k, Eigen::Index n) {
  Eigen::VectorXd s = Eigen::VectorXd::Constant(n, 1e-3);
  s.head(k).setOnes();
  return s;
}

TEST(ArticleGradientBased, FollowsSection13) {
  lora::rank::ArticleGradientBased s(
      {.initialRank = 8, .maxRank = 16, .adjustmentFrequency = 3, .sensitivityThreshold = 0.1});
  // steps 1, 2: not adjustment steps; step 3: energy rank 5 (< 2 windows of history)
  EXPECT_EQ(s.observe(plantedSpectrum(5, 20)).reason, "not_adjustment_step");
  EXPECT_EQ(s.observe(plantedSpectrum(5, 20)).reason, "not_adjustment_step");
  EXPECT_EQ(s.observe(plantedSpectrum(5, 20)), (Decision{true, "energy_rank", 5}));
  s.setRank(5);
  // steps 4..6 with the same norms: stable -> energy rank 5 − 1 = 4
  s.observe(plantedSpectrum(5, 20));
  s.observe(plantedSpectrum(5, 20));
  EXPECT_EQ(s.observe(plantedSpectrum(5, 20)),
            (Decision{true, "gradient_stable_decrease_rank", 4}));
  s.setRank(4);
  // steps 7..9 with a much larger norm (‖σ‖ of 9 ones vs 5): changing -> 9 + 2 = 11
  s.observe(plantedSpectrum(9, 20));
  s.observe(plantedSpectrum(9, 20));
  EXPECT_EQ(s.observe(plantedSpectrum(9, 20)),
            (Decision{true, "gradient_changing_increase_rank", 11}));
  s.setRank(11);
  // capped at maxRank
  for (int i = 0; i < 2; ++i) s.observe(plantedSpectrum(20, 20) * 10);
  EXPECT_EQ(s.observe(plantedSpectrum(20, 20) * 10),
            (Decision{true, "gradient_changing_increase_rank", 16}));
  Eigen::VectorXd bad = plantedSpectrum(2, 4);
  bad(1) = NAN;
  EXPECT_CONTAINS(errorOf([&] { s.observe(bad); }), "expected");
}

TEST(ArticleGradientInformed, CanOnlyShrinkBecauseGradBGradAHasRankAtMostR) {
  // random full-rank factor gradients of rank r: erank95 <= r, never > 1.2 r
  lora::rank::ArticleGradientInformed s({.initialRank = 4, .adjustmentInterval = 1});
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    const Eigen::MatrixXd gA = lora::test::gaussian<double>(4, 30, seed);
    const Eigen::MatrixXd gB = lora::test::gaussian<double>(40, 4, seed + 100);
    const Decision d = s.observe({gA, gB});
    EXPECT_NE(d.reason, "gradient_rank_increase");
    EXPECT_LE(s.lastEffectiveRank95(), 4);
  }
  // rank-one, constant-norm gradients: erank 1 < 0.6·8 and consistency 1 -> max(1, 8 − 2) = 6
  lora::rank::ArticleGradientInformed t({.initialRank = 8, .adjustmentInterval = 2});
  const Eigen::MatrixXd u = lora::test::gaussian<double>(8, 1, 1),
                        v = lora::test::gaussian<double>(1, 30, 2);
  const Eigen::MatrixXd gA = u * v;  // 8 x 30, rank 1
  const Eigen::MatrixXd gB = lora::test::gaussian<double>(40, 1, 3) * u.transpose();  // 40 x 8
  EXPECT_EQ(t.observe({gA, gB}).reason, "not_adjustment_step");
  EXPECT_EQ(t.observe({gA, gB}), (Decision{true, "gradient_rank_decrease", 6}));
  EXPECT_EQ(t.lastEffectiveRank95(), 1);
  EXPECT_DOUBLE_EQ(t.lastConsistency(), 1.0);
  Eigen::MatrixXd bad = gA;
  bad(0, 0) = INFINITY;
  EXPECT_CONTAINS(errorOf([&] {
                    t.observe({bad, gB});
                  }),
                  "ArticleGradientInformed::observe(): expected finite gradients");
  EXPECT_CONTAINS(errorOf([&] { t.observe({gA, gB.leftCols(3)}); }), "with the same r");
}

TEST(GradientSignal, MatchesTheDenseGradient) {
  const Eigen::MatrixXd X = lora::test::gaussian<double>(12, 20, 1);
  const Eigen::MatrixXd dY = lora::test::gaussian<double>(12, 15, 2);
  const Eigen::MatrixXd B = lora::test::gaussian<double>(15, 3, 3);
  const Eigen::MatrixXd A = lora::test::gaussian<double>(3, 20, 4);
  const auto s = lora::rank::gradientSignal(X, dY, B, A);
  const Eigen::MatrixXd G = dY.transpose() * X;
  const Eigen::VectorXd sigma = lora::linalg::singularValues(G);
  ASSERT_EQ(s.spectrum.size(), 12);
  EXPECT_LE((s.spectrum - sigma.head(12)).norm(), 1e-12 * sigma.norm());
  EXPECT_NEAR(s.norm, G.norm(), 1e-12 * G.norm());
  const Eigen::MatrixXd QB = lora::linalg::ThinQR<double>(B).matrixQ();              // 15 x 3
  const Eigen::MatrixXd QA = lora::linalg::ThinQR<double>(A.transpose()).matrixQ();  // 20 x 3
  const Eigen::MatrixXd outside = G - QB * QB.transpose() * G;
  EXPECT_NEAR(s.outsideColumnFraction, outside.squaredNorm() / G.squaredNorm(), 1e-12);
  EXPECT_NEAR(s.outsideRowFraction, (G - G * QA * QA.transpose()).squaredNorm() / G.squaredNorm(),
              1e-12);
  const Eigen::VectorXd sOut = lora::linalg::singularValues(outside);
  EXPECT_LE((s.outsideSpectrum - sOut.head(s.outsideSpectrum.size())).norm(), 1e-10 * sigma.norm());
  // a fresh adapter (B = 0): everything is outside
  const auto fresh = lora::rank::gradientSignal(X, dY, Eigen::MatrixXd::Zero(15, 3), A);
  EXPECT_DOUBLE_EQ(fresh.outsideColumnFraction, 1.0);
  EXPECT_CONTAINS(errorOf([&] { lora::rank::gradientSignal(X, dY.topRows(5), B, A); }),
                  "gradientSignal(): expected X and dY with the same number of rows");
}

TEST(FullGradientSelector, GrowsTowardThePlantedRank) {
  // Residual target of rank 6: the adapter (rank 2) spans 2 of its 6 output directions, so most of
  // the gradient lies outside col(B) and the selector asks for 2 + min(4, directions) = 6.
  const Eigen::Index out = 30, in = 25, n = 200;
  const Eigen::MatrixXd U = lora::test::orthonormal(out, 6, 1);
  const Eigen::MatrixXd V = lora::test::gaussian<double>(6, in, 2);
  const Eigen::MatrixXd X = lora::test::gaussian<double>(n, in, 3);
  const Eigen::MatrixXd dY = X * (U * V).transpose();  // dL/dY of ½‖Y − Y*‖² at Y = 0
  const Eigen::MatrixXd B = U.leftCols(2), A = lora::test::gaussian<double>(2, in, 4);
  const auto signal = lora::rank::gradientSignal(X, dY, B, A);
  EXPECT_GT(signal.outsideColumnFraction, 0.3);
  EXPECT_EQ(lora::linalg::energyRank(signal.spectrum, 0.999), 6);
  lora::rank::FullGradientSelector s(
      {.initialRank = 2, .maxRank = 16, .interval = 3, .outsideThreshold = 0.3});
  EXPECT_EQ(s.observe(signal).reason, "not_decision_step");
  s.observe(signal);
  EXPECT_EQ(s.observe(signal), (Decision{true, "gradient_outside_adapter", 6}));
  // an adapter that already spans all 6 directions: nothing outside
  lora::rank::FullGradientSelector t({.initialRank = 6, .interval = 1});
  const auto inside = lora::rank::gradientSignal(X, dY, U, lora::test::gaussian<double>(6, in, 5));
  EXPECT_LT(inside.outsideColumnFraction, 1e-20);
  EXPECT_EQ(t.observe(inside), (Decision{false, "gradient_inside_adapter", 6}));
  // pure noise: plenty of gradient outside col(B), but it points somewhere new every batch
  lora::rank::FullGradientSelector noise(
      {.initialRank = 2, .interval = 5, .outsideThreshold = 0.3});
  Decision last;
  for (std::uint64_t b = 0; b < 10; ++b) {
    const Eigen::MatrixXd Xb = lora::test::gaussian<double>(n, in, 50 + b);
    const Eigen::MatrixXd dYb = lora::test::gaussian<double>(n, out, 80 + b);
    last = noise.observe(lora::rank::gradientSignal(Xb, dYb, B, A));
  }
  EXPECT_EQ(last, (Decision{false, "no_persistent_direction", 2}));
  EXPECT_LT(noise.persistence()(0), 0.5);
}

TEST(SvdEnergySelector, ShrinksToTheEnergyRank) {
  lora::rank::SvdEnergySelector s({.initialRank = 8, .minRank = 2, .maxRank = 16, .energy = 0.9});
  Eigen::VectorXd sigma(8);
  sigma << 10, 3, 0.5, 0.1, 0.05, 0.01, 0, 0;  // 100 + 9 = 109 of 109.26: 90% at k = 1
  EXPECT_EQ(s.observe(sigma), (Decision{true, "energy_rank", 2}));  // clamped to minRank
  s.setRank(2);
  EXPECT_EQ(s.observe(sigma), (Decision{false, "energy_rank_unchanged", 2}));
  lora::rank::SvdEnergySelector t({.initialRank = 8, .energy = 0.999});
  EXPECT_EQ(t.observe(sigma), (Decision{true, "energy_rank", 3}));
  EXPECT_CONTAINS(errorOf([&] { t.observe(Eigen::VectorXd()); }), "expected");
}

}  // namespace
