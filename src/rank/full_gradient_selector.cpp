#include "lora/rank/full_gradient_selector.hpp"

#include <algorithm>
#include <cmath>

#include "lora/error.hpp"
#include "lora/linalg/spectrum.hpp"

namespace lora::rank {

FullGradientSelector::FullGradientSelector(const Options& options) : m_opt(options) {
  constexpr const char* where = "FullGradientSelector::FullGradientSelector";
  if (options.initialRank < 1 || options.maxRank < 1)
    detail::fail(where, "expected initialRank and maxRank >= 1, got {} and {}", options.initialRank,
                 options.maxRank);
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

Decision FullGradientSelector::observe(const GradientSignal& signal) {
  if (!std::isfinite(signal.outsideColumnFraction))
    detail::fail("FullGradientSelector::observe", "expected a finite outside fraction, got {}",
                 signal.outsideColumnFraction);
  m_outside = m_seen == 0
                  ? signal.outsideColumnFraction
                  : m_opt.beta * m_outside + (1 - m_opt.beta) * signal.outsideColumnFraction;
  const Eigen::Index m = std::min<Eigen::Index>(m_opt.maxStep, signal.outsideDirections.cols());
  if (m_previous.cols() > 0 && m_previous.rows() == signal.outsideDirections.rows()) {
    const Eigen::Index n = std::min(m, m_previous.cols());
    m_persistence.conservativeResize(n);
    for (Eigen::Index j = 1; j <= n; ++j) {
      const double phi = linalg::subspaceSimilarity(m_previous, signal.outsideDirections, j, j);
      m_persistence(j - 1) =
          m_pairs == 0 ? phi : m_opt.beta * m_persistence(j - 1) + (1 - m_opt.beta) * phi;
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

void FullGradientSelector::setRank(Eigen::Index rank) {
  if (rank < 1) detail::fail("FullGradientSelector::setRank", "expected a rank >= 1, got {}", rank);
  if (rank != m_rank) {  // the adapter's subspace changed: the histories no longer apply
    m_seen = 0;
    m_pairs = 0;
    m_outside = 0;
    m_previous.resize(0, 0);
    m_persistence.resize(0);
  }
  m_rank = rank;
}

}  // namespace lora::rank
