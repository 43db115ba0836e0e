#pragma once
/// \file budget.hpp
/// \brief Layer-wise rank budgets: the original article's allocation, and one that meets the
/// budget exactly within per-layer bounds.

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include <Eigen/Core>

#include "lora/error.hpp"
#include "lora/linalg/spectrum.hpp"

namespace lora::rank {

using Index = Eigen::Index;

/// \brief The original article's layer importance (section 1.2, `recommend_layer_ranks`):
/// effective rank (#σ_i > 1% σ_1) · ln(1 + σ_1). 0 for an all-zero spectrum.
template <typename Derived>
double articleImportance(const Eigen::MatrixBase<Derived>& sigma) {
  const Index effective = linalg::thresholdRank(sigma, 0.01);  // validates the spectrum
  return static_cast<double>(effective) * std::log1p(static_cast<double>(sigma(0)));
}

}  // namespace lora::rank

namespace lora::detail {
inline void checkImportance(const char* where, const std::vector<double>& importance) {
  if (importance.empty()) fail(where, "expected at least one layer, got none");
  for (std::size_t i = 0; i < importance.size(); ++i)
    if (!(std::isfinite(importance[i]) && importance[i] >= 0.0))
      fail(where, "expected finite non-negative importances, got {} for layer {}", importance[i],
           i);
}
}  // namespace lora::detail

namespace lora::rank {

/// \brief The article's allocation, faithfully: shares w_l / Σw; layers in decreasing order of
/// importance (ties in input order) each get min(max(1, int(share · budget)), remaining), and
/// once nothing remains every further layer gets 1. **Flaw:** those extra 1s can make the total
/// exceed the budget, and rounding down can leave budget unused; use allocateExact() for a
/// budget that must hold. Ranks are returned in input order.
inline std::vector<Index> allocateArticle(const std::vector<double>& importance, Index budget) {
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

/// \brief Ranks proportional to importance that sum to \p budget exactly, each in
/// [minRank, maxRank].
///
/// Water-filling: find λ with Σ clamp(λ · w_l, minRank, maxRank) = budget (bisection; the sum
/// is monotone in λ), then round the clamped shares by largest remainders (ties: more important
/// first, then input order), never leaving [minRank, maxRank]. Layers of zero importance stay at
/// minRank unless the budget cannot be met otherwise; if all importances are zero the layers
/// share equally. Needs layers · minRank <= budget <= layers · maxRank. Ranks in input order.
inline std::vector<Index> allocateExact(const std::vector<double>& importance, Index budget,
                                        Index minRank, Index maxRank) {
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
