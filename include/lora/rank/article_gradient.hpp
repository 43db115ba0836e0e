#pragma once
/// \file article_gradient.hpp
/// \brief The article's two gradient-driven rank rules: the gradient-based selector (section
/// 1.3) and the gradient-informed adjuster (section 3.3), faithful.

#include <cstddef>
#include <deque>
#include <string>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"            // lora::Error, which these throw
#include "lora/linalg/spectrum.hpp"  // kept: callers use the spectrum rules through it
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

  explicit ArticleGradientBased(const Options& options = {});

  static std::string name() { return "article_gradient_based"; }

  /// One step with the singular values \p sigma of the step's gradient.
  Decision observe(const Eigen::VectorXd& sigma);

  Eigen::Index currentRank() const noexcept { return m_rank; }
  void setRank(Eigen::Index rank);
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

  explicit ArticleGradientInformed(const Options& options = {});

  static std::string name() { return "article_gradient_informed"; }

  /// One step (the article's collect_gradient_info, then suggest_rank_adjustment).
  Decision observe(const FactorGradients& g);

  Eigen::Index currentRank() const noexcept { return m_rank; }
  void setRank(Eigen::Index rank);
  /// The article's analysis at the last adjustment step.
  Eigen::Index lastEffectiveRank90() const noexcept { return m_lastEffectiveRank90; }
  Eigen::Index lastEffectiveRank95() const noexcept { return m_lastEffectiveRank95; }
  double lastConsistency() const noexcept { return m_lastConsistency; }

 private:
  void push(std::deque<double>& d, double v) const;
  static double tailStd(const std::deque<double>& d);
  double consistency() const;

  Options m_opt;
  Eigen::Index m_rank = 8;
  std::size_t m_step = 0;
  std::deque<double> m_normsA, m_normsB;
  Eigen::Index m_lastEffectiveRank90 = 0, m_lastEffectiveRank95 = 0;
  double m_lastConsistency = 1.0;
};

}  // namespace lora::rank
