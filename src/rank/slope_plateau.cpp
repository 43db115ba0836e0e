#include "lora/rank/slope_plateau.hpp"

#include <algorithm>
#include <cmath>

#include "lora/error.hpp"

namespace lora::detail {

rank::SlopeFit fitSlopeDouble(const Eigen::ArrayXd& v) {
  const Eigen::Index n = v.size();
  if (n < 3) detail::fail("fitSlope", "expected at least 3 losses, got {}", n);
  const Eigen::ArrayXd t = Eigen::ArrayXd::LinSpaced(n, 0.0, static_cast<double>(n - 1));
  const double tMean = t.mean(), yMean = v.mean();
  const double sxx = (t - tMean).square().sum();
  const double slope = ((t - tMean) * (v - yMean)).sum() / sxx;
  const Eigen::ArrayXd residual = v - (yMean + slope * (t - tMean));
  const double s2 = residual.square().sum() / static_cast<double>(n - 2);
  return {slope, std::sqrt(s2 / sxx), yMean};
}

}  // namespace lora::detail

namespace lora::rank {

SlopePlateau::SlopePlateau(const Options& options) : m_opt(options) {
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

Decision SlopePlateau::observe(double loss) {
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

void SlopePlateau::setRank(Eigen::Index rank) {
  if (rank < 1) detail::fail("SlopePlateau::setRank", "expected a rank >= 1, got {}", rank);
  m_rank = rank;
}

Eigen::ArrayXd SlopePlateau::window() const {
  Eigen::ArrayXd y(static_cast<Eigen::Index>(m_losses.size()));
  std::copy(m_losses.begin(), m_losses.end(), y.data());
  return y;
}

}  // namespace lora::rank
