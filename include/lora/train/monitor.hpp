#pragma once
/// \file monitor.hpp
/// \brief train::Monitor: the article's `LoRAPerformanceMonitor` (section 5.2) — per-step metrics
/// and per-layer LoRA statistics, a report over the last N steps, the article's suggestions, and
/// the history as CSV and JSON.
///
/// Each record holds the step, loss, accuracy (optional: regression has none), learning rate,
/// wall-clock timestamp (seconds since the Unix epoch, as the article's `time.time()`), seconds
/// since the monitor was created, and for every watched layer: rank, trainable parameters,
/// ‖A‖, ‖B‖, ‖∇A‖, ‖∇B‖ (Frobenius). Call collect() after backward and before the optimizer
/// step, so the gradient norms are this step's.
///
/// report(N) gives over the last N records (all of them when fewer): mean ± population std of
/// loss and accuracy, best accuracy, lowest loss, total LoRA parameters and a per-layer table
/// (from the latest record), and — with at least 10 records — the least-squares trend per step
/// of loss and accuracy (`np.polyfit(range(n), y, 1)[0]`).
///
/// suggestions() applies the article's rules (thresholds in SuggestionRules): fewer than 50
/// records is "insufficient data"; over the last 50, a layer whose mean gradient norm
/// (‖∇A‖ + ‖∇B‖) is over 3x the median over layers is flagged high, under 0.1x low; the loss std
/// over the last 20 records under 0.001 is "converged", over 0.1 "fluctuating"; more than 1M LoRA
/// parameters suggests smaller ranks. Two fixes: a layer is averaged over the records that have
/// it (the article fails on a layer added later), and a median of 0 flags nothing (the article
/// would flag every layer with any gradient as "high").
///
/// \code
/// lora::train::Monitor monitor;
/// monitor.watch("q_proj", q);
/// monitor.watch("v_proj", v);
/// for (int step = 0; ...; ++step) {
///   ... forward, loss, backward ...
///   monitor.collect(step, loss, accuracy, opt.learningRate());
///   opt.step(loss);
/// }
/// fmt::print("{}", monitor.report(100).toString());
/// for (const auto& s : monitor.suggestions()) fmt::print("- {}\n", s.message);
/// monitor.writeCsv("history.csv");
/// \endcode
///
/// toJson() gives an nlohmann::json, declared here through <nlohmann/json_fwd.hpp>: include
/// <nlohmann/json.hpp> to use it. Everything but the templates (snapshotOf, watch) is compiled in
/// liblorapp (src/train/monitor.cpp).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"
#include "lora/layer.hpp"

namespace lora::train {

/// One layer at one step.
struct LayerSnapshot {
  std::string name;
  Eigen::Index rank = 0;
  Eigen::Index parameterCount = 0;      ///< trainable: r·(in + out) (+ out for a DoRA magnitude)
  double normA = 0, normB = 0;          ///< Frobenius norms of A and B
  double gradNormA = 0, gradNormB = 0;  ///< Frobenius norms of their gradients

  /// The article's `combined_norm`: ‖A‖ + ‖B‖.
  double weightNorm() const noexcept { return normA + normB; }
  /// The article's `combined_grad_norm`: ‖∇A‖ + ‖∇B‖.
  double gradNorm() const noexcept { return gradNormA + gradNormB; }
};

/// The statistics of \p layer now, under \p name.
template <typename Scalar>
LayerSnapshot snapshotOf(std::string name, const Layer<Scalar>& layer) {
  LayerSnapshot s;
  s.name = std::move(name);
  s.rank = layer.rank();
  s.parameterCount = layer.parameterCount();
  s.normA = static_cast<double>(layer.A().norm());
  s.normB = static_cast<double>(layer.B().norm());
  s.gradNormA = static_cast<double>(layer.gradA().norm());
  s.gradNormB = static_cast<double>(layer.gradB().norm());
  return s;
}

/// One step's metrics.
struct MonitorRecord {
  std::int64_t step = 0;
  double loss = 0;
  std::optional<double> accuracy{};
  double learningRate = 0;
  double timestamp = 0;  ///< seconds since the Unix epoch (system clock)
  double elapsed = 0;    ///< seconds since the monitor was created (steady clock)
  std::vector<LayerSnapshot> layers;

  Eigen::Index totalParameters() const noexcept {
    Eigen::Index n = 0;
    for (const auto& l : layers) n += l.parameterCount;
    return n;
  }
};

/// The article's report over the last records.
struct MonitorReport {
  std::size_t records = 0;  ///< records the report covers
  double lossMean = 0, lossStd = 0, lowestLoss = 0;
  std::optional<double> accuracyMean{}, accuracyStd{},
      bestAccuracy{};                     ///< when accuracy was recorded
  Eigen::Index totalParameters = 0;       ///< latest record
  std::vector<LayerSnapshot> layers;      ///< latest record
  std::optional<double> lossTrend{};      ///< per step, with >= 10 records
  std::optional<double> accuracyTrend{};  ///< per step, with >= 10 records that have accuracy

  /// The report as text, laid out as the article's.
  std::string toString() const;

  /// 1234567 -> "1,234,567".
  static std::string grouped(Eigen::Index n);
};

/// One suggestion: a stable code, the layer it concerns (empty for global ones), the value that
/// triggered it, and a sentence.
struct Suggestion {
  std::string code;  ///< insufficient_data, high_gradient_norm, low_gradient_norm,
                     ///< loss_converged, loss_fluctuating, many_parameters, no_change_needed
  std::string layer;
  double value = 0;
  std::string message;
};

/// The thresholds of suggestions(); the defaults are the article's.
struct SuggestionRules {
  std::size_t minRecords = 50;      ///< fewer: insufficient_data; also the window of the rules
  double highGradientRatio = 3.0;   ///< layer mean gradient norm > ratio x median: high
  double lowGradientRatio = 0.1;    ///< < ratio x median: low
  std::size_t lossWindow = 20;      ///< the loss std is taken over the last this many records
  double convergedLossStd = 0.001;  ///< below: converged
  double fluctuatingLossStd = 0.1;  ///< above: fluctuating
  Eigen::Index manyParameters = 1000000;  ///< above: suggest smaller ranks
};

/// \brief Collects metrics and LoRA statistics per step; reports, suggests, exports
/// (see the file comment).
class Monitor {
 public:
  explicit Monitor(SuggestionRules rules = {});

  /// Watches \p layer under \p name (unique): every collect() records its statistics. The layer
  /// must outlive the monitor's collect() calls; it may be resized in between.
  template <typename Scalar>
  void watch(std::string name, const Layer<Scalar>& layer) {
    if (name.empty()) detail::fail("Monitor::watch", "expected a layer name, got an empty one");
    for (const auto& w : m_watched)
      if (w.first == name)
        detail::fail("Monitor::watch", "expected a new layer name, got '{}' a second time", name);
    const Layer<Scalar>* p = &layer;
    m_watched.emplace_back(name, [p, name] { return snapshotOf(name, *p); });
  }
  std::size_t watchedLayers() const noexcept { return m_watched.size(); }

  /// Records step \p step: the metrics given and every watched layer's statistics now.
  /// A non-finite loss, accuracy or learning rate, or a negative learning rate, is an error (and
  /// nothing is recorded).
  const MonitorRecord& collect(std::int64_t step, double loss, std::optional<double> accuracy,
                               double learningRate);

  /// Appends a prepared record (from another source, or replayed), after the same checks.
  const MonitorRecord& add(MonitorRecord record);

  const std::vector<MonitorRecord>& history() const noexcept { return m_history; }
  const SuggestionRules& rules() const noexcept { return m_rules; }

  /// The report over the last \p lastN records (all when fewer; lastN >= 1).
  MonitorReport report(std::size_t lastN = 100) const;

  /// The article's suggestions (see the file comment); never empty.
  std::vector<Suggestion> suggestions() const;

  /// The history as CSV, one row per record and layer (a record without layers has one row with
  /// empty layer fields): step, timestamp, elapsed_s, loss, accuracy (empty when not recorded),
  /// learning_rate, layer, rank, parameters, norm_a, norm_b, grad_norm_a, grad_norm_b.
  /// Numbers are written in the shortest form that reads back to the same double.
  std::string toCsv() const;

  /// The history as JSON: {"records": [{"step", "timestamp", "elapsed_s", "loss", "accuracy"
  /// (null when not recorded), "learning_rate", "total_lora_params", "layers": [{"name", "rank",
  /// "param_count", "norm_a", "norm_b", "grad_norm_a", "grad_norm_b"}]}]}.
  nlohmann::json toJson() const;

  /// Writes toCsv() / toJson() to \p path atomically (temporary file + rename).
  void writeCsv(const std::filesystem::path& path) const;
  void writeJson(const std::filesystem::path& path) const;

 private:
  using Clock = std::chrono::steady_clock;

  /// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled.
  static std::string csvField(const std::string& s);

  SuggestionRules m_rules;
  Clock::time_point m_start;
  std::vector<std::pair<std::string, std::function<LayerSnapshot()>>> m_watched;
  std::vector<MonitorRecord> m_history;
};

}  // namespace lora::train
