#pragma once
/// \file loss_plateau.hpp
/// \brief The article's loss-plateau rank adjuster (section 3.2), faithful, flaw included.

#include <cmath>
#include <algorithm>
#include <cstddef>
#include <limits>
#include <deque>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "lora/error.hpp"
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
inline LossTrend articleLossTrend(const std::vector<double>& losses) {
  if (losses.size() < 3) return LossTrend::InsufficientData;
  const std::size_t n = losses.size() - 1;
  Eigen::ArrayXd d(static_cast<Eigen::Index>(n));
  for (std::size_t i = 0; i < n; ++i) d(static_cast<Eigen::Index>(i)) = losses[i + 1] - losses[i];
  const double positive = static_cast<double>((d > 0).count());
  const double negative = static_cast<double>((d < 0).count());
  if (positive > static_cast<double>(n) * 0.7) return LossTrend::Increasing;
  if (negative > static_cast<double>(n) * 0.7) return LossTrend::Decreasing;
  const double mean = d.mean();
  const double std = std::sqrt((d - mean).square().mean());
  if (std > d.abs().mean()) return LossTrend::Oscillating;
  return LossTrend::Plateau;
}

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

  explicit ArticleLossPlateau(const Options& options = {}) : m_opt(options) {
    constexpr const char* where = "ArticleLossPlateau::ArticleLossPlateau";
    if (options.minRank < 1 || options.maxRank < options.minRank)
      detail::fail(where, "expected 1 <= minRank <= maxRank, got minRank {} and maxRank {}",
                   options.minRank, options.maxRank);
    if (options.initialRank < 1)
      detail::fail(where, "expected initialRank >= 1, got {}", options.initialRank);
    if (options.patience < 1) detail::fail(where, "expected patience >= 1, got 0");
    if (options.historyLength < 1) detail::fail(where, "expected historyLength >= 1, got 0");
    if (!std::isfinite(options.improvementThreshold))
      detail::fail(where, "expected a finite improvementThreshold, got {}",
                   options.improvementThreshold);
    if (!(std::isfinite(options.increaseFactor) && options.increaseFactor > 0) ||
        !(std::isfinite(options.decreaseFactor) && options.decreaseFactor > 0))
      detail::fail(where, "expected positive finite factors, got increase {} and decrease {}",
                   options.increaseFactor, options.decreaseFactor);
    m_rank = options.initialRank;
  }

  static std::string name() { return "article_loss_plateau"; }

  Decision observe(double loss) {
    if (!std::isfinite(loss))
      detail::fail("ArticleLossPlateau::observe", "expected a finite loss, got {}", loss);
    m_losses.push_back(loss);
    if (m_losses.size() > m_opt.historyLength) m_losses.pop_front();
    if (loss < m_best - m_opt.improvementThreshold) {
      m_best = loss;
      m_noImprovement = 0;
      return {false, "loss_improved", m_rank};
    }
    ++m_noImprovement;
    if (m_noImprovement >= m_opt.patience) return decide();
    return {false, "no_adjustment_needed", m_rank};
  }

  Eigen::Index currentRank() const noexcept { return m_rank; }
  /// The caller applied \p rank (the article's `update_rank`).
  void setRank(Eigen::Index rank) {
    if (rank < 1) detail::fail("ArticleLossPlateau::setRank", "expected a rank >= 1, got {}", rank);
    m_rank = rank;
  }
  double bestLoss() const noexcept { return m_best; }
  std::size_t stepsWithoutImprovement() const noexcept { return m_noImprovement; }
  const Options& options() const noexcept { return m_opt; }
  /// The trend label of the last `patience` losses, as the article's decision sees it.
  LossTrend recentTrend() const { return articleLossTrend(recent()); }

 private:
  std::vector<double> recent() const {
    const std::size_t n = std::min(m_opt.patience, m_losses.size());
    return {m_losses.end() - static_cast<std::ptrdiff_t>(n), m_losses.end()};
  }

  Decision decide() {
    if (m_losses.size() < m_opt.patience) return {false, "insufficient_history", m_rank};
    const std::vector<double> last = recent();
    const LossTrend trend = articleLossTrend(last);
    const Eigen::Map<const Eigen::ArrayXd> x(last.data(), static_cast<Eigen::Index>(last.size()));
    const double variance = (x - x.mean()).square().mean();  // np.var
    if (trend == LossTrend::Plateau && variance < 0.001) {
      if (m_rank < m_opt.maxRank) {
        const auto grown = static_cast<Eigen::Index>(static_cast<double>(m_rank) * m_opt.increaseFactor);
        m_noImprovement = 0;
        return {true, "plateau_increase_rank", std::min(grown, m_opt.maxRank)};
      }
    } else if (trend == LossTrend::Oscillating && variance > 0.01) {
      if (m_rank > m_opt.minRank) {
        const auto shrunk = static_cast<Eigen::Index>(static_cast<double>(m_rank) * m_opt.decreaseFactor);
        m_noImprovement = 0;
        return {true, "oscillating_decrease_rank", std::max(shrunk, m_opt.minRank)};
      }
    }
    return {false, "no_clear_signal", m_rank};
  }

  Options m_opt;
  Eigen::Index m_rank = 8;
  std::deque<double> m_losses;
  double m_best = std::numeric_limits<double>::infinity();
  std::size_t m_noImprovement = 0;
};

}  // namespace lora::rank
