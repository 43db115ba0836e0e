#include "lora/rank/article_gradient.hpp"

#include <algorithm>
#include <cmath>

#include "lora/error.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/linalg/spectrum.hpp"

namespace lora::rank {

ArticleGradientBased::ArticleGradientBased(const Options& options) : m_opt(options) {
  constexpr const char* where = "ArticleGradientBased::ArticleGradientBased";
  if (options.initialRank < 1 || options.maxRank < 1)
    detail::fail(where, "expected initialRank and maxRank >= 1, got {} and {}", options.initialRank,
                 options.maxRank);
  if (options.adjustmentFrequency < 1)
    detail::fail(where, "expected adjustmentFrequency >= 1, got 0");
  if (!(std::isfinite(options.sensitivityThreshold) && options.sensitivityThreshold >= 0))
    detail::fail(where, "expected a finite sensitivityThreshold >= 0, got {}",
                 options.sensitivityThreshold);
  if (!(options.energy > 0 && options.energy <= 1))
    detail::fail(where, "expected energy in (0, 1], got {}", options.energy);
  m_rank = options.initialRank;
}

Decision ArticleGradientBased::observe(const Eigen::VectorXd& sigma) {
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

void ArticleGradientBased::setRank(Eigen::Index rank) {
  if (rank < 1) detail::fail("ArticleGradientBased::setRank", "expected a rank >= 1, got {}", rank);
  m_rank = rank;
}

ArticleGradientInformed::ArticleGradientInformed(const Options& options) : m_opt(options) {
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

Decision ArticleGradientInformed::observe(const FactorGradients& g) {
  constexpr const char* where = "ArticleGradientInformed::observe";
  if (g.gradA.rows() != g.gradB.cols() || g.gradA.rows() < 1)
    detail::fail(where,
                 "expected grad_A (r x in) and grad_B (out x r) with the same r, got "
                 "{}x{} and {}x{}",
                 g.gradA.rows(), g.gradA.cols(), g.gradB.rows(), g.gradB.cols());
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

void ArticleGradientInformed::setRank(Eigen::Index rank) {
  if (rank < 1)
    detail::fail("ArticleGradientInformed::setRank", "expected a rank >= 1, got {}", rank);
  m_rank = rank;
}

void ArticleGradientInformed::push(std::deque<double>& d, double v) const {
  d.push_back(v);
  if (d.size() > m_opt.adjustmentInterval) d.pop_front();
}

double ArticleGradientInformed::tailStd(const std::deque<double>& d) {
  const std::size_t n = std::min<std::size_t>(10, d.size());
  double mean = 0, sq = 0;
  for (std::size_t i = d.size() - n; i < d.size(); ++i) mean += d[i];
  mean /= static_cast<double>(n);
  for (std::size_t i = d.size() - n; i < d.size(); ++i) sq += (d[i] - mean) * (d[i] - mean);
  return std::sqrt(sq / static_cast<double>(n));
}

double ArticleGradientInformed::consistency() const {
  if (m_normsA.size() <= 1) return 1.0;
  return 1.0 / (1.0 + tailStd(m_normsA) + tailStd(m_normsB));
}

}  // namespace lora::rank
