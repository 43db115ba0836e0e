// Layer-wise rank budgets: the article's allocation (and its flaws) and the exact allocator.
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

#include "lora/random.hpp"
#include "lora/rank/budget.hpp"
#include "support/errors.hpp"

namespace {

using lora::test::errorOf;
using Ranks = std::vector<Eigen::Index>;

Eigen::Index sum(const Ranks& r) {
  return std::accumulate(r.begin(), r.end(), Eigen::Index{0});
}

TEST(ArticleAllocation, FollowsTheArticle) {
  // Shares 0.4, 0.3, 0.2, 0.1 of 10.
  EXPECT_EQ(lora::rank::allocateArticle({4, 3, 2, 1}, 10), (Ranks{4, 3, 2, 1}));
  // Input order is kept in the result; the order of allocation is by importance.
  EXPECT_EQ(lora::rank::allocateArticle({1, 4, 2, 3}, 10), (Ranks{1, 4, 2, 3}));
}

TEST(ArticleAllocation, CanExceedOrUnderuseTheBudget) {
  // 0.9 · 4 -> 3, then max(1, int(0.2)) = 1 uses the rest, then the last layer still gets 1.
  const Ranks over = lora::rank::allocateArticle({0.9, 0.05, 0.05}, 4);
  EXPECT_EQ(over, (Ranks{3, 1, 1}));
  EXPECT_EQ(sum(over), 5);
  // int(10 / 3) = 3 each: one unit of the budget is never given out.
  EXPECT_EQ(sum(lora::rank::allocateArticle({1, 1, 1}, 10)), 9);
}

TEST(ArticleAllocation, ImportanceFromASpectrum) {
  Eigen::VectorXd sigma(4);
  sigma << 3, 2, 0.02, 0.01;  // effective rank 2 (above 0.03)
  EXPECT_NEAR(lora::rank::articleImportance(sigma), 2 * std::log(4.0), 1e-15);
  EXPECT_EQ(lora::rank::articleImportance(Eigen::VectorXd::Zero(3)), 0.0);
}

TEST(ExactAllocation, ProportionalWithLargestRemainders) {
  EXPECT_EQ(lora::rank::allocateExact({1, 1, 1}, 10, 1, 8), (Ranks{4, 3, 3}));
  EXPECT_EQ(lora::rank::allocateExact({4, 3, 2, 1}, 10, 1, 10), (Ranks{4, 3, 2, 1}));
  EXPECT_EQ(lora::rank::allocateExact({0, 0}, 6, 1, 8), (Ranks{3, 3}));
}

TEST(ExactAllocation, BoundsPinLayersAndTheRestIsShared) {
  // One dominant layer is capped at 6; the others share the remaining 6 equally.
  EXPECT_EQ(lora::rank::allocateExact({100, 1, 1}, 12, 2, 6), (Ranks{6, 3, 3}));
  // A zero-importance layer stays at the minimum until the budget needs it.
  EXPECT_EQ(lora::rank::allocateExact({5, 0}, 6, 1, 5), (Ranks{5, 1}));
  EXPECT_EQ(lora::rank::allocateExact({5, 0}, 8, 1, 5), (Ranks{5, 3}));
}

TEST(ExactAllocation, InvariantsOnRandomInputs) {
  lora::Rng rng(99);
  for (int trial = 0; trial < 500; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 12);
    std::vector<double> importance(static_cast<std::size_t>(n));
    for (auto& x : importance) x = rng.uniform01() < 0.2 ? 0.0 : rng.uniform(0.0, 10.0);
    const Eigen::Index minRank = 1 + static_cast<Eigen::Index>(rng() % 4);
    const Eigen::Index maxRank = minRank + static_cast<Eigen::Index>(rng() % 30);
    const Eigen::Index budget =
        n * minRank + static_cast<Eigen::Index>(rng() % (n * (maxRank - minRank) + 1));
    const Ranks r = lora::rank::allocateExact(importance, budget, minRank, maxRank);
    ASSERT_EQ(sum(r), budget) << "trial " << trial;
    for (int l = 0; l < n; ++l) {
      ASSERT_GE(r[l], minRank);
      ASSERT_LE(r[l], maxRank);
      // More important never gets less (up to one unit of rounding).
      for (int m = 0; m < n; ++m) {
        if (importance[l] > importance[m]) {
          ASSERT_GE(r[l] + 1, r[m]) << "trial " << trial;
        }
      }
    }
  }
}

TEST(Allocation, BadInput) {
  EXPECT_CONTAINS(errorOf([] { lora::rank::allocateArticle({}, 4); }),
                  "allocateArticle(): expected at least one layer");
  EXPECT_CONTAINS(errorOf([] { lora::rank::allocateArticle({1, -1}, 4); }), "got -1 for layer 1");
  EXPECT_CONTAINS(errorOf([] {
                    lora::rank::allocateArticle({0, 0}, 4);
                  }),
                  "positive total importance");
  EXPECT_CONTAINS(errorOf([] { lora::rank::allocateArticle({1}, 0); }), "budget >= 1, got 0");
  EXPECT_CONTAINS(
      errorOf([] {
        lora::rank::allocateExact({1, 1}, 20, 1, 8);
      }),
      "allocateExact(): expected a budget in [2, 16] for 2 layers with ranks in [1, 8], got 20");
  EXPECT_CONTAINS(errorOf([] {
                    lora::rank::allocateExact({1, 1}, 4, 3, 2);
                  }),
                  "minRank <= maxRank");
  EXPECT_CONTAINS(errorOf([] { lora::rank::allocateExact({std::nan("")}, 4, 1, 8); }),
                  "finite non-negative");
}

}  // namespace
