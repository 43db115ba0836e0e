#pragma once
/// \file article_gradient.hpp
/// \brief The article's two gradient-driven rank rules: the gradient-based selector (section
/// 1.3) and the gradient-informed adjuster (section 3.3), faithful.

#include <cmath>
#include <cstddef>
#include <deque>
#include <string>

#include <Eigen/Core>

#include "lora/error.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/linalg/spectrum.hpp"
#include "lora/rank/decision.hpp"

namespace lora::rank {

/// Parameters of ArticleGradientBased; the defaults are the article's.
struct ArticleGradientBasedOptions {
  Eigen::Index initialRank = 8;
  Eigen::Index maxRank = 64;
  std::size_t adjustmentFrequency = 100;
  double sensitivityThreshold = 0.1;
  double energy = 0.95;  ///< the article's 95% energy rank
};

/// \brief The article's `GradientBasedRankSelector` (section 1.3), observing σ of the gradient.
///
/// Every observation records ‖G‖_F (= ‖σ‖). Every `adjustmentFrequency`-th step the suggested
/// rank is min(energyRank(σ, 0.95), maxRank); once 2·frequency norms are known, the mean of the
/// last window against the window before, |recent − previous| / previous above
/// `sensitivityThreshold`, grows it by 2 (capped at maxRank), else shrinks it by 1 (at least 1).
/// A target different from the current rank is returned as an adjustment.
/// Reason codes: `not_adjustment_step`, `gradient_changing_increase_rank`,
/// `gradient_stable_decrease_rank`, `energy_rank` (not enough history for the comparison),
/// `rank_unchanged`. Feed it gradientSpectrum(X, dY) or the σ of any gradient matrix.
class ArticleGradientBased {
 public:
  using Options = ArticleGradientBasedOptions;

  explicit ArticleGradientBased(const Options& options = {}) : m_opt(options) {
    constexpr const char* where = "ArticleGradientBased::ArticleGradientBased";
    if (options.initialRank < 1 || options.maxRank < 1)
      detail::fail(where, "expected initialRank and maxRank >= 1, got {} and {}",
                   options.initialRank, options.maxRank);
    if (options.adjustmentFrequency < 1)
      detail::fail(where, "expected adjustmentFrequency >= 1, got 0");
    if (!(std::isfinite(options.sensitivityThreshold) && options.sensitivityThreshold >= 0))
      detail::fail(where, "expected a finite sensitivityThreshold >= 0, got {}",
                   options.sensitivityThreshold);
    if (!(options.energy > 0 && options.energy <= 1))
      detail::fail(where, "expected energy in (0, 1], got {}", options.energy);
    m_rank = options.initialRank;
  }

  static std::string name() { return "article_gradient_based"; }

  /// One step with the singular values \p sigma of the step's gradient.
  Decision observe(const Eigen::VectorXd& sigma) {
    linalg::energyRank(sigma, m_opt.energy);  // validates: finite, non-negative, decreasing
    ++m_step;
    m_norms.push_back(sigma.norm());
    if (m_norms.size() > 2 * m_opt.adjustmentFrequency) m_norms.pop_front();
    if (m_step % m_opt.adjustmentFrequency != 0) return {false, "not_adjustment_step", m_rank};
    const Eigen::Index suggested = std::min(linalg::energyRank(sigma, m_opt.energy), m_opt.maxRank);
    Eigen::Index target = suggested;
    std::string reason = "energy_rank";
    const std::size_t f = m_opt.adjustmentFrequency;
    if (m_norms.size() >= 2 * f) {
      double recent = 0, previous = 0;
      for (std::size_t i = 0; i < f; ++i) {
        previous += m_norms[i];
        recent += m_norms[f + i];
      }
      recent /= static_cast<double>(f);
      previous /= static_cast<double>(f);
      const double change = std::abs(recent - previous) / previous;  // the article divides as is
      if (change > m_opt.sensitivityThreshold) {
        target = std::min(suggested + 2, m_opt.maxRank);
        reason = "gradient_changing_increase_rank";
      } else {
        target = std::max<Eigen::Index>(suggested - 1, 1);
        reason = "gradient_stable_decrease_rank";
      }
    }
    if (target != m_rank) return {true, reason, target};
    return {false, "rank_unchanged", m_rank};
  }

  Eigen::Index currentRank() const noexcept { return m_rank; }
  void setRank(Eigen::Index rank) {
    if (rank < 1) detail::fail("ArticleGradientBased::setRank", "expected a rank >= 1, got {}", rank);
    m_rank = rank;
  }
  std::size_t step() const noexcept { return m_step; }

 private:
  Options m_opt;
  Eigen::Index m_rank = 8;
  std::size_t m_step = 0;
  std::deque<double> m_norms;  // the last 2·frequency norms (all the article's rule reads)
};

/// The gradients of one step of a LoRA layer: dL/dA (r x in) and dL/dB (out x r).
struct FactorGradients {
  Eigen::Ref<const Eigen::MatrixXd> gradA;
  Eigen::Ref<const Eigen::MatrixXd> gradB;
};

/// Parameters of ArticleGradientInformed; the defaults are the article's.
struct ArticleGradientInformedOptions {
  Eigen::Index initialRank = 8;
  std::size_t adjustmentInterval = 100;
  double rankChangeThreshold = 0.1;
};

/// \brief The article's `GradientInformedRankAdjuster` (section 3.3).
///
/// Each observation records ‖grad_A‖ and ‖grad_B‖ (the last `adjustmentInterval` of each). On
/// every `adjustmentInterval`-th step: erank = the 95% energy rank of grad_B·grad_A (from the
/// factors, never the out x in product); consistency = 1 / (1 + std of the last 10 norms of grad_A
/// + std of the last 10 of grad_B) (population std; 1 with a single norm); erank > 1.2·r and
/// consistency > 0.8 suggests min(erank, r + 4); erank < 0.6·r and consistency > 0.9 suggests
/// max(erank, r − 2); the suggestion is returned when |suggested − r| / r > rankChangeThreshold.
/// Reason codes: `not_adjustment_step`, `gradient_rank_increase`, `gradient_rank_decrease`,
/// `change_below_threshold`.
///
/// **Its flaw**: grad_B·grad_A has rank <= r, so erank <= r < 1.2·r and the rule can never ask
/// for more rank than it has; it only shrinks. gradientSignal() and FullGradientSelector read the
/// full-weight gradient instead.
class ArticleGradientInformed {
 public:
  using Options = ArticleGradientInformedOptions;

  explicit ArticleGradientInformed(const Options& options = {}) : m_opt(options) {
    constexpr const char* where = "ArticleGradientInformed::ArticleGradientInformed";
    if (options.initialRank < 1)
      detail::fail(where, "expected initialRank >= 1, got {}", options.initialRank);
    if (options.adjustmentInterval < 1)
      detail::fail(where, "expected adjustmentInterval >= 1, got 0");
    if (!(std::isfinite(options.rankChangeThreshold) && options.rankChangeThreshold >= 0))
      detail::fail(where, "expected a finite rankChangeThreshold >= 0, got {}",
                   options.rankChangeThreshold);
    m_rank = options.initialRank;
  }

  static std::string name() { return "article_gradient_informed"; }

  /// One step (the article's collect_gradient_info, then suggest_rank_adjustment).
  Decision observe(const FactorGradients& g) {
    constexpr const char* where = "ArticleGradientInformed::observe";
    if (g.gradA.rows() != g.gradB.cols() || g.gradA.rows() < 1)
      detail::fail(where, "expected grad_A (r x in) and grad_B (out x r) with the same r, got "
                          "{}x{} and {}x{}", g.gradA.rows(), g.gradA.cols(), g.gradB.rows(),
                   g.gradB.cols());
    if (!g.gradA.allFinite() || !g.gradB.allFinite())
      detail::fail(where, "expected finite gradients, got NaN or Inf");
    push(m_normsA, g.gradA.norm());
    push(m_normsB, g.gradB.norm());
    ++m_step;
    if (m_step % m_opt.adjustmentInterval != 0) return {false, "not_adjustment_step", m_rank};
    const Eigen::VectorXd sigma =
        linalg::FactoredSVD<double>(g.gradB, g.gradA, 1.0, 0).singularValues();
    m_lastEffectiveRank95 = linalg::energyRank(sigma, 0.95);
    m_lastEffectiveRank90 = linalg::energyRank(sigma, 0.90);
    m_lastConsistency = consistency();
    const Eigen::Index erank = m_lastEffectiveRank95;
    const double r = static_cast<double>(m_rank);
    Eigen::Index suggested = m_rank;
    std::string reason = "change_below_threshold";
    if (static_cast<double>(erank) > r * 1.2 && m_lastConsistency > 0.8) {
      suggested = std::min(erank, m_rank + 4);
      reason = "gradient_rank_increase";
    } else if (static_cast<double>(erank) < r * 0.6 && m_lastConsistency > 0.9) {
      suggested = std::max(erank, m_rank - 2);
      reason = "gradient_rank_decrease";
    }
    const double change = std::abs(static_cast<double>(suggested - m_rank)) / r;
    if (change > m_opt.rankChangeThreshold) return {true, reason, suggested};
    return {false, "change_below_threshold", m_rank};
  }

  Eigen::Index currentRank() const noexcept { return m_rank; }
  void setRank(Eigen::Index rank) {
    if (rank < 1)
      detail::fail("ArticleGradientInformed::setRank", "expected a rank >= 1, got {}", rank);
    m_rank = rank;
  }
  /// The article's analysis at the last adjustment step.
  Eigen::Index lastEffectiveRank90() const noexcept { return m_lastEffectiveRank90; }
  Eigen::Index lastEffectiveRank95() const noexcept { return m_lastEffectiveRank95; }
  double lastConsistency() const noexcept { return m_lastConsistency; }

 private:
  void push(std::deque<double>& d, double v) const {
    d.push_back(v);
    if (d.size() > m_opt.adjustmentInterval) d.pop_front();
  }
  static double tailStd(const std::deque<double>& d) {
    const std::size_t n = std::min<std::size_t>(10, d.size());
    double mean = 0, sq = 0;
    for (std::size_t i = d.size() - n; i < d.size(); ++i) mean += d[i];
    mean /= static_cast<double>(n);
    for (std::size_t i = d.size() - n; i < d.size(); ++i) sq += (d[i] - mean) * (d[i] - mean);
    return std::sqrt(sq / static_cast<double>(n));
  }
  double consistency() const {
    if (m_normsA.size() <= 1) return 1.0;
    return 1.0 / (1.0 + tailStd(m_normsA) + tailStd(m_normsB));
  }

  Options m_opt;
  Eigen::Index m_rank = 8;
  std::size_t m_step = 0;
  std::deque<double> m_normsA, m_normsB;
  Eigen::Index m_lastEffectiveRank90 = 0, m_lastEffectiveRank95 = 0;
  double m_lastConsistency = 1.0;
};

}  // namespace lora::rank
