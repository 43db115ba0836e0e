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
    if (!(options.persistence > 0 && options.persistence <= 1))
      detail::fail(where, "expected persistence in (0, 1], got {}", options.persistence);
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
    const Eigen::Index m = std::min<Eigen::Index>(m_opt.maxStep, signal.outsideDirections.cols());
    if (m_previous.cols() > 0 && m_previous.rows() == signal.outsideDirections.rows()) {
      const Eigen::Index n = std::min(m, m_previous.cols());
      m_persistence.conservativeResize(n);
      for (Eigen::Index j = 1; j <= n; ++j) {
        const double phi = linalg::subspaceSimilarity(m_previous, signal.outsideDirections, j, j);
        m_persistence(j - 1) = m_pairs == 0 ? phi : m_opt.beta * m_persistence(j - 1) + (1 - m_opt.beta) * phi;
      }
      ++m_pairs;
    }
    m_previous = signal.outsideDirections.leftCols(m);
    ++m_seen;
    if (m_seen % m_opt.interval != 0) return {false, "not_decision_step", m_rank};
    if (m_outside <= m_opt.outsideThreshold) return {false, "gradient_inside_adapter", m_rank};
    Eigen::Index add = 0;
    for (Eigen::Index j = 0; j < m_persistence.size(); ++j)
      if (m_persistence(j) > m_opt.persistence) add = j + 1;
    if (add == 0) return {false, "no_persistent_direction", m_rank};
    if (m_rank >= m_opt.maxRank) return {false, "at_max_rank", m_rank};
    return {true, "gradient_outside_adapter", std::min(m_rank + add, m_opt.maxRank)};
  }

  Eigen::Index currentRank() const noexcept { return m_rank; }
  void setRank(Eigen::Index rank) {
    if (rank < 1)
      detail::fail("FullGradientSelector::setRank", "expected a rank >= 1, got {}", rank);
    if (rank != m_rank) {  // the adapter's subspace changed: the histories no longer apply
      m_seen = 0;
      m_pairs = 0;
      m_outside = 0;
      m_previous.resize(0, 0);
      m_persistence.resize(0);
    }
    m_rank = rank;
  }
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
