#pragma once
/// \file budget.hpp
/// \brief Layer-wise rank budgets: the original article's allocation, and one that meets the
/// budget exactly within per-layer bounds.

#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"            // lora::Error, which these throw
#include "lora/linalg/spectrum.hpp"  // kept: callers use the spectrum rules through it

namespace lora::detail {
/// articleImportance() on the spectrum in double, compiled in liblorapp (src/rank/budget.cpp).
double articleImportanceDouble(const Eigen::Ref<const Eigen::VectorXd>& sigma);
}  // namespace lora::detail

namespace lora::rank {

using Index = Eigen::Index;

/// \brief The original article's layer importance (section 1.2, `recommend_layer_ranks`):
/// effective rank (#σ_i > 1% σ_1) · ln(1 + σ_1). 0 for an all-zero spectrum.
template <typename Derived>
double articleImportance(const Eigen::MatrixBase<Derived>& sigma) {
  return detail::articleImportanceDouble(sigma.template cast<double>());
}

}  // namespace lora::rank

namespace lora::detail {
void checkImportance(const char* where, const std::vector<double>& importance);
}  // namespace lora::detail

namespace lora::rank {

/// \brief The article's allocation, faithfully: shares w_l / Σw; layers in decreasing order of
/// importance (ties in input order) each get min(max(1, int(share · budget)), remaining), and
/// once nothing remains every further layer gets 1. **Flaw:** those extra 1s can make the total
/// exceed the budget, and rounding down can leave budget unused; use allocateExact() for a
/// budget that must hold. Ranks are returned in input order.
std::vector<Index> allocateArticle(const std::vector<double>& importance, Index budget);

/// \brief Ranks proportional to importance that sum to \p budget exactly, each in
/// [minRank, maxRank].
///
/// Water-filling: find λ with Σ clamp(λ · w_l, minRank, maxRank) = budget (bisection; the sum
/// is monotone in λ), then round the clamped shares by largest remainders (ties: more important
/// first, then input order), never leaving [minRank, maxRank]. Layers of zero importance stay at
/// minRank unless the budget cannot be met otherwise; if all importances are zero the layers
/// share equally. Needs layers · minRank <= budget <= layers · maxRank. Ranks in input order.
std::vector<Index> allocateExact(const std::vector<double>& importance, Index budget, Index minRank,
                                 Index maxRank);

}  // namespace lora::rank
