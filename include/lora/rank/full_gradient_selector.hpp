#pragma once
/// \file full_gradient_selector.hpp
/// \brief Grows the rank when the full-weight gradient keeps pointing outside the adapter.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

#include <Eigen/Core>

#include "lora/error.hpp"
#include "lora/linalg/spectrum.hpp"
#include "lora/rank/decision.hpp"
#include "lora/rank/gradient_signal.hpp"

namespace lora::rank {

/// Parameters of FullGradientSelector.
struct FullGradientSelectorOptions {
  Eigen::Index initialRank = 8;
  Eigen::Index maxRank = 64;
  std::size_t interval = 10;      ///< decide every interval-th observation
  double beta = 0.8;              ///< EMA weight of the past for the outside fraction
  double outsideThreshold = 0.5;  ///< grow when the smoothed outside fraction exceeds this
  double energy = 0.9;            ///< directions to add: energyRank(σ_outside, energy)
  Eigen::Index maxStep = 4;       ///< add at most this many directions at once
};

/// \brief The signal the article's gradient-informed rule lacks: the full-weight gradient
/// G = dY^T X (gradientSignal(), from X and dY), of which a rank-r adapter can only follow the
/// part inside col(B).
///
/// Each observation updates an EMA of the fraction of ‖G‖² outside col(B). Every `interval`-th
/// observation, when that EMA exceeds `outsideThreshold`, it asks for
/// r + min(maxStep, energyRank(σ((I − P_B) G), energy)), capped at maxRank
/// (`gradient_outside_adapter`); otherwise `gradient_inside_adapter`, `at_max_rank`, or
/// `not_decision_step`. It only grows: shrinking is SvdEnergySelector's job on the delta itself.
/// A fresh adapter (B = 0) has everything outside; that is honest: its B is about to move, so
/// the first decision waits `interval` observations.
class FullGradientSelector {
 public:
  using Options = FullGradientSelectorOptions;

  explicit FullGradientSelector(const Options& options = {}) : m_opt(options) {
    constexpr const char* where = "FullGradientSelector::FullGradientSelector";
    if (options.initialRank < 1 || options.maxRank < 1)
      detail::fail(where, "expected initialRank and maxRank >= 1, got {} and {}",
                   options.initialRank, options.maxRank);
    if (options.interval < 1) detail::fail(where, "expected interval >= 1, got 0");
    if (!(options.beta >= 0 && options.beta < 1))
      detail::fail(where, "expected beta in [0, 1), got {}", options.beta);
    if (!(options.outsideThreshold >= 0 && options.outsideThreshold <= 1))
      detail::fail(where, "expected outsideThreshold in [0, 1], got {}", options.outsideThreshold);
    if (!(options.energy > 0 && options.energy <= 1))
      detail::fail(where, "expected energy in (0, 1], got {}", options.energy);
    if (options.maxStep < 1) detail::fail(where, "expected maxStep >= 1, got {}", options.maxStep);
    m_rank = options.initialRank;
  }

  static std::string name() { return "full_gradient"; }

  Decision observe(const GradientSignal& signal) {
    if (!std::isfinite(signal.outsideColumnFraction))
      detail::fail("FullGradientSelector::observe", "expected a finite outside fraction, got {}",
                   signal.outsideColumnFraction);
    m_outside = m_seen == 0 ? signal.outsideColumnFraction
                            : m_opt.beta * m_outside + (1 - m_opt.beta) * signal.outsideColumnFraction;
    ++m_seen;
    if (m_seen % m_opt.interval != 0) return {false, "not_decision_step", m_rank};
    if (m_outside <= m_opt.outsideThreshold) return {false, "gradient_inside_adapter", m_rank};
    if (m_rank >= m_opt.maxRank) return {false, "at_max_rank", m_rank};
    const Eigen::Index add =
        signal.outsideSpectrum.size() == 0
            ? 1
            : std::min(m_opt.maxStep, linalg::energyRank(signal.outsideSpectrum, m_opt.energy));
    return {true, "gradient_outside_adapter", std::min(m_rank + add, m_opt.maxRank)};
  }

  Eigen::Index currentRank() const noexcept { return m_rank; }
  void setRank(Eigen::Index rank) {
    if (rank < 1)
      detail::fail("FullGradientSelector::setRank", "expected a rank >= 1, got {}", rank);
    m_rank = rank;
  }
  /// The smoothed fraction of ‖G‖² outside col(B).
  double smoothedOutsideFraction() const noexcept { return m_outside; }

 private:
  Options m_opt;
  Eigen::Index m_rank = 8;
  std::size_t m_seen = 0;
  double m_outside = 0;
};

}  // namespace lora::rank
