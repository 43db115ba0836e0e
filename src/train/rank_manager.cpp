#include "lora/train/rank_manager.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <ctime>
#include <fstream>
#include <ios>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "lora/error.hpp"
#include "lora/linalg/statistics.hpp"
#include "lora/rank/loss_plateau.hpp"
#include "lora/rank/slope_plateau.hpp"

namespace lora::train {

TaskComplexity taskComplexityFromString(std::string_view s) {
  if (s == "simple") return TaskComplexity::Simple;
  if (s == "medium") return TaskComplexity::Medium;
  if (s == "complex") return TaskComplexity::Complex;
  detail::fail("taskComplexityFromString",
               "expected \"simple\", \"medium\" or \"complex\", got \"{}\"", s);
}

RankManager::RankManager(rank::RankManagerConfig config, std::filesystem::path logPath)
    : m_config(std::move(config)), m_logPath(std::move(logPath)) {
  m_config.validate();
  if (m_config.selector == "slope_plateau") {
    m_prototype = rank::SlopePlateau({.initialRank = m_config.initialRank,
                                      .minRank = m_config.minRank,
                                      .maxRank = m_config.maxRank,
                                      .window = m_config.patience,
                                      .minRelativeImprovement = m_config.adjustmentThreshold});
  } else if (m_config.selector == "article_loss_plateau") {
    m_prototype = rank::ArticleLossPlateau({.initialRank = m_config.initialRank,
                                            .minRank = m_config.minRank,
                                            .maxRank = m_config.maxRank,
                                            .patience = m_config.patience,
                                            .improvementThreshold = m_config.adjustmentThreshold});
  }
  if (!m_logPath.empty()) {
    std::ofstream probe(m_logPath, std::ios::app);
    if (!probe)
      detail::fail("RankManager::RankManager",
                   "expected a writable decision log {}, got one that cannot be opened",
                   m_logPath.string());
  }
}

std::vector<RankRecommendation> RankManager::recommendInitialRanks(
    const std::vector<std::pair<std::string, LayerShape>>& layers, TaskComplexity complexity,
    const std::optional<ResourceConstraints>& constraints) {
  constexpr const char* where = "RankManager::recommendInitialRanks";
  if (layers.empty()) detail::fail(where, "expected at least one layer, got none");
  for (const auto& [name, shape] : layers) {
    if (name.empty()) detail::fail(where, "expected layer names, got an empty one");
    if (shape.inFeatures < 1 || shape.outFeatures < 1)
      detail::fail(where, "expected positive features for '{}', got {} x {}", name,
                   shape.inFeatures, shape.outFeatures);
  }
  if (constraints) checkConstraints(where, *constraints);
  const ComplexityRank cr = complexityRank(complexity);
  std::vector<RankRecommendation> out;
  std::vector<bool> pinned;
  double fixedParams = 0, freeParams = 0;
  for (const auto& [name, shape] : layers) {
    RankRecommendation rec;
    rec.layer = name;
    rec.kind = rank::identifyLayerKind(name);
    rec.initialization = m_config.initializationMethod;
    const double width = static_cast<double>(shape.inFeatures + shape.outFeatures);
    if (const auto specific = m_config.specificRankFor(name)) {
      rec.rank = specific->second;
      rec.reasoning = fmt::format("layer_specific_ranks[\"{}\"] = {}", specific->first, rec.rank);
      pinned.push_back(true);
      fixedParams += static_cast<double>(rec.rank) * width;
    } else {
      const double factor = rank::layerKindFactor(rec.kind);
      const double exact = cr.base * cr.multiplier * factor;  // the article's order
      rec.rank = std::max<Eigen::Index>(static_cast<Eigen::Index>(exact), 1);
      rec.reasoning = fmt::format(
          "base rank {} x complexity multiplier {} ({}) x layer factor {} ({}) = {:.4g} -> {}",
          cr.base, cr.multiplier, toString(complexity), factor, rank::toString(rec.kind), exact,
          rec.rank);
      pinned.push_back(false);
      freeParams += static_cast<double>(rec.rank) * width;
    }
    out.push_back(std::move(rec));
  }
  if (constraints) {
    const ResourceConstraints& c = *constraints;
    double limit = std::numeric_limits<double>::infinity();
    std::string bound;
    if (c.memoryGb) {
      const double l = c.memoryShare * *c.memoryGb * 1024.0 * 1024.0 * 1024.0 / c.bytesPerParameter;
      if (l < limit) {
        limit = l;
        bound = fmt::format("memory: {:.0f}% of {} GiB at {} bytes per parameter",
                            100 * c.memoryShare, *c.memoryGb, c.bytesPerParameter);
      }
    }
    if (c.computeBudget) {
      const double l = *c.computeBudget / c.costPerParameter;
      if (l < limit) {
        limit = l;
        bound = fmt::format("compute budget {} at {} per parameter", *c.computeBudget,
                            c.costPerParameter);
      }
    }
    const double total = fixedParams + freeParams;
    if (total > limit && freeParams > 0) {
      const double scale = std::max(0.0, limit - fixedParams) / freeParams;
      for (std::size_t i = 0; i < out.size(); ++i) {
        if (pinned[i]) continue;
        const auto scaled = std::max<Eigen::Index>(
            static_cast<Eigen::Index>(static_cast<double>(out[i].rank) * scale), 1);
        out[i].reasoning += fmt::format(
            "; {} LoRA parameters in all exceed the limit of {:.0f} ({}): scaled by {:.4g} -> {}",
            static_cast<long long>(total), limit, bound, scale, scaled);
        out[i].rank = scaled;
      }
    } else if (total > limit) {
      for (auto& rec : out)
        rec.reasoning += fmt::format("; layer-specific ranks alone exceed the limit ({})", bound);
    } else {
      for (std::size_t i = 0; i < out.size(); ++i)
        if (!pinned[i])
          out[i].reasoning += fmt::format("; within the resource limits ({} of {:.0f} parameters)",
                                          static_cast<long long>(total), limit);
    }
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (pinned[i]) continue;
    auto& rec = out[i];
    const Eigen::Index clamped = std::clamp(rec.rank, m_config.minRank, m_config.maxRank);
    if (clamped != rec.rank)
      rec.reasoning += fmt::format(
          "; clamped to [min_rank, max_rank] = [{}, {}] -> {}{}", m_config.minRank,
          m_config.maxRank, clamped,
          clamped > rec.rank && constraints ? " (min_rank overrides the resource limit)" : "");
    rec.rank = clamped;
  }
  log(fmt::format("recommended initial ranks: complexity={}, layers={}", toString(complexity),
                  out.size()));
  for (const auto& rec : out)
    log(fmt::format("  {}: rank {} ({})", rec.layer, rec.rank, rec.reasoning));
  return out;
}

AdjustmentDecision RankManager::monitorAndAdjust(
    const PerformanceRecord& metrics,
    const std::vector<std::pair<std::string, Eigen::Index>>& currentRanks) {
  constexpr const char* where = "RankManager::monitorAndAdjust";
  if (!std::isfinite(metrics.loss))
    detail::fail(where, "expected a finite loss, got {}", metrics.loss);
  if (metrics.accuracy && !std::isfinite(*metrics.accuracy))
    detail::fail(where, "expected a finite accuracy, got {}", *metrics.accuracy);
  for (std::size_t i = 0; i < currentRanks.size(); ++i) {
    const auto& [name, r] = currentRanks[i];
    if (name.empty()) detail::fail(where, "expected layer names, got an empty one");
    if (r < 1) detail::fail(where, "expected ranks >= 1, got {} for '{}'", r, name);
    for (std::size_t k = 0; k < i; ++k)
      if (currentRanks[k].first == name)
        detail::fail(where, "expected distinct layer names, got '{}' twice", name);
  }
  AdjustmentDecision d;
  if (!m_config.autoAdjustment) {
    d.status = "disabled";
    return d;
  }
  // Decide on copies; log; then commit (a failed log write changes nothing).
  if (m_prototype) {
    auto selectors = m_selectors;
    d = delegate(selectors, metrics, currentRanks);
    logDecision(d);
    m_selectors = std::move(selectors);
  } else {
    auto window = m_window;
    window.push_back(metrics);
    d = trend(window, currentRanks);
    if (d.status != "insufficient_history") logDecision(d);
    if (!d.adjustments.empty()) window.clear();
    m_window = std::move(window);
  }
  m_performance.push_back(metrics);
  m_ranks.push_back(currentRanks);
  return d;
}

void RankManager::checkConstraints(const char* where, const ResourceConstraints& c) {
  if (c.memoryGb && !(std::isfinite(*c.memoryGb) && *c.memoryGb > 0))
    detail::fail(where, "expected memoryGb > 0, got {}", *c.memoryGb);
  if (c.computeBudget && !(std::isfinite(*c.computeBudget) && *c.computeBudget > 0))
    detail::fail(where, "expected computeBudget > 0, got {}", *c.computeBudget);
  if (!(c.memoryShare > 0 && c.memoryShare <= 1))
    detail::fail(where, "expected memoryShare in (0, 1], got {}", c.memoryShare);
  if (!(std::isfinite(c.bytesPerParameter) && c.bytesPerParameter > 0))
    detail::fail(where, "expected bytesPerParameter > 0, got {}", c.bytesPerParameter);
  if (!(std::isfinite(c.costPerParameter) && c.costPerParameter > 0))
    detail::fail(where, "expected costPerParameter > 0, got {}", c.costPerParameter);
}

AdjustmentDecision RankManager::trend(
    std::vector<PerformanceRecord>& window,
    const std::vector<std::pair<std::string, Eigen::Index>>& ranks) const {
  AdjustmentDecision d;
  if (window.size() < m_config.patience) {
    d.status = "insufficient_history";
    return d;
  }
  window.erase(window.begin(), window.end() - static_cast<std::ptrdiff_t>(m_config.patience));
  std::vector<double> losses, accuracies;
  for (const auto& p : window) {
    losses.push_back(p.loss);
    if (p.accuracy) accuracies.push_back(*p.accuracy);
  }
  const bool withAccuracy = accuracies.size() == window.size();
  d.lossSlope = linalg::leastSquaresSlope(losses);
  if (withAccuracy) d.accuracySlope = linalg::leastSquaresSlope(accuracies);
  const double ls = *d.lossSlope, flat = m_config.stagnationSlope;
  const double as = withAccuracy ? *d.accuracySlope : 0.0;
  if (std::abs(ls) < flat && std::abs(as) < flat) {
    d.status = "stagnant";
  } else if (withAccuracy ? (ls > 0 && as < 0) : ls >= flat) {
    d.status = "diverging";
  } else if (withAccuracy ? (ls < 0 && as > 0) : ls <= -flat) {
    d.status = "improving";
  } else {
    d.status = "unstable";
  }
  for (const auto& [name, r] : ranks) {
    if (d.status == "stagnant" && r < m_config.maxRank)
      d.adjustments.push_back(
          {name, r, std::min(r + 2, m_config.maxRank), "stagnant_increase_rank"});
    if (d.status == "diverging" && r > m_config.minRank)
      d.adjustments.push_back(
          {name, r, std::max(r - 1, m_config.minRank), "diverging_decrease_rank"});
  }
  return d;
}

AdjustmentDecision RankManager::delegate(
    std::map<std::string, AnyLossSelector>& selectors, const PerformanceRecord& metrics,
    const std::vector<std::pair<std::string, Eigen::Index>>& ranks) const {
  AdjustmentDecision d;
  d.status = "delegated";
  for (const auto& [name, r] : ranks) {
    auto it = selectors.find(name);
    if (it == selectors.end()) it = selectors.emplace(name, *m_prototype).first;
    AnyLossSelector& s = it->second;
    if (s.currentRank() != r) s.setRank(r);
    const rank::Decision decision = s.observe(metrics.loss);
    if (!decision.adjust) continue;
    const Eigen::Index next = std::clamp(decision.newRank, m_config.minRank, m_config.maxRank);
    if (next != r) d.adjustments.push_back({name, r, next, s.name() + ":" + decision.reason});
  }
  return d;
}

void RankManager::logDecision(const AdjustmentDecision& d) {
  std::string line = fmt::format("decision: status={}", d.status);
  if (d.lossSlope) line += fmt::format(" loss_slope={:.6g}", *d.lossSlope);
  if (d.accuracySlope) line += fmt::format(" accuracy_slope={:.6g}", *d.accuracySlope);
  line += fmt::format(" adjustments={}", d.adjustments.size());
  log(line);
  for (const auto& a : d.adjustments)
    log(fmt::format("  {}: {} -> {} ({})", a.layer, a.oldRank, a.newRank, a.reason));
}

void RankManager::log(const std::string& message) const {
  if (m_logPath.empty()) return;
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
  const std::time_t seconds = static_cast<std::time_t>(ms.count() / 1000);
  const std::string line =
      fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z INFO {}\n", fmt::gmtime(seconds),
                  static_cast<int>(ms.count() % 1000), message);
  std::ofstream out(m_logPath, std::ios::app | std::ios::binary);
  out << line;
  out.flush();
  if (!out)
    detail::fail("RankManager::log", "expected to append to the decision log {}, got a write error",
                 m_logPath.string());
}

}  // namespace lora::train
