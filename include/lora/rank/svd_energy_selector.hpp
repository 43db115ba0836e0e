#pragma once
/// \file svd_energy_selector.hpp
/// \brief Rank from the energy of the layer's own delta s·B·A.

#include <algorithm>
#include <cmath>
#include <string>

#include <Eigen/Core>

#include "lora/error.hpp"
#include "lora/linalg/spectrum.hpp"
#include "lora/rank/decision.hpp"

namespace lora::rank {

/// Parameters of SvdEnergySelector.
struct SvdEnergySelectorOptions {
  Eigen::Index initialRank = 8;
  Eigen::Index minRank = 1;
  Eigen::Index maxRank = 64;
  double energy = 0.9;   ///< keep the smallest k with Σ_{i<=k} σ_i² >= energy · Σσ²
  Eigen::Index minChange = 1;  ///< ignore suggestions closer than this to the current rank
};

/// \brief Observes the spectrum of the layer's delta (Layer::spectrum(), from the factors) and
/// asks for k = clamp(energyRank(σ, energy), minRank, maxRank) when |k − r| >= minChange.
///
/// The delta of a rank-r layer has at most r singular values, so this rule can keep or shrink,
/// never grow: pair it with a growth signal (FullGradientSelector, SlopePlateau). Reason codes:
/// `energy_rank` (adjust), `energy_rank_unchanged`. PEFT's `convert_to_lora` uses the same energy
/// rule; linalg::energyRank defines it.
class SvdEnergySelector {
 public:
  using Options = SvdEnergySelectorOptions;

  explicit SvdEnergySelector(const Options& options = {}) : m_opt(options) {
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

  static std::string name() { return "svd_energy"; }

  /// \p sigma: the singular values of s·B·A (Layer::spectrum() cast to double).
  Decision observe(const Eigen::VectorXd& sigma) {
    const Eigen::Index k =
        std::clamp(linalg::energyRank(sigma, m_opt.energy), m_opt.minRank, m_opt.maxRank);
    if (std::abs(k - m_rank) >= m_opt.minChange) return {true, "energy_rank", k};
    return {false, "energy_rank_unchanged", m_rank};
  }

  Eigen::Index currentRank() const noexcept { return m_rank; }
  void setRank(Eigen::Index rank) {
    if (rank < 1) detail::fail("SvdEnergySelector::setRank", "expected a rank >= 1, got {}", rank);
    m_rank = rank;
  }

 private:
  Options m_opt;
  Eigen::Index m_rank = 8;
};

}  // namespace lora::rank
