#pragma once
/// \file svd_energy_selector.hpp
/// \brief Rank from the energy of the layer's own delta s·B·A.

#include <string>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"            // lora::Error, which these throw
#include "lora/linalg/spectrum.hpp"  // kept: callers use the spectrum rules through it
#include "lora/rank/decision.hpp"

namespace lora::rank {

/// Parameters of SvdEnergySelector.
struct SvdEnergySelectorOptions {
  Eigen::Index initialRank = 8;
  Eigen::Index minRank = 1;
  Eigen::Index maxRank = 64;
  double energy = 0.9;         ///< keep the smallest k with Σ_{i<=k} σ_i² >= energy · Σσ²
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

  explicit SvdEnergySelector(const Options& options = {});

  static std::string name() { return "svd_energy"; }

  /// \p sigma: the singular values of s·B·A (Layer::spectrum() cast to double).
  Decision observe(const Eigen::VectorXd& sigma);

  Eigen::Index currentRank() const noexcept { return m_rank; }
  void setRank(Eigen::Index rank);

 private:
  Options m_opt;
  Eigen::Index m_rank = 8;
};

}  // namespace lora::rank
