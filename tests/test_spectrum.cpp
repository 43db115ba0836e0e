// Rank rules and measures on a spectrum, against values worked out by hand.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "lora/linalg/spectrum.hpp"
#include "support/errors.hpp"

namespace {

namespace la = lora::linalg;
using lora::test::errorOf;

Eigen::VectorXd spectrum(std::initializer_list<double> values) {
  Eigen::VectorXd v(static_cast<Eigen::Index>(values.size()));
  Eigen::Index i = 0;
  for (double x : values) v(i++) = x;
  return v;
}

// σ = (3, 2, 1, 0.5): Σσ = 6.5 with prefix fractions 0.4615, 0.7692, 0.9231, 1;
// Σσ² = 14.25 with prefix fractions 0.6316, 0.9123, 0.9825, 1.
const Eigen::VectorXd kSigma = spectrum({3, 2, 1, 0.5});

TEST(EnergyRank, SmallestPrefixWithTheEnergy) {
  EXPECT_EQ(la::energyRank(kSigma, 0.5), 1);
  EXPECT_EQ(la::energyRank(kSigma, 0.9), 2);
  EXPECT_EQ(la::energyRank(kSigma, 0.95), 3);
  EXPECT_EQ(la::energyRank(kSigma, 0.99), 4);
  EXPECT_EQ(la::energyRank(kSigma, 1.0), 4);
  EXPECT_EQ(la::energyRank(Eigen::VectorXf::Zero(3), 0.9), 1);
}

TEST(CumulativeRank, TheArticlesRank90) {
  EXPECT_EQ(la::cumulativeRank(kSigma), 3);  // t = 0.9: 0.7692 < 0.9 <= 0.9231
  EXPECT_EQ(la::cumulativeRank(kSigma, 0.5), 2);
  EXPECT_EQ(la::cumulativeRank(kSigma, 0.4), 1);
}

TEST(ThresholdRank, CountsValuesAboveAFractionOfTheLargest) {
  EXPECT_EQ(la::thresholdRank(kSigma), 4);       // all above 1% of 3
  EXPECT_EQ(la::thresholdRank(kSigma, 0.2), 3);  // above 0.6
  EXPECT_EQ(la::thresholdRank(spectrum({5, 0.01, 0})), 1);
  EXPECT_EQ(la::thresholdRank(spectrum({0, 0})), 1);
}

TEST(Kohya, RulesAndTheirClampToNMinusOne) {
  EXPECT_EQ(la::kohyaSvRatio(kSigma, 2.0), 2);   // σ > 1.5
  EXPECT_EQ(la::kohyaSvRatio(kSigma, 10.0), 3);  // all 4 above 0.3, clamped to n - 1
  EXPECT_EQ(la::kohyaSvCumulative(kSigma, 0.9), 3);
  EXPECT_EQ(la::kohyaSvCumulative(kSigma, 0.99), 3);   // 4, clamped
  EXPECT_EQ(la::kohyaSvFro(kSigma, 0.9), 2);           // t² = 0.81 <= 0.9123
  EXPECT_EQ(la::kohyaSvFro(kSigma, 0.7), 1);           // t² = 0.49 <= 0.6316
  EXPECT_EQ(la::kohyaSvRatio(spectrum({4}), 2.0), 1);  // n = 1
}

TEST(KneeRank, FindsTheDrop) {
  // Normalized: y = σ / 10, x = i / 7; 1 - x - y is largest at i = 2 (value 1, after the drop).
  EXPECT_EQ(la::kneeRank(spectrum({10, 9, 1, 0.8, 0.6, 0.4, 0.2, 0})), 3);
  EXPECT_EQ(la::kneeRank(spectrum({2, 2, 2, 2})), 1);  // flat
  EXPECT_EQ(la::kneeRank(spectrum({2, 1})), 1);        // too short
}

TEST(Measures, EntropyAndStableRank) {
  EXPECT_NEAR(la::entropyEffectiveRank(kSigma), 3.3360694735848733, 1e-13);
  EXPECT_NEAR(la::entropyEffectiveRank(spectrum({1, 1, 1, 1})), 4.0, 1e-13);
  EXPECT_NEAR(la::entropyEffectiveRank(spectrum({5, 0, 0})), 1.0, 1e-15);
  EXPECT_EQ(la::entropyEffectiveRank(spectrum({0, 0})), 0.0);
  EXPECT_NEAR(la::stableRank(kSigma), 14.25 / 9.0, 1e-15);
  EXPECT_EQ(la::stableRank(spectrum({0})), 0.0);
}

TEST(SubspaceSimilarity, OverlapOfLeadingColumns) {
  const Eigen::MatrixXd I = Eigen::MatrixXd::Identity(5, 5);
  EXPECT_DOUBLE_EQ(la::subspaceSimilarity(I.leftCols(3), I.leftCols(3), 3, 3), 1.0);
  EXPECT_DOUBLE_EQ(la::subspaceSimilarity(I.leftCols(3), I.leftCols(3), 1, 3), 1.0);   // contained
  EXPECT_DOUBLE_EQ(la::subspaceSimilarity(I.leftCols(2), I.rightCols(3), 2, 3), 0.0);  // orthogonal
  // span(e1, e2) vs span((e1 + e3)/√2, e4): overlap 1/2, divided by min(2, 2).
  Eigen::MatrixXd U2 = Eigen::MatrixXd::Zero(5, 2);
  U2(0, 0) = U2(2, 0) = 1.0 / std::sqrt(2.0);
  U2(3, 1) = 1.0;
  EXPECT_NEAR(la::subspaceSimilarity(I.leftCols(2), U2, 2, 2), 0.25, 1e-15);
  EXPECT_CONTAINS(errorOf([&] { la::subspaceSimilarity(I.leftCols(2), U2, 3, 1); }),
                  "subspaceSimilarity(): expected 1 <= i <= 2");
  EXPECT_CONTAINS(
      errorOf([&] { la::subspaceSimilarity(I.leftCols(2), Eigen::MatrixXd::Zero(4, 2), 1, 1); }),
      "same dimension");
}

TEST(Spectrum, BadInputIsAnError) {
  EXPECT_CONTAINS(errorOf([] { la::energyRank(kSigma, 0.0); }),
                  "energyRank(): expected a threshold in (0, 1], got 0");
  EXPECT_CONTAINS(errorOf([] { la::cumulativeRank(kSigma, 1.5); }), "cumulativeRank()");
  EXPECT_CONTAINS(errorOf([] { la::kohyaSvRatio(kSigma, 0.5); }),
                  "expected a finite ratio >= 1, got 0.5");
  EXPECT_CONTAINS(errorOf([] { la::thresholdRank(kSigma, 1.0); }), "thresholdRank()");
  EXPECT_CONTAINS(errorOf([] { la::stableRank(Eigen::VectorXd()); }), "non-empty spectrum");
  EXPECT_CONTAINS(errorOf([] {
                    la::kneeRank(spectrum({1, 2}));
                  }),
                  "decreasing order, got 2 after 1 at index 1");
  EXPECT_CONTAINS(errorOf([] { la::entropyEffectiveRank(spectrum({1, -1})); }), "non-negative");
  EXPECT_CONTAINS(
      errorOf([] { la::energyRank(spectrum({std::numeric_limits<double>::quiet_NaN()}), 0.9); }),
      "finite");
}

}  // namespace
