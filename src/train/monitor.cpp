#include "lora/train/monitor.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lora/io/atomic_file.hpp"
#include "lora/linalg/statistics.hpp"

namespace lora::train {

std::string MonitorReport::toString() const {
  std::string out;
  const std::string rule(60, '=');
  out += fmt::format("\n{}\nLoRA performance report (last {} steps)\n{}\n\n", rule, records, rule);
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
  out += fmt::format("{:<40} {:>5} {:>10} {:>10} {:>10} {:>12} {:>12}\n", "layer", "rank", "params",
                     "|A|", "|B|", "|grad A|", "|grad B|");
  out += std::string(105, '-') + "\n";
  for (const auto& l : layers)
    out +=
        fmt::format("{:<40} {:>5} {:>10} {:>10.4f} {:>10.4f} {:>12.4g} {:>12.4g}\n", l.name, l.rank,
                    grouped(l.parameterCount), l.normA, l.normB, l.gradNormA, l.gradNormB);
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

std::string MonitorReport::grouped(Eigen::Index n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

Monitor::Monitor(SuggestionRules rules) : m_rules(rules), m_start(Clock::now()) {
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

const MonitorRecord& Monitor::collect(std::int64_t step, double loss,
                                      std::optional<double> accuracy, double learningRate) {
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

const MonitorRecord& Monitor::add(MonitorRecord record) {
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

MonitorReport Monitor::report(std::size_t lastN) const {
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
  rep.lossMean = linalg::mean(losses);
  rep.lossStd = linalg::populationStd(losses);
  rep.lowestLoss = *std::min_element(losses.begin(), losses.end());
  if (!accuracies.empty()) {
    rep.accuracyMean = linalg::mean(accuracies);
    rep.accuracyStd = linalg::populationStd(accuracies);
    rep.bestAccuracy = *std::max_element(accuracies.begin(), accuracies.end());
  }
  rep.totalParameters = m_history.back().totalParameters();
  rep.layers = m_history.back().layers;
  if (n >= 10) {
    rep.lossTrend = linalg::leastSquaresSlope(losses);
    if (accuracies.size() >= 10) rep.accuracyTrend = linalg::leastSquaresSlope(accuracies);
  }
  return rep;
}

std::vector<Suggestion> Monitor::suggestions() const {
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
    means.emplace_back(layer.name, linalg::mean(norms));
  }
  if (!means.empty()) {
    std::vector<double> values;
    for (const auto& m : means) values.push_back(m.second);
    const double med = linalg::median(values);
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
          out.push_back({"low_gradient_norm", name, g,
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
  const double lossStd = linalg::populationStd(recent);
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

std::string Monitor::toCsv() const {
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

std::string Monitor::csvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

nlohmann::json Monitor::toJson() const {
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

void Monitor::writeCsv(const std::filesystem::path& path) const {
  writeFileAtomically(path, toCsv(), "Monitor::writeCsv");
}

void Monitor::writeJson(const std::filesystem::path& path) const {
  writeFileAtomically(path, toJson().dump(2) + "\n", "Monitor::writeJson");
}

}  // namespace lora::train
