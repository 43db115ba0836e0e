#pragma once
/// \file rank_manager.hpp
/// \brief train::RankManager: the article's production rank manager (section 5.1,
/// `ProductionLoRARankManager`) — initial rank recommendations and rank adjustments from training
/// metrics, with a JSON configuration (rank::RankManagerConfig, lora/rank/rank_config.hpp) and a
/// timestamped decision log.
///
/// **recommendInitialRanks(layers, complexity, constraints).** Per layer, as the article:
/// `int(base · multiplier · factor)` with the complexity map (simple 4 x 1.0, medium 8 x 1.5,
/// complex 16 x 2.0) and the layer-kind factor (rank/layer_kind.hpp: BERT, Llama names), then
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
/// lora::train::RankManager manager(lora::rank::RankManagerConfig::load("lora_rank_config.json"),
///                                  "lora_rank_log.txt");
/// auto recs = manager.recommendInitialRanks(
///     {{"bert.encoder.layer.0.attention.self.query", lora::train::LayerShape::square(768)}},
///     lora::train::TaskComplexity::Medium, lora::train::ResourceConstraints{.memoryGb = 8});
/// auto decision = manager.monitorAndAdjust({.loss = 0.41, .accuracy = 0.83}, {{"q", 14}});
/// for (const auto& a : decision.adjustments) opt.resize(layerNamed(a.layer), a.newRank);
/// \endcode

#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/rank/layer_kind.hpp"
#include "lora/rank/rank_config.hpp"
#include "lora/train/loss_selector.hpp"

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
TaskComplexity taskComplexityFromString(std::string_view s);

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
  rank::LayerKind kind = rank::LayerKind::Unknown;
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
  explicit RankManager(rank::RankManagerConfig config = {}, std::filesystem::path logPath = {});

  const rank::RankManagerConfig& config() const noexcept { return m_config; }
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
      const std::optional<ResourceConstraints>& constraints = std::nullopt);

  /// Records \p metrics and decides rank changes for the layers in \p currentRanks (name, rank)
  /// (see the file comment). Throws lora::Error, recording nothing, on a non-finite loss or
  /// accuracy, an empty or repeated layer name, or a rank below 1.
  AdjustmentDecision monitorAndAdjust(
      const PerformanceRecord& metrics,
      const std::vector<std::pair<std::string, Eigen::Index>>& currentRanks);

  const std::vector<PerformanceRecord>& performanceHistory() const noexcept {
    return m_performance;
  }
  const std::vector<std::vector<std::pair<std::string, Eigen::Index>>>& rankHistory()
      const noexcept {
    return m_ranks;
  }

 private:
  static void checkConstraints(const char* where, const ResourceConstraints& c);

  /// The article's trend rule over \p window (trimmed to the last `patience` records).
  AdjustmentDecision trend(std::vector<PerformanceRecord>& window,
                           const std::vector<std::pair<std::string, Eigen::Index>>& ranks) const;

  /// Feeds the loss to each layer's copy of the delegate selector (in \p selectors).
  AdjustmentDecision delegate(std::map<std::string, AnyLossSelector>& selectors,
                              const PerformanceRecord& metrics,
                              const std::vector<std::pair<std::string, Eigen::Index>>& ranks) const;

  void logDecision(const AdjustmentDecision& d);

  /// Appends `<UTC time> INFO <message>` to the log (when there is one).
  void log(const std::string& message) const;

  rank::RankManagerConfig m_config;
  std::filesystem::path m_logPath;
  std::optional<AnyLossSelector> m_prototype;
  std::map<std::string, AnyLossSelector> m_selectors;
  std::vector<PerformanceRecord> m_window;
  std::vector<PerformanceRecord> m_performance;
  std::vector<std::vector<std::pair<std::string, Eigen::Index>>> m_ranks;
};

}  // namespace lora::train
