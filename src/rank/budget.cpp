#include "lora/rank/budget.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>

#include "lora/error.hpp"
#include "lora/linalg/spectrum.hpp"

namespace lora::detail {

double articleImportanceDouble(const Eigen::Ref<const Eigen::VectorXd>& sigma) {
  const rank::Index effective = linalg::thresholdRank(sigma, 0.01);  // validates the spectrum
  return static_cast<double>(effective) * std::log1p(static_cast<double>(sigma(0)));
}

void checkImportance(const char* where, const std::vector<double>& importance) {
  if (importance.empty()) fail(where, "expected at least one layer, got none");
  for (std::size_t i = 0; i < importance.size(); ++i)
    if (!(std::isfinite(importance[i]) && importance[i] >= 0.0))
      fail(where, "expected finite non-negative importances, got {} for layer {}", importance[i],
           i);
}

}  // namespace lora::detail

namespace lora::rank {

std::vector<Index> allocateArticle(const std::vector<double>& importance, Index budget) {
  constexpr const char* where = "allocateArticle";
  detail::checkImportance(where, importance);
  if (budget < 1) detail::fail(where, "expected a budget >= 1, got {}", budget);
  const double total = std::accumulate(importance.begin(), importance.end(), 0.0);
  if (!(total > 0.0)) detail::fail(where, "expected a positive total importance, got {}", total);
  std::vector<std::size_t> order(importance.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return importance[a] > importance[b]; });
  std::vector<Index> ranks(importance.size(), 1);
  Index remaining = budget;
  for (std::size_t l : order) {
    if (remaining <= 0) continue;  // rank 1, beyond the budget
    const double share = importance[l] / total;
    const Index allocated = std::min(
        std::max<Index>(1, static_cast<Index>(share * static_cast<double>(budget))), remaining);
    ranks[l] = allocated;
    remaining -= allocated;
  }
  return ranks;
}

std::vector<Index> allocateExact(const std::vector<double>& importance, Index budget, Index minRank,
                                 Index maxRank) {
  constexpr const char* where = "allocateExact";
  detail::checkImportance(where, importance);
  const std::size_t n = importance.size();
  const Index layers = static_cast<Index>(n);
  if (minRank < 1 || maxRank < minRank)
    detail::fail(where, "expected 1 <= minRank <= maxRank, got minRank {} and maxRank {}", minRank,
                 maxRank);
  if (budget < layers * minRank || budget > layers * maxRank)
    detail::fail(where,
                 "expected a budget in [{}, {}] for {} layers with ranks in [{}, {}], got {}",
                 layers * minRank, layers * maxRank, layers, minRank, maxRank, budget);
  std::vector<double> w = importance;
  if (std::accumulate(w.begin(), w.end(), 0.0) == 0.0) std::fill(w.begin(), w.end(), 1.0);
  const double lo = static_cast<double>(minRank), hi = static_cast<double>(maxRank);
  const auto clampedShare = [&](double lambda, std::size_t l) {
    return std::clamp(lambda * w[l], lo, hi);
  };
  const auto total = [&](double lambda) {
    double sum = 0.0;
    for (std::size_t l = 0; l < n; ++l) sum += clampedShare(lambda, l);
    return sum;
  };
  // λ large enough to put every weighted layer at maxRank, then bisect for the budget.
  double wMin = std::numeric_limits<double>::infinity();
  for (double x : w)
    if (x > 0.0) wMin = std::min(wMin, x);
  double a = 0.0, b = hi / wMin;
  for (int it = 0; it < 200 && b - a > 0.0; ++it) {
    const double mid = 0.5 * (a + b);
    (total(mid) >= static_cast<double>(budget) ? b : a) = mid;
  }
  std::vector<double> share(n);
  std::vector<Index> ranks(n);
  Index assigned = 0;
  for (std::size_t l = 0; l < n; ++l) {
    share[l] = clampedShare(b, l);
    ranks[l] = std::clamp(static_cast<Index>(std::floor(share[l])), minRank, maxRank);
    assigned += ranks[l];
  }
  // Largest remainders; several passes if caps (or zero-importance layers) need them.
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
    const double fx = share[x] - std::floor(share[x]), fy = share[y] - std::floor(share[y]);
    if (fx != fy) return fx > fy;
    return importance[x] > importance[y];
  });
  while (assigned < budget)
    for (std::size_t i = 0; i < n && assigned < budget; ++i)
      if (ranks[order[i]] < maxRank) {
        ++ranks[order[i]];
        ++assigned;
      }
  while (assigned > budget)  // only through rounding of λ: take back from the smallest remainders
    for (std::size_t i = n; i-- > 0 && assigned > budget;)
      if (ranks[order[i]] > minRank) {
        --ranks[order[i]];
        --assigned;
      }
  return ranks;
}

}  // namespace lora::rank
