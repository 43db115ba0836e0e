#include "lora/rank/svd_energy_selector.hpp"

#include <algorithm>
#include <cmath>

#include "lora/error.hpp"
#include "lora/linalg/spectrum.hpp"

namespace lora::rank {

SvdEnergySelector::SvdEnergySelector(const Options& options) : m_opt(options) {
  constexpr const char* where = "SvdEnergySelector::SvdEnergySelector";
  if (options.minRank < 1 || options.maxRank < options.minRank)
    detail::fail(where, "expected 1 <= minRank <= maxRank, got minRank {} and maxRank {}",
                 options.minRank, options.maxRank);
  if (options.initialRank < 1)
    detail::fail(where, "expected initialRank >= 1, got {}", options.initialRank);
  if (!(options.energy > 0 && options.energy <= 1))
    detail::fail(where, "expected energy in (0, 1], got {}", options.energy);
  if (options.minChange < 1)
    detail::fail(where, "expected minChange >= 1, got {}", options.minChange);
  m_rank = options.initialRank;
}

Decision SvdEnergySelector::observe(const Eigen::VectorXd& sigma) {
  const Eigen::Index k =
      std::clamp(linalg::energyRank(sigma, m_opt.energy), m_opt.minRank, m_opt.maxRank);
  if (std::abs(k - m_rank) >= m_opt.minChange) return {true, "energy_rank", k};
  return {false, "energy_rank_unchanged", m_rank};
}

void SvdEnergySelector::setRank(Eigen::Index rank) {
  if (rank < 1) detail::fail("SvdEnergySelector::setRank", "expected a rank >= 1, got {}", rank);
  m_rank = rank;
}

}  // namespace lora::rank
