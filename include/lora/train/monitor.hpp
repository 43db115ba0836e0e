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

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lora/error.hpp"
#include "lora/layer.hpp"
#include "lora/train/atomic_file.hpp"
#include "lora/train/statistics.hpp"

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
  std::string toString() const {
    std::string out;
    const std::string rule(60, '=');
    out +=
        fmt::format("\n{}\nLoRA performance report (last {} steps)\n{}\n\n", rule, records, rule);
    if (records == 0) return out + "No data yet.\n";
    out += "Performance:\n";
    out += fmt::format("  mean loss:      {:.4f} (± {:.4f})\n", lossMean, lossStd);
    if (accuracyMean) {
      out += fmt::format("  mean accuracy:  {:.4f} (± {:.4f})\n", *accuracyMean, *accuracyStd);
      out += fmt::format("  best accuracy:  {:.4f}\n", *bestAccuracy);
    } else {
      out += "  accuracy:       not recorded\n";
    }
    out += fmt::format("  lowest loss:    {:.4f}\n\n", lowestLoss);
    out += "LoRA parameters:\n";
    out += fmt::format("  total LoRA parameters: {}\n", grouped(totalParameters));
    out += fmt::format("  LoRA layers:           {}\n\n", layers.size());
    out += "Per layer:\n";
    out += fmt::format("{:<40} {:>5} {:>10} {:>10} {:>10} {:>12} {:>12}\n", "layer", "rank",
                       "params", "|A|", "|B|", "|grad A|", "|grad B|");
    out += std::string(105, '-') + "\n";
    for (const auto& l : layers)
      out += fmt::format("{:<40} {:>5} {:>10} {:>10.4f} {:>10.4f} {:>12.4g} {:>12.4g}\n", l.name,
                         l.rank, grouped(l.parameterCount), l.normA, l.normB, l.gradNormA,
                         l.gradNormB);
    if (lossTrend) {
      out += "\nTrends (least-squares slope per step):\n";
      out += fmt::format("  loss:     {} ({:.6g}/step)\n", *lossTrend < 0 ? "falling" : "rising",
                         *lossTrend);
      if (accuracyTrend)
        out += fmt::format("  accuracy: {} ({:.6g}/step)\n",
                           *accuracyTrend > 0 ? "rising" : "falling", *accuracyTrend);
    }
    return out;
  }

  /// 1234567 -> "1,234,567".
  static std::string grouped(Eigen::Index n) {
    std::string digits = std::to_string(n < 0 ? -n : n), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
      if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
      out += digits[i];
    }
    return n < 0 ? "-" + out : out;
  }
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
  explicit Monitor(SuggestionRules rules = {}) : m_rules(rules), m_start(Clock::now()) {
    constexpr const char* where = "Monitor::Monitor";
    if (rules.minRecords < 2)
      detail::fail(where, "expected minRecords >= 2, got {}", rules.minRecords);
    if (rules.lossWindow < 2 || rules.lossWindow > rules.minRecords)
      detail::fail(where, "expected 2 <= lossWindow <= minRecords ({}), got {}", rules.minRecords,
                   rules.lossWindow);
    if (!(rules.lowGradientRatio >= 0 && rules.highGradientRatio > rules.lowGradientRatio &&
          std::isfinite(rules.highGradientRatio)))
      detail::fail(where,
                   "expected 0 <= lowGradientRatio < highGradientRatio (finite), got {} and {}",
                   rules.lowGradientRatio, rules.highGradientRatio);
    if (!(rules.convergedLossStd >= 0 && rules.fluctuatingLossStd >= rules.convergedLossStd &&
          std::isfinite(rules.fluctuatingLossStd)))
      detail::fail(where,
                   "expected 0 <= convergedLossStd <= fluctuatingLossStd (finite), got {} and {}",
                   rules.convergedLossStd, rules.fluctuatingLossStd);
  }

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
                               double learningRate) {
    MonitorRecord r;
    r.step = step;
    r.loss = loss;
    r.accuracy = accuracy;
    r.learningRate = learningRate;
    r.timestamp =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    r.elapsed = std::chrono::duration<double>(Clock::now() - m_start).count();
    for (const auto& w : m_watched) r.layers.push_back(w.second());
    return add(std::move(r));
  }

  /// Appends a prepared record (from another source, or replayed), after the same checks.
  const MonitorRecord& add(MonitorRecord record) {
    constexpr const char* where = "Monitor::add";
    if (!std::isfinite(record.loss))
      detail::fail(where, "expected a finite loss at step {}, got {}", record.step, record.loss);
    if (record.accuracy && !std::isfinite(*record.accuracy))
      detail::fail(where, "expected a finite accuracy at step {}, got {}", record.step,
                   *record.accuracy);
    if (!(std::isfinite(record.learningRate) && record.learningRate >= 0))
      detail::fail(where, "expected a finite learning rate >= 0 at step {}, got {}", record.step,
                   record.learningRate);
    m_history.push_back(std::move(record));
    return m_history.back();
  }

  const std::vector<MonitorRecord>& history() const noexcept { return m_history; }
  const SuggestionRules& rules() const noexcept { return m_rules; }

  /// The report over the last \p lastN records (all when fewer; lastN >= 1).
  MonitorReport report(std::size_t lastN = 100) const {
    if (lastN < 1) detail::fail("Monitor::report", "expected lastN >= 1, got 0");
    MonitorReport rep;
    const std::size_t n = std::min(lastN, m_history.size());
    rep.records = n;
    if (n == 0) return rep;
    std::vector<double> losses, accuracies;
    const auto first = m_history.end() - static_cast<std::ptrdiff_t>(n);
    for (auto it = first; it != m_history.end(); ++it) {
      losses.push_back(it->loss);
      if (it->accuracy) accuracies.push_back(*it->accuracy);
    }
    rep.lossMean = mean(losses);
    rep.lossStd = populationStd(losses);
    rep.lowestLoss = *std::min_element(losses.begin(), losses.end());
    if (!accuracies.empty()) {
      rep.accuracyMean = mean(accuracies);
      rep.accuracyStd = populationStd(accuracies);
      rep.bestAccuracy = *std::max_element(accuracies.begin(), accuracies.end());
    }
    rep.totalParameters = m_history.back().totalParameters();
    rep.layers = m_history.back().layers;
    if (n >= 10) {
      rep.lossTrend = leastSquaresSlope(losses);
      if (accuracies.size() >= 10) rep.accuracyTrend = leastSquaresSlope(accuracies);
    }
    return rep;
  }

  /// The article's suggestions (see the file comment); never empty.
  std::vector<Suggestion> suggestions() const {
    std::vector<Suggestion> out;
    if (m_history.size() < m_rules.minRecords) {
      out.push_back({"insufficient_data", "", static_cast<double>(m_history.size()),
                     fmt::format("Not enough data: {} of {} records; train longer before "
                                 "analysing.",
                                 m_history.size(), m_rules.minRecords)});
      return out;
    }
    const auto first = m_history.end() - static_cast<std::ptrdiff_t>(m_rules.minRecords);
    // Mean gradient norm per layer of the latest record, over the records that have the layer.
    std::vector<std::pair<std::string, double>> means;
    for (const auto& layer : m_history.back().layers) {
      std::vector<double> norms;
      for (auto it = first; it != m_history.end(); ++it)
        for (const auto& l : it->layers)
          if (l.name == layer.name) norms.push_back(l.gradNorm());
      means.emplace_back(layer.name, mean(norms));
    }
    if (!means.empty()) {
      std::vector<double> values;
      for (const auto& m : means) values.push_back(m.second);
      const double med = median(values);
      if (med > 0) {
        for (const auto& [name, g] : means) {
          if (g > med * m_rules.highGradientRatio) {
            out.push_back(
                {"high_gradient_norm", name, g,
                 fmt::format("Layer {} has an unusually high gradient norm ({:.4f}, {:.1f}x "
                             "the median): consider a lower learning rate or a lower "
                             "rank for this layer.",
                             name, g, g / med)});
          } else if (g < med * m_rules.lowGradientRatio) {
            out.push_back(
                {"low_gradient_norm", name, g,
                 fmt::format("Layer {} has a very small gradient norm ({:.4g}, {:.3f}x the "
                             "median): it may need a higher rank or another "
                             "initialization.",
                             name, g, g / med)});
          }
        }
      }
    }
    std::vector<double> recent;
    for (auto it = m_history.end() - static_cast<std::ptrdiff_t>(m_rules.lossWindow);
         it != m_history.end(); ++it)
      recent.push_back(it->loss);
    const double lossStd = populationStd(recent);
    if (lossStd < m_rules.convergedLossStd) {
      out.push_back({"loss_converged", "", lossStd,
                     fmt::format("The loss has converged (std {:.2g} over the last {} records): a "
                                 "lower learning rate may fine-tune further.",
                                 lossStd, m_rules.lossWindow)});
    } else if (lossStd > m_rules.fluctuatingLossStd) {
      out.push_back({"loss_fluctuating", "", lossStd,
                     fmt::format("The loss fluctuates strongly (std {:.3g} over the last {} "
                                 "records): lower the learning rate or check the data.",
                                 lossStd, m_rules.lossWindow)});
    }
    const auto total = m_history.back().totalParameters();
    if (total > m_rules.manyParameters)
      out.push_back({"many_parameters", "", static_cast<double>(total),
                     fmt::format("{} LoRA parameters: consider lower ranks for some layers.",
                                 MonitorReport::grouped(total))});
    if (out.empty())
      out.push_back(
          {"no_change_needed", "", 0.0, "The current configuration looks fine; no change needed."});
    return out;
  }

  /// The history as CSV, one row per record and layer (a record without layers has one row with
  /// empty layer fields): step, timestamp, elapsed_s, loss, accuracy (empty when not recorded),
  /// learning_rate, layer, rank, parameters, norm_a, norm_b, grad_norm_a, grad_norm_b.
  /// Numbers are written in the shortest form that reads back to the same double.
  std::string toCsv() const {
    std::string out =
        "step,timestamp,elapsed_s,loss,accuracy,learning_rate,layer,rank,parameters,norm_a,norm_b,"
        "grad_norm_a,grad_norm_b\n";
    for (const auto& r : m_history) {
      const std::string head =
          fmt::format("{},{},{},{},{},{}", r.step, r.timestamp, r.elapsed, r.loss,
                      r.accuracy ? fmt::format("{}", *r.accuracy) : std::string(), r.learningRate);
      if (r.layers.empty()) {
        out += head + ",,,,,,,\n";
        continue;
      }
      for (const auto& l : r.layers)
        out += fmt::format("{},{},{},{},{},{},{},{}\n", head, csvField(l.name), l.rank,
                           l.parameterCount, l.normA, l.normB, l.gradNormA, l.gradNormB);
    }
    return out;
  }

  /// The history as JSON: {"records": [{"step", "timestamp", "elapsed_s", "loss", "accuracy"
  /// (null when not recorded), "learning_rate", "total_lora_params", "layers": [{"name", "rank",
  /// "param_count", "norm_a", "norm_b", "grad_norm_a", "grad_norm_b"}]}]}.
  nlohmann::json toJson() const {
    nlohmann::json records = nlohmann::json::array();
    for (const auto& r : m_history) {
      nlohmann::json layers = nlohmann::json::array();
      for (const auto& l : r.layers)
        layers.push_back({{"name", l.name},
                          {"rank", l.rank},
                          {"param_count", l.parameterCount},
                          {"norm_a", l.normA},
                          {"norm_b", l.normB},
                          {"grad_norm_a", l.gradNormA},
                          {"grad_norm_b", l.gradNormB}});
      records.push_back({{"step", r.step},
                         {"timestamp", r.timestamp},
                         {"elapsed_s", r.elapsed},
                         {"loss", r.loss},
                         {"accuracy", r.accuracy ? nlohmann::json(*r.accuracy) : nlohmann::json()},
                         {"learning_rate", r.learningRate},
                         {"total_lora_params", r.totalParameters()},
                         {"layers", std::move(layers)}});
    }
    return {{"records", std::move(records)}};
  }

  /// Writes toCsv() / toJson() to \p path atomically (temporary file + rename).
  void writeCsv(const std::filesystem::path& path) const {
    writeFileAtomically(path, toCsv(), "Monitor::writeCsv");
  }
  void writeJson(const std::filesystem::path& path) const {
    writeFileAtomically(path, toJson().dump(2) + "\n", "Monitor::writeJson");
  }

 private:
  using Clock = std::chrono::steady_clock;

  /// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled.
  static std::string csvField(const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
    std::string out = "\"";
    for (char c : s) {
      if (c == '"') out += '"';
      out += c;
    }
    return out + "\"";
  }

  SuggestionRules m_rules;
  Clock::time_point m_start;
  std::vector<std::pair<std::string, std::function<LayerSnapshot()>>> m_watched;
  std::vector<MonitorRecord> m_history;
};

}  // namespace lora::train
