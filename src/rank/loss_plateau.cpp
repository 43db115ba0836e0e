#include "lora/rank/loss_plateau.hpp"

#include <algorithm>
#include <cmath>

#include "lora/error.hpp"

namespace lora::rank {

LossTrend articleLossTrend(const std::vector<double>& losses) {
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

ArticleLossPlateau::ArticleLossPlateau(const Options& options) : m_opt(options) {
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

Decision ArticleLossPlateau::observe(double loss) {
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

void ArticleLossPlateau::setRank(Eigen::Index rank) {
  if (rank < 1) detail::fail("ArticleLossPlateau::setRank", "expected a rank >= 1, got {}", rank);
  m_rank = rank;
}

LossTrend ArticleLossPlateau::recentTrend() const {
  return articleLossTrend(recent());
}

std::vector<double> ArticleLossPlateau::recent() const {
  const std::size_t n = std::min(m_opt.patience, m_losses.size());
  return {m_losses.end() - static_cast<std::ptrdiff_t>(n), m_losses.end()};
}

Decision ArticleLossPlateau::decide() {
  if (m_losses.size() < m_opt.patience) return {false, "insufficient_history", m_rank};
  const std::vector<double> last = recent();
  const LossTrend trend = articleLossTrend(last);
  const Eigen::Map<const Eigen::ArrayXd> x(last.data(), static_cast<Eigen::Index>(last.size()));
  const double variance = (x - x.mean()).square().mean();  // np.var
  if (trend == LossTrend::Plateau && variance < 0.001) {
    if (m_rank < m_opt.maxRank) {
      const auto grown =
          static_cast<Eigen::Index>(static_cast<double>(m_rank) * m_opt.increaseFactor);
      m_noImprovement = 0;
      return {true, "plateau_increase_rank", std::min(grown, m_opt.maxRank)};
    }
  } else if (trend == LossTrend::Oscillating && variance > 0.01) {
    if (m_rank > m_opt.minRank) {
      const auto shrunk =
          static_cast<Eigen::Index>(static_cast<double>(m_rank) * m_opt.decreaseFactor);
      m_noImprovement = 0;
      return {true, "oscillating_decrease_rank", std::max(shrunk, m_opt.minRank)};
    }
  }
  return {false, "no_clear_signal", m_rank};
}

}  // namespace lora::rank
