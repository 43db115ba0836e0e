#pragma once
/// \file rank_manager.hpp
/// \brief train::RankManager: the article's production rank manager (section 5.1,
/// `ProductionLoRARankManager`) — initial rank recommendations and rank adjustments from training
/// metrics, with a JSON configuration (rank_config.hpp) and a timestamped decision log.
///
/// **recommendInitialRanks(layers, complexity, constraints).** Per layer, as the article:
/// `int(base · multiplier · factor)` with the complexity map (simple 4 x 1.0, medium 8 x 1.5,
/// complex 16 x 2.0) and the layer-kind factor (layer_kind.hpp: BERT and Llama names), then
/// clamped to [min_rank, max_rank]. A layer in `layer_specific_ranks` gets that rank as given.
/// Resource constraints, applied to the total over all layers (the article checks each layer on
/// its own, so ten layers may each take 10% of the memory, and it sizes the compute check with
/// the rank from before the memory check): the LoRA parameters Σ r·(in + out) must fit in
/// `memoryShare` (10%) of `memoryGb` at `bytesPerParameter` (4, float32) and cost at most
/// `computeBudget` at `costPerParameter` (1e-6 per parameter, the article's model). If they do
/// not, every recommended (not layer-specific) rank is scaled by the same factor, floored, at
/// least 1; a min_rank that lifts a rank back above that is said in the reasoning. Each
/// recommendation carries a reasoning string with every factor.
///
/// **monitorAndAdjust(metrics, ranks).** With `auto_adjustment` off it records nothing and
/// returns status `disabled`. Otherwise it keeps the metrics; once `patience` records have come
/// since the start or the last adjustment, it fits least-squares slopes (per record) of loss and
/// accuracy over the last `patience` records and decides for every layer at once:
/// - both |slopes| < `stagnation_slope` (0.001): `stagnant`, every rank below max_rank grows by 2
///   (capped);
/// - loss rising (slope > 0) while accuracy falls (slope < 0): `diverging`, every rank above
///   min_rank shrinks by 1. The article calls this "overfitting", but these are training metrics:
///   a rising training loss is divergence (learning rate, instability), not overfitting, which
///   needs held-out data. The rule is the article's; the name is honest.
/// - loss falling while accuracy rises: `improving`; anything else `unstable`; no change.
/// Without accuracy (regression), flat means |loss slope| < stagnation_slope and diverging means
/// loss slope >= stagnation_slope. After an adjustment the window starts again (the article keeps
/// the old window and would grow again on every call until max_rank).
///
/// **Delegation.** With `selector` = "slope_plateau" or "article_loss_plateau" in the config, or
/// a selector passed to delegateTo(), each layer gets its own copy of that rank selector
/// (lora/rank), fed the loss; its decisions, clamped to [min_rank, max_rank], are the
/// adjustments (status `delegated`). From the config: SlopePlateau{window = patience,
/// minRelativeImprovement = adjustment_threshold}, ArticleLossPlateau{patience,
/// improvementThreshold = adjustment_threshold}, both with initial/min/max rank.
///
/// **Log.** With a log path, every recommendation and every decision (status, slopes,
/// adjustments) is appended as a line `2025-01-31T12:00:00.123Z INFO ...` (UTC).
///
/// \code
/// lora::train::RankManager manager(lora::train::RankManagerConfig::load("lora_rank_config.json"),
///                                  "lora_rank_log.txt");
/// auto recs = manager.recommendInitialRanks(
///     {{"bert.encoder.layer.0.attention.self.query", lora::train::LayerShape::square(768)}},
///     lora::train::TaskComplexity::Medium, lora::train::ResourceConstraints{.memoryGb = 8});
/// auto decision = manager.monitorAndAdjust({.loss = 0.41, .accuracy = 0.83}, {{"q", 14}});
/// for (const auto& a : decision.adjustments) opt.resize(layerNamed(a.layer), a.newRank);
/// \endcode

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <Eigen/Core>

#include "lora/error.hpp"
#include "lora/rank/loss_plateau.hpp"
#include "lora/rank/slope_plateau.hpp"
#include "lora/train/layer_kind.hpp"
#include "lora/train/loss_selector.hpp"
#include "lora/train/rank_config.hpp"
#include "lora/train/statistics.hpp"

namespace lora::train {

/// The article's task complexities.
enum class TaskComplexity { Simple, Medium, Complex };

inline std::string_view toString(TaskComplexity c) noexcept {
  return c == TaskComplexity::Simple    ? "simple"
         : c == TaskComplexity::Complex ? "complex"
                                        : "medium";
}
/// "simple", "medium" or "complex" (the article silently falls back to medium; here anything else
/// is an error).
inline TaskComplexity taskComplexityFromString(std::string_view s) {
  if (s == "simple") return TaskComplexity::Simple;
  if (s == "medium") return TaskComplexity::Medium;
  if (s == "complex") return TaskComplexity::Complex;
  detail::fail("taskComplexityFromString",
               "expected \"simple\", \"medium\" or \"complex\", got \"{}\"", s);
}

/// The article's `complexity_rank_map` entry: base rank and multiplier.
struct ComplexityRank {
  int base = 8;
  double multiplier = 1.5;
};
inline ComplexityRank complexityRank(TaskComplexity c) noexcept {
  switch (c) {
    case TaskComplexity::Simple:
      return {4, 1.0};
    case TaskComplexity::Complex:
      return {16, 2.0};
    case TaskComplexity::Medium:
      break;
  }
  return {8, 1.5};
}

/// A layer's shape (the article's `layer_info`, which has only `d_model`: in = out = d_model).
struct LayerShape {
  Eigen::Index inFeatures = 768;
  Eigen::Index outFeatures = 768;
  static LayerShape square(Eigen::Index dModel) { return {dModel, dModel}; }
};

/// Resource limits for recommendInitialRanks (unset: not constrained).
struct ResourceConstraints {
  std::optional<double> memoryGb{};  ///< memory in GiB (the article: `memory_gb`)
  std::optional<double>
      computeBudget{};             ///< in units of costPerParameter (the article: `compute_budget`)
  double memoryShare = 0.1;        ///< share of the memory LoRA parameters may take
  double bytesPerParameter = 4;    ///< float32
  double costPerParameter = 1e-6;  ///< the article's "simplified cost model"
};

/// One recommendation.
struct RankRecommendation {
  std::string layer;
  LayerKind kind = LayerKind::Unknown;
  Eigen::Index rank = 0;
  std::string initialization;
  std::string reasoning;
};

/// The metrics of one monitorAndAdjust call.
struct PerformanceRecord {
  double loss = 0;
  std::optional<double> accuracy{};
  double trainingTime = 0;  ///< seconds; kept in the history, not used by the rules
};

/// One rank change the manager asks for.
struct RankAdjustment {
  std::string layer;
  Eigen::Index oldRank = 0;
  Eigen::Index newRank = 0;
  std::string reason;  ///< stagnant_increase_rank, diverging_decrease_rank, or "<selector>:<code>"
};

/// What monitorAndAdjust decided.
struct AdjustmentDecision {
  /// disabled, insufficient_history, stagnant, diverging, improving, unstable, delegated
  std::string status;
  std::optional<double> lossSlope{}, accuracySlope{};  ///< per record, when a trend was fitted
  std::vector<RankAdjustment> adjustments;
};

/// \brief The article's production rank manager (see the file comment).
class RankManager {
 public:
  /// A manager with \p config (validated) and, when \p logPath is not empty, a decision log
  /// appended to at that path (an error if it cannot be opened).
  explicit RankManager(RankManagerConfig config = {}, std::filesystem::path logPath = {})
      : m_config(std::move(config)), m_logPath(std::move(logPath)) {
    m_config.validate();
    if (m_config.selector == "slope_plateau") {
      m_prototype = rank::SlopePlateau({.initialRank = m_config.initialRank,
                                        .minRank = m_config.minRank,
                                        .maxRank = m_config.maxRank,
                                        .window = m_config.patience,
                                        .minRelativeImprovement = m_config.adjustmentThreshold});
    } else if (m_config.selector == "article_loss_plateau") {
      m_prototype =
          rank::ArticleLossPlateau({.initialRank = m_config.initialRank,
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

  const RankManagerConfig& config() const noexcept { return m_config; }
  const std::filesystem::path& logPath() const noexcept { return m_logPath; }
  /// Writes the configuration to \p path (atomically); never done implicitly.
  void saveConfig(const std::filesystem::path& path) const { m_config.save(path); }

  /// Delegates monitorAndAdjust to copies of \p selector, one per layer (see the file comment).
  void delegateTo(AnyLossSelector selector) {
    m_prototype = std::move(selector);
    m_selectors.clear();
  }
  /// Goes back to the article's trend rule.
  void clearDelegate() {
    m_prototype.reset();
    m_selectors.clear();
  }
  bool delegating() const noexcept { return m_prototype.has_value(); }

  /// Initial ranks for \p layers (name, shape), in their order (see the file comment).
  std::vector<RankRecommendation> recommendInitialRanks(
      const std::vector<std::pair<std::string, LayerShape>>& layers,
      TaskComplexity complexity = TaskComplexity::Medium,
      const std::optional<ResourceConstraints>& constraints = std::nullopt) {
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
      rec.kind = identifyLayerKind(name);
      rec.initialization = m_config.initializationMethod;
      const double width = static_cast<double>(shape.inFeatures + shape.outFeatures);
      if (const auto specific = m_config.specificRankFor(name)) {
        rec.rank = specific->second;
        rec.reasoning = fmt::format("layer_specific_ranks[\"{}\"] = {}", specific->first, rec.rank);
        pinned.push_back(true);
        fixedParams += static_cast<double>(rec.rank) * width;
      } else {
        const double factor = layerKindFactor(rec.kind);
        const double exact = cr.base * cr.multiplier * factor;  // the article's order
        rec.rank = std::max<Eigen::Index>(static_cast<Eigen::Index>(exact), 1);
        rec.reasoning = fmt::format(
            "base rank {} x complexity multiplier {} ({}) x layer factor {} ({}) = {:.4g} -> {}",
            cr.base, cr.multiplier, toString(complexity), factor, toString(rec.kind), exact,
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
        const double l =
            c.memoryShare * *c.memoryGb * 1024.0 * 1024.0 * 1024.0 / c.bytesPerParameter;
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
            out[i].reasoning +=
                fmt::format("; within the resource limits ({} of {:.0f} parameters)",
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

  /// Records \p metrics and decides rank changes for the layers in \p currentRanks (name, rank)
  /// (see the file comment). Throws lora::Error, recording nothing, on a non-finite loss or
  /// accuracy, an empty or repeated layer name, or a rank below 1.
  AdjustmentDecision monitorAndAdjust(
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

  const std::vector<PerformanceRecord>& performanceHistory() const noexcept {
    return m_performance;
  }
  const std::vector<std::vector<std::pair<std::string, Eigen::Index>>>& rankHistory()
      const noexcept {
    return m_ranks;
  }

 private:
  static void checkConstraints(const char* where, const ResourceConstraints& c) {
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

  /// The article's trend rule over \p window (trimmed to the last `patience` records).
  AdjustmentDecision trend(std::vector<PerformanceRecord>& window,
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
    d.lossSlope = leastSquaresSlope(losses);
    if (withAccuracy) d.accuracySlope = leastSquaresSlope(accuracies);
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

  /// Feeds the loss to each layer's copy of the delegate selector (in \p selectors).
  AdjustmentDecision delegate(
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

  void logDecision(const AdjustmentDecision& d) {
    std::string line = fmt::format("decision: status={}", d.status);
    if (d.lossSlope) line += fmt::format(" loss_slope={:.6g}", *d.lossSlope);
    if (d.accuracySlope) line += fmt::format(" accuracy_slope={:.6g}", *d.accuracySlope);
    line += fmt::format(" adjustments={}", d.adjustments.size());
    log(line);
    for (const auto& a : d.adjustments)
      log(fmt::format("  {}: {} -> {} ({})", a.layer, a.oldRank, a.newRank, a.reason));
  }

  /// Appends `<UTC time> INFO <message>` to the log (when there is one).
  void log(const std::string& message) const {
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
      detail::fail("RankManager::log",
                   "expected to append to the decision log {}, got a write error",
                   m_logPath.string());
  }

  RankManagerConfig m_config;
  std::filesystem::path m_logPath;
  std::optional<AnyLossSelector> m_prototype;
  std::map<std::string, AnyLossSelector> m_selectors;
  std::vector<PerformanceRecord> m_window;
  std::vector<PerformanceRecord> m_performance;
  std::vector<std::vector<std::pair<std::string, Eigen::Index>>> m_ranks;
};

}  // namespace lora::train
