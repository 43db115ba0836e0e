#include "lora/analysis/experiment.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "lora/error.hpp"
#include "lora/scaling.hpp"

namespace lora::analysis {

std::int64_t convergenceStep(std::span<const double> losses, std::size_t window, double threshold) {
  constexpr const char* where = "convergenceStep";
  if (window < 1) detail::fail(where, "expected a window >= 1, got 0");
  if (!(threshold >= 0)) detail::fail(where, "expected a threshold >= 0, got {}", threshold);
  for (std::size_t i = 0; i < losses.size(); ++i)
    if (!std::isfinite(losses[i]))
      detail::fail(where, "expected finite losses, got {} at step {}", losses[i], i);
  const std::size_t n = losses.size();
  if (n < 2 * window) return static_cast<std::int64_t>(n);
  for (std::size_t i = window; i < n - window; ++i) {
    double mean = 0;
    for (std::size_t j = i; j < i + window; ++j) mean += losses[j];
    mean /= static_cast<double>(window);
    double var = 0;
    for (std::size_t j = i; j < i + window; ++j) var += (losses[j] - mean) * (losses[j] - mean);
    if (std::sqrt(var / static_cast<double>(window)) < threshold)
      return static_cast<std::int64_t>(i);
  }
  return static_cast<std::int64_t>(n);
}

Spread Spread::of(std::span<const double> values) {
  Spread s;
  s.count = values.size();
  if (values.empty()) return s;
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(s.count);
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  if (s.count > 1) {
    double ss = 0;
    for (double v : values) ss += (v - s.mean) * (v - s.mean);
    s.stddev = std::sqrt(ss / static_cast<double>(s.count - 1));
  }
  return s;
}

ExperimentReport summarize(std::string task, std::span<const Strategy> strategies,
                           std::vector<RunRecord> runs, ReportOptions options) {
  constexpr const char* where = "summarize";
  if (strategies.empty()) detail::fail(where, "expected at least one strategy, got none");
  ExperimentReport report;
  report.task = std::move(task);
  report.options = std::move(options);
  for (const RunRecord& r : runs)
    if (std::none_of(strategies.begin(), strategies.end(),
                     [&](const Strategy& s) { return s.name == r.strategy; }))
      detail::fail(where, "expected runs of the given strategies, got one of '{}'", r.strategy);
  for (const Strategy& s : strategies) {
    std::vector<double> fin, best, loss, params, conv, secs;
    StrategySummary sum;
    sum.strategy = s;
    for (const RunRecord& r : runs) {
      if (r.strategy != s.name) continue;
      fin.push_back(r.finalAccuracy());
      best.push_back(r.bestAccuracy());
      loss.push_back(r.finalLoss());
      params.push_back(static_cast<double>(r.trainableParameters));
      conv.push_back(static_cast<double>(r.convergenceStep));
      secs.push_back(r.wallSeconds);
      sum.convergedRuns += r.converged() ? 1 : 0;
    }
    if (fin.empty()) detail::fail(where, "expected at least one run of '{}', got none", s.name);
    sum.runs = fin.size();
    sum.finalAccuracy = Spread::of(fin);
    sum.bestAccuracy = Spread::of(best);
    sum.finalLoss = Spread::of(loss);
    sum.parameters = Spread::of(params);
    sum.convergenceStep = Spread::of(conv);
    sum.wallSeconds = Spread::of(secs);
    report.ranking.push_back(std::move(sum));
  }
  std::stable_sort(report.ranking.begin(), report.ranking.end(),
                   [](const StrategySummary& a, const StrategySummary& b) {
                     return a.finalAccuracy.mean > b.finalAccuracy.mean;
                   });
  report.bestStrategy = report.ranking.front().strategy.name;
  double bestRatio = std::numeric_limits<double>::infinity();
  for (const StrategySummary& s : report.ranking) {
    if (!(s.finalAccuracy.mean > 0)) continue;
    const double ratio = s.parameters.mean / s.finalAccuracy.mean;
    if (ratio < bestRatio) {
      bestRatio = ratio;
      report.mostEfficientStrategy = s.strategy.name;
    }
  }
  report.runs = std::move(runs);
  return report;
}

std::string formatSpread(const Spread& s, int precision) {
  return fmt::format("{:.{}f} ± {:.{}f}", s.mean, precision, s.stddev, precision);
}

std::string formatReport(const ExperimentReport& report) {
  const ReportOptions& o = report.options;
  std::string out =
      fmt::format("{:=<72}\nStrategy comparison: {}\n{:=<72}\n\n", "", report.task, "");
  out += "Ranking by final accuracy (mean ± std over seeds):\n";
  out += fmt::format("{:-<72}\n", "");
  int place = 1;
  for (const StrategySummary& s : report.ranking) {
    const Spread scaledLoss{s.finalLoss.mean * o.lossScale, s.finalLoss.stddev * o.lossScale,
                            s.finalLoss.min * o.lossScale, s.finalLoss.max * o.lossScale,
                            s.finalLoss.count};
    out += fmt::format("{}. {}\n", place++, s.strategy.name);
    out += fmt::format("   rank {}{}, init {}, {}\n", s.strategy.fullFineTune ? 0 : s.strategy.rank,
                       s.strategy.fullFineTune ? " (full fine-tuning)" : "", s.strategy.init,
                       toString(s.strategy.scaling));
    out += fmt::format("   final accuracy:   {}  (min {:.4f}, max {:.4f}, {} seeds)\n",
                       formatSpread(s.finalAccuracy, 4), s.finalAccuracy.min, s.finalAccuracy.max,
                       s.runs);
    out += fmt::format("   best accuracy:    {}\n", formatSpread(s.bestAccuracy, 4));
    out += fmt::format("   final {}: {}\n", o.lossName, formatSpread(scaledLoss, 4));
    out += fmt::format("   parameters:       {:.0f}\n", s.parameters.mean);
    out += fmt::format("   convergence step: {} ({} of {} runs converged)\n",
                       formatSpread(s.convergenceStep, 0), s.convergedRuns, s.runs);
    out += fmt::format("   training time:    {} s\n\n", formatSpread(s.wallSeconds, 2));
  }
  out += "Efficiency:\n";
  out += fmt::format("{:-<72}\n", "");
  const auto find = [&](const std::string& name) -> const StrategySummary* {
    for (const StrategySummary& s : report.ranking)
      if (s.strategy.name == name) return &s;
    return nullptr;
  };
  if (const StrategySummary* b = find(report.bestStrategy))
    out += fmt::format("Best strategy: {} (final accuracy {:.4f})\n", b->strategy.name,
                       b->finalAccuracy.mean);
  if (const StrategySummary* e = find(report.mostEfficientStrategy))
    out += fmt::format("Most parameter-efficient: {} (accuracy per million parameters {:.2f})\n",
                       e->strategy.name, e->finalAccuracy.mean / e->parameters.mean * 1e6);
  return out;
}

std::pair<std::vector<double>, std::vector<double>> meanCurve(
    const ExperimentReport& report, const std::string& strategy,
    std::vector<double> RunRecord::*series) {
  std::vector<double> steps, sum;
  std::size_t n = 0;
  for (const RunRecord& r : report.runs) {
    if (r.strategy != strategy) continue;
    const std::vector<double>& v = r.*series;
    if (n == 0) {
      steps.assign(r.evalSteps.begin(), r.evalSteps.end());
      sum.assign(v.size(), 0.0);
    }
    if (v.size() != sum.size())
      detail::fail("meanCurve", "expected runs of '{}' with {} evaluations, got {}", strategy,
                   sum.size(), v.size());
    for (std::size_t i = 0; i < v.size(); ++i) sum[i] += v[i];
    ++n;
  }
  for (double& s : sum) s /= static_cast<double>(std::max<std::size_t>(n, 1));
  return {steps, sum};
}

}  // namespace lora::analysis
