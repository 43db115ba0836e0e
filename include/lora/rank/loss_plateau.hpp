#pragma once
/// \file loss_plateau.hpp
/// \brief The article's loss-plateau rank adjuster (section 3.2), faithful, flaw included.

#include <cstddef>
#include <deque>
#include <limits>
#include <string>
#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"  // lora::Error, which these throw
#include "lora/rank/decision.hpp"

namespace lora::rank {

/// Parameters of ArticleLossPlateau; the defaults are the article's.
struct ArticleLossPlateauOptions {
  Eigen::Index initialRank = 8;
  Eigen::Index minRank = 2;
  Eigen::Index maxRank = 64;
  std::size_t patience = 10;
  double improvementThreshold = 0.01;
  std::size_t historyLength = 50;
  double increaseFactor = 1.5;
  double decreaseFactor = 0.8;
};

/// The article's loss trend labels (`_analyze_loss_trend`).
enum class LossTrend { InsufficientData, Increasing, Decreasing, Oscillating, Plateau };

/// The article's `_analyze_loss_trend` on \p losses: from the first differences d, more than 70%
/// positive is increasing, more than 70% negative decreasing, std(d) > mean|d| oscillating (std
/// with the population divisor, as numpy), else plateau; fewer than 3 losses: insufficient data.
LossTrend articleLossTrend(const std::vector<double>& losses);

/// \brief The article's `LossBasedRankAdjuster` (section 3.2), step for step.
///
/// Each observe(loss): the loss joins a history of at most historyLength; if
/// `loss < best − improvementThreshold` (in double, as the article) the best is updated and the
/// counter reset (`loss_improved`); otherwise the counter grows and, once it reaches patience,
/// the last `patience` losses decide: trend plateau with population variance < 0.001 grows the
/// rank to min(int(r · increaseFactor), maxRank) (`plateau_increase_rank`); trend oscillating with
/// variance > 0.01 shrinks it to max(int(r · decreaseFactor), minRank)
/// (`oscillating_decrease_rank`); the counter resets on an adjustment. Other codes:
/// `no_adjustment_needed`, `insufficient_history`, `no_clear_signal`.
///
/// **Its flaw**, kept on purpose: on a near-flat plateau most first differences are 0, so
/// std(d) > mean|d| and the window is called "oscillating" (with a variance far below 0.01), and
/// nothing is ever adjusted — the article's own example never adjusts. See SlopePlateau.
/// A NaN or infinite loss is a lora::Error (the article would silently never improve again).
class ArticleLossPlateau {
 public:
  using Options = ArticleLossPlateauOptions;

  explicit ArticleLossPlateau(const Options& options = {});

  static std::string name() { return "article_loss_plateau"; }

  Decision observe(double loss);

  Eigen::Index currentRank() const noexcept { return m_rank; }
  /// The caller applied \p rank (the article's `update_rank`).
  void setRank(Eigen::Index rank);
  double bestLoss() const noexcept { return m_best; }
  std::size_t stepsWithoutImprovement() const noexcept { return m_noImprovement; }
  const Options& options() const noexcept { return m_opt; }
  /// The trend label of the last `patience` losses, as the article's decision sees it.
  LossTrend recentTrend() const;

 private:
  std::vector<double> recent() const;
  Decision decide();

  Options m_opt;
  Eigen::Index m_rank = 8;
  std::deque<double> m_losses;
  double m_best = std::numeric_limits<double>::infinity();
  std::size_t m_noImprovement = 0;
};

}  // namespace lora::rank
