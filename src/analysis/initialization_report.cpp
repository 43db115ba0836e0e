// The non-template code of lora/analysis/initialization_analyzer.hpp: Statistic,
// initializationMetrics() and InitializationReport (text, CSV and JSON output).
#include "lora/analysis/initialization_analyzer.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lora/analysis/markdown_table.hpp"
#include "lora/error.hpp"
#include "lora/scaling.hpp"

namespace lora::analysis {

Statistic Statistic::of(const std::vector<double>& values) {
  Statistic st;
  double sum = 0.0;
  for (const double v : values) {
    if (std::isnan(v)) continue;
    if (st.count == 0) st.min = st.max = v;
    st.min = std::min(st.min, v);
    st.max = std::max(st.max, v);
    sum += v;
    ++st.count;
  }
  if (st.count == 0) return st;
  st.mean = sum / static_cast<double>(st.count);
  double squares = 0.0;
  for (const double v : values)
    if (!std::isnan(v)) squares += (v - st.mean) * (v - st.mean);
  st.stddev = std::sqrt(squares / static_cast<double>(st.count));
  return st;
}

const std::array<MetricInfo, 14>& initializationMetrics() {
  using M = InitMeasurement;
  using R = InitializationResult;
  static const std::array<MetricInfo, 14> metrics{{
      {"delta_norm", "‖ΔW‖_F", "Frobenius norm of s·B·A", &M::deltaNorm, &R::deltaNorm},
      {"delta_std", "std(ΔW)", "std of the entries of s·B·A (ddof 1)", &M::deltaStd, &R::deltaStd},
      {"norm_a", "‖A‖_F", "Frobenius norm of A", &M::normA, &R::normA},
      {"norm_b", "‖B‖_F", "Frobenius norm of B", &M::normB, &R::normB},
      {"spectral_norm", "σ_1(ΔW)", "largest singular value of s·B·A", &M::spectralNorm,
       &R::spectralNorm},
      {"condition_number", "σ_1/σ_k(ΔW)",
       "sigma_1/sigma_k over k = min(r, out, in); undefined when rank-deficient",
       &M::conditionNumber, &R::conditionNumber},
      {"fake_grad_a", "fake ‖∂A‖", "‖dL/dA‖_F for L = ‖s·B·A‖_F²", &M::fakeGradA, &R::fakeGradA},
      {"fake_grad_b", "fake ‖∂B‖", "‖dL/dB‖_F for L = ‖s·B·A‖_F²", &M::fakeGradB, &R::fakeGradB},
      {"regression_loss", "MSE₀", "mean((f(X) - Y)^2) at step 0", &M::regressionLoss,
       &R::regressionLoss},
      {"regression_grad_a", "MSE ‖∂A‖", "‖dMSE/dA‖_F at step 0 (Layer::backward)",
       &M::regressionGradA, &R::regressionGradA},
      {"regression_grad_b", "MSE ‖∂B‖", "‖dMSE/dB‖_F at step 0 (Layer::backward)",
       &M::regressionGradB, &R::regressionGradB},
      {"base_change", "‖W'−W‖_F", "Frobenius norm of the change the init made to the base weight",
       &M::baseChange, &R::baseChange},
      {"output_change_max", "max Δy", "max |f(X) - X W^T| at step 0", &M::outputChangeMax,
       &R::outputChangeMax},
      {"output_change_rel", "Δy rel", "max |f(X) - X W^T| / max |X W^T| at step 0",
       &M::outputChangeRel, &R::outputChangeRel},
  }};
  return metrics;
}

const InitializationResult& InitializationReport::at(std::string_view name) const {
  for (const auto& r : results)
    if (r.name == name) return r;
  detail::fail("InitializationReport::at", "expected the name of an analyzed initializer, got '{}'",
               name);
}

std::string InitializationReport::toCsv() const {
  std::string out = "name,initializer,data_dependent,trials,failed_trials,error";
  for (const auto& m : initializationMetrics())
    for (const char* field : {"mean", "std", "min", "max", "count"})
      out += fmt::format(",{}_{}", m.key, field);
  out += '\n';
  for (const auto& r : results) {
    out += fmt::format("{},{},{},{},{},{}", csvField(r.name), csvField(r.initializerName),
                       r.dataDependent ? "true" : "false", r.trials, r.failedTrials,
                       csvField(r.error));
    for (const auto& m : initializationMetrics()) {
      const Statistic& st = r.*(m.statistic);
      out += fmt::format(",{:.17g},{:.17g},{:.17g},{:.17g},{}", st.mean, st.stddev, st.min, st.max,
                         st.count);
    }
    out += '\n';
  }
  return out;
}

std::string InitializationReport::format() const {
  const auto& metrics = initializationMetrics();
  std::string out = fmt::format(
      "LoRA initialization analysis ({}): {} x {} (out x in), r = {}, alpha = {} ({}, s = {}), "
      "{} trial(s) from seed {}\n",
      scalar, options.outFeatures, options.inFeatures, options.rank, options.alpha,
      toString(options.scaling), number4(scaling), options.trials, options.seed);
  out += fmt::format(
      "base weight: {}; regression: N = {}, Y = X·Tᵀ with T = {}; base-model MSE {}\n\n",
      hasBaseWeight ? "given (each trial's layer is built on its own copy)"
                    : "none (layers built without one; forward uses W = 0)",
      options.batchSize,
      hasTarget
          ? std::string("given")
          : fmt::format("W + planted rank-{} delta (σ = {})", targetRank, options.targetScale),
      number4(baseLoss));
  auto table = [&](std::size_t first, std::size_t last) {
    std::vector<std::string> header{"init"};
    for (std::size_t i = first; i < last; ++i) header.emplace_back(metrics[i].label);
    MarkdownTable t(std::move(header));
    for (const auto& r : results) {
      std::vector<std::string> row{r.name};
      for (std::size_t i = first; i < last; ++i) {
        const Statistic& st = r.*(metrics[i].statistic);
        if (r.succeededTrials() == 0) {
          row.emplace_back("error");
        } else if (metrics[i].statistic == &InitializationResult::conditionNumber) {
          row.push_back(fmt::format("{} ({}/{})", cell(st), st.count, r.succeededTrials()));
        } else {
          row.push_back(cell(st));
        }
      }
      t.addRow(std::move(row));
    }
    return t.format();
  };
  out += "Initial state (mean ± std over trials):\n\n" + table(0, 6);
  out +=
      "\nFirst gradients and effect on the model (fake L = ‖ΔW‖_F²; MSE on the regression "
      "batch):\n\n" +
      table(6, metrics.size());
  bool header = false;
  for (const auto& r : results) {
    if (r.ok()) continue;
    if (!header) out += "\nErrors:\n";
    header = true;
    out += fmt::format("- {}: failed in {} of {} trials: {}\n", r.name, r.failedTrials, r.trials,
                       r.error);
  }
  return out;
}

void InitializationReport::print(std::FILE* file) const {
  fmt::print(file, "{}", format());
}

std::string InitializationReport::csvField(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string quoted = "\"";
  for (const char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + '"';
}

std::string InitializationReport::number4(double v) {
  if (std::isnan(v)) return "n/a";
  if (v == 0.0) return "0";
  return fmt::format("{:.4g}", v);
}

std::string InitializationReport::cell(const Statistic& st) {
  if (!st.defined()) return "n/a";
  // a spread at rounding level (1e-12 of the mean) is shown as none; the data keep it
  if (st.stddev <= 1e-12 * std::abs(st.mean)) return number4(st.mean);
  return fmt::format("{} ± {:.2g}", number4(st.mean), st.stddev);
}

namespace {

// A finite value, else null.
nlohmann::json number(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json InitializationReport::toJson() const {
  using nlohmann::json;
  json j;
  j["config"] = {{"scalar", scalar},
                 {"out_features", options.outFeatures},
                 {"in_features", options.inFeatures},
                 {"rank", options.rank},
                 {"alpha", options.alpha},
                 {"scaling_mode", std::string(toString(options.scaling))},
                 {"scaling", scaling},
                 {"trials", options.trials},
                 {"seed", options.seed},
                 {"batch_size", options.batchSize},
                 {"target_rank", targetRank},
                 {"target_scale", options.targetScale},
                 {"data_seed", options.dataSeed},
                 {"base_weight", hasBaseWeight},
                 {"target_given", hasTarget}};
  j["base_loss"] = number(baseLoss);
  j["metrics"] = json::array();
  for (const auto& m : initializationMetrics())
    j["metrics"].push_back(
        {{"key", std::string(m.key)}, {"description", std::string(m.description)}});
  j["results"] = json::array();
  for (const auto& r : results) {
    json row = {{"name", r.name},
                {"initializer", r.initializerName},
                {"data_dependent", r.dataDependent},
                {"trials", r.trials},
                {"failed_trials", r.failedTrials}};
    row["error"] = r.error.empty() ? json(nullptr) : json(r.error);
    json stats = json::object();
    for (const auto& m : initializationMetrics()) {
      const Statistic& st = r.*(m.statistic);
      stats[std::string(m.key)] = {{"mean", number(st.mean)},
                                   {"std", number(st.stddev)},
                                   {"min", number(st.min)},
                                   {"max", number(st.max)},
                                   {"count", st.count}};
    }
    row["statistics"] = std::move(stats);
    json trials = json::array();
    for (const auto& t : r.measurements) {
      json one = {{"seed", t.seed}};
      for (const auto& m : initializationMetrics()) one[std::string(m.key)] = number(t.*(m.value));
      trials.push_back(std::move(one));
    }
    row["measurements"] = std::move(trials);
    j["results"].push_back(std::move(row));
  }
  return j;
}

}  // namespace lora::analysis
