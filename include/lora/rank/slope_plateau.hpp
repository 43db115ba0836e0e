#pragma once
/// \file slope_plateau.hpp
/// \brief A loss-plateau detector that works: the least-squares slope of the recent losses,
/// tested against their own noise.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <deque>
#include <string>

#include <Eigen/Core>

#include "lora/error.hpp"
#include "lora/rank/decision.hpp"

namespace lora::rank {

/// Parameters of SlopePlateau.
struct SlopePlateauOptions {
  Eigen::Index initialRank = 8;
  Eigen::Index minRank = 2;
  Eigen::Index maxRank = 64;
  std::size_t window = 10;              ///< losses in one fit (>= 4); also the cool-down
  double minRelativeImprovement = 0.01; ///< improvement over a window that still counts
  double tCritical = 2.0;               ///< confidence multiplier on the slope's standard error
  double increaseFactor = 1.5;          ///< new rank = max(r + 1, int(r · factor)), capped
  /// Grow again only if the last growth paid: the plateau after it must sit at least
  /// minRelativeImprovement below the plateau before it. Otherwise the loss is at its floor
  /// (noise, or the task needs no more rank) and growth stops (`growth_did_not_help`) until the
  /// loss is seen improving again.
  bool requirePayoff = true;
};

/// The least-squares line through the last losses and its uncertainty.
struct SlopeFit {
  double slope = 0;           ///< per step
  double standardError = 0;   ///< of the slope, from the residuals (n − 2 degrees of freedom)
  double mean = 0;            ///< of the losses
};

/// Fits loss_t = a + b·t to \p y (t = 0..n−1, n >= 3).
template <typename Derived>
SlopeFit fitSlope(const Eigen::DenseBase<Derived>& y) {
  const Eigen::Index n = y.size();
  if (n < 3) detail::fail("fitSlope", "expected at least 3 losses, got {}", n);
  const Eigen::ArrayXd v = y.derived().template cast<double>().array();
  const Eigen::ArrayXd t = Eigen::ArrayXd::LinSpaced(n, 0.0, static_cast<double>(n - 1));
  const double tMean = t.mean(), yMean = v.mean();
  const double sxx = (t - tMean).square().sum();
  const double slope = ((t - tMean) * (v - yMean)).sum() / sxx;
  const Eigen::ArrayXd residual = v - (yMean + slope * (t - tMean));
  const double s2 = residual.square().sum() / static_cast<double>(n - 2);
  return {slope, std::sqrt(s2 / sxx), yMean};
}

/// \brief Grows the rank when the loss has stopped improving, and only then.
///
/// Over the last `window` losses, with the fitted slope b and its standard error se, the
/// improvement over the window is −b·(window − 1), known to within ±tCritical·se·(window − 1):
/// - its upper bound below minRelativeImprovement·|mean loss|: a plateau
///   (`plateau_increase_rank`, `at_max_rank` or `growth_did_not_help`), after which the next `window` losses are a
///   cool-down (`cooldown`);
/// - its lower bound above that: `improving`;
/// - checked first, the loss rising beyond its noise (b > tCritical·se) by more than that amount:
///   `loss_increasing` (a learning-rate problem, not a rank problem: no adjustment);
/// - otherwise `no_clear_signal`; fewer than `window` losses: `insufficient_history`.
/// Unlike the article's rule, zero differences and noise do not hide a plateau: noise widens the
/// interval, so a noisy loss is called a plateau only once its slope is pinned near zero.
/// A plateau is also where training ends up at its noise floor, where more rank cannot help; with
/// `requirePayoff` a growth that did not lower the next plateau stops further growth.
class SlopePlateau {
 public:
  using Options = SlopePlateauOptions;

  explicit SlopePlateau(const Options& options = {}) : m_opt(options) {
    constexpr const char* where = "SlopePlateau::SlopePlateau";
    if (options.minRank < 1 || options.maxRank < options.minRank)
      detail::fail(where, "expected 1 <= minRank <= maxRank, got minRank {} and maxRank {}",
                   options.minRank, options.maxRank);
    if (options.initialRank < 1)
      detail::fail(where, "expected initialRank >= 1, got {}", options.initialRank);
    if (options.window < 4) detail::fail(where, "expected window >= 4, got {}", options.window);
    if (!(std::isfinite(options.minRelativeImprovement) && options.minRelativeImprovement >= 0))
      detail::fail(where, "expected a finite minRelativeImprovement >= 0, got {}",
                   options.minRelativeImprovement);
    if (!(std::isfinite(options.tCritical) && options.tCritical >= 0))
      detail::fail(where, "expected a finite tCritical >= 0, got {}", options.tCritical);
    if (!(std::isfinite(options.increaseFactor) && options.increaseFactor >= 1))
      detail::fail(where, "expected a finite increaseFactor >= 1, got {}", options.increaseFactor);
    m_rank = options.initialRank;
  }

  static std::string name() { return "slope_plateau"; }

  Decision observe(double loss) {
    if (!std::isfinite(loss))
      detail::fail("SlopePlateau::observe", "expected a finite loss, got {}", loss);
    m_losses.push_back(loss);
    if (m_losses.size() > m_opt.window) m_losses.pop_front();
    if (m_cooldown > 0) {
      --m_cooldown;
      return {false, "cooldown", m_rank};
    }
    if (m_losses.size() < m_opt.window) return {false, "insufficient_history", m_rank};
    m_fit = fitSlope(window());
    const double span = static_cast<double>(m_opt.window - 1);
    const double improvement = -m_fit.slope * span;
    const double margin = m_opt.tCritical * m_fit.standardError * span;
    const double needed = m_opt.minRelativeImprovement * std::abs(m_fit.mean);
    if (m_fit.slope > m_opt.tCritical * m_fit.standardError && -improvement > needed)
      return {false, "loss_increasing", m_rank};
    if (improvement + margin < needed) {
      if (m_rank >= m_opt.maxRank) return {false, "at_max_rank", m_rank};
      if (m_opt.requirePayoff && m_stopped) return {false, "growth_did_not_help", m_rank};
      if (m_opt.requirePayoff && m_grown &&
          m_plateauBefore - m_fit.mean < m_opt.minRelativeImprovement * std::abs(m_plateauBefore)) {
        m_stopped = true;
        return {false, "growth_did_not_help", m_rank};
      }
      m_grown = true;
      m_plateauBefore = m_fit.mean;
      const auto scaled =
          static_cast<Eigen::Index>(static_cast<double>(m_rank) * m_opt.increaseFactor);
      m_cooldown = m_opt.window;
      return {true, "plateau_increase_rank", std::min(std::max(m_rank + 1, scaled), m_opt.maxRank)};
    }
    if (improvement - margin > needed) {
      m_stopped = false;
      return {false, "improving", m_rank};
    }
    return {false, "no_clear_signal", m_rank};
  }

  Eigen::Index currentRank() const noexcept { return m_rank; }
  void setRank(Eigen::Index rank) {
    if (rank < 1) detail::fail("SlopePlateau::setRank", "expected a rank >= 1, got {}", rank);
    m_rank = rank;
  }
  /// The last fit (zero until a full window was seen).
  const SlopeFit& lastFit() const noexcept { return m_fit; }
  const Options& options() const noexcept { return m_opt; }

 private:
  Eigen::ArrayXd window() const {
    Eigen::ArrayXd y(static_cast<Eigen::Index>(m_losses.size()));
    std::copy(m_losses.begin(), m_losses.end(), y.data());
    return y;
  }

  Options m_opt;
  Eigen::Index m_rank = 8;
  std::deque<double> m_losses;
  std::size_t m_cooldown = 0;
  SlopeFit m_fit;
  bool m_grown = false, m_stopped = false;
  double m_plateauBefore = 0;
};

}  // namespace lora::rank
