#pragma once
/// \file full_gradient_selector.hpp
/// \brief Grows the rank when the full-weight gradient keeps pointing outside the adapter.

#include <cstddef>
#include <string>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"            // lora::Error, which these throw
#include "lora/linalg/spectrum.hpp"  // kept: callers use the spectrum rules through it
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
  double persistence = 0.5;       ///< a direction counts when its smoothed similarity exceeds this
  Eigen::Index maxStep = 4;       ///< add at most this many directions at once
};

/// \brief The signal the article's gradient-informed rule lacks: the full-weight gradient
/// G = dY^T X (gradientSignal(), from X and dY), of which a rank-r adapter can only follow the
/// part inside col(B).
///
/// Two things must hold before it grows. First, a smoothed (EMA) share of ‖G‖² outside col(B)
/// above `outsideThreshold`: the adapter misses much of the gradient. Second, the missed
/// directions must persist. For j = 1..maxStep, the subspace similarity
/// φ(U_prev,j, U_now,j) = ‖U_prev,jᵀ U_now,j‖²/j of the leading j outside directions is compared
/// between consecutive observations and smoothed. Directions that belong to the task come back
/// each batch, so φ ≈ 1. Gradient noise points somewhere new each time, so φ ≈ j/out. The rank
/// grows by the largest j with smoothed φ above `persistence` (`gradient_outside_adapter`).
/// Otherwise the code is `gradient_inside_adapter` (little outside), `no_persistent_direction`
/// (outside energy that is only noise: training sits at its noise floor), `at_max_rank` or
/// `not_decision_step`. The histories restart when the rank changes. The selector only grows;
/// shrinking is SvdEnergySelector's job on the delta itself.
class FullGradientSelector {
 public:
  using Options = FullGradientSelectorOptions;

  explicit FullGradientSelector(const Options& options = {});

  static std::string name() { return "full_gradient"; }

  Decision observe(const GradientSignal& signal);

  Eigen::Index currentRank() const noexcept { return m_rank; }
  void setRank(Eigen::Index rank);
  /// The smoothed fraction of ‖G‖² outside col(B).
  double smoothedOutsideFraction() const noexcept { return m_outside; }
  /// Smoothed φ of the leading 1, 2, ... outside directions between consecutive observations.
  const Eigen::VectorXd& persistence() const noexcept { return m_persistence; }

 private:
  Options m_opt;
  Eigen::Index m_rank = 8;
  std::size_t m_seen = 0, m_pairs = 0;
  double m_outside = 0;
  Eigen::MatrixXd m_previous;
  Eigen::VectorXd m_persistence;
};

}  // namespace lora::rank
