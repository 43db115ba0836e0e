#pragma once
/// \file experiment.hpp
/// \brief Strategy experiments (the article's section 4.1, made real): strategies described by
/// rank, initializer, rank selector and optimizer; runs over several seeds; the article's report
/// (ranking by final accuracy, best accuracy, parameters, convergence step, time, most
/// parameter-efficient strategy) with mean ± spread over seeds, as text and JSON.
///
/// The library defines what a run records and how runs are summarised; a task (a model and its
/// data) does the training. Any object with `RunRecord run(const Strategy&, std::uint64_t seed)`
/// is an ExperimentTask; examples/experiments/ holds two (handwritten digits, a character-level
/// language model).
///
/// \code
/// std::vector<lora::analysis::Strategy> strategies = {
///     {.name = "rank 4, peft default", .rank = 4, .init = "peft_default"},
///     {.name = "rank 16, xavier", .rank = 16, .init = "xavier"}};
/// auto report = lora::analysis::runExperiment("digits", strategies, {1, 2, 3}, task);
/// fmt::print("{}", lora::analysis::formatReport(report));
/// \endcode

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "lora/error.hpp"
#include "lora/scaling.hpp"

namespace lora::analysis {

/// \brief The article's convergence step (`_find_convergence_step`, section 4.1): the first i in
/// [window, n − window) whose window losses[i, i + window) has population standard deviation
/// below \p threshold; n (the number of losses) when there is none or when n < 2·window.
/// Losses must be finite and window >= 1 (lora::Error otherwise).
inline std::int64_t convergenceStep(std::span<const double> losses, std::size_t window = 50,
                                    double threshold = 0.01) {
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

/// Optimizer settings of a strategy (train::AdamW or train::Sgd over the trainable parameters).
struct OptimizerSpec {
  std::string rule = "adamw";  ///< "adamw" or "sgd"
  double lr = 1e-3;
  double weightDecay = 0.0;
  double momentum = 0.0;       ///< sgd only
  double loraPlusRatio = 1.0;  ///< LoRA+ λ (B's learning rate is λ·lr)
  double maxGradNorm = 0.0;    ///< > 0: global-norm clipping

  friend bool operator==(const OptimizerSpec&, const OptimizerSpec&) = default;
};

/// \brief One strategy of an experiment: what is trained and how. The task interprets the
/// initializer and selector keys (it owns the model, so it knows which base weights they read).
struct Strategy {
  std::string name;
  Eigen::Index rank = 8;                        ///< initial LoRA rank of every adapted layer
  double alpha = 16.0;                          ///< lora_alpha
  ScalingMode scaling = ScalingMode::Standard;  ///< alpha/r, or alpha/sqrt(r) (rsLoRA)
  std::string init = "peft_default";            ///< initializer key
  std::string selector = "none";                ///< rank selector key ("none": fixed rank)
  Eigen::Index maxRank = 64;                    ///< ceiling for a selector
  OptimizerSpec optimizer{};
  bool fullFineTune = false;  ///< no adapter: every weight trains (the ceiling)

  friend bool operator==(const Strategy&, const Strategy&) = default;
};

/// The adapted layers' ranks from step `step` on.
struct RankPoint {
  std::int64_t step = 0;
  std::vector<Eigen::Index> ranks;
};

/// \brief Everything one run (one strategy, one seed) recorded.
struct RunRecord {
  std::string strategy;
  std::uint64_t seed = 0;
  std::vector<double> trainLoss;         ///< the mini-batch loss of every step (nats)
  std::vector<std::int64_t> evalSteps;   ///< steps of the evaluations (0: before training)
  std::vector<double> evalLoss;          ///< held-out loss at evalSteps (nats)
  std::vector<double> evalAccuracy;      ///< held-out accuracy at evalSteps, in [0, 1]
  std::vector<RankPoint> ranks;          ///< at step 0 and at every change
  std::int64_t trainableParameters = 0;  ///< at the end of the run
  double wallSeconds = 0;
  std::int64_t convergenceStep = 0;  ///< convergenceStep(trainLoss); trainLoss.size(): never

  double finalAccuracy() const { return evalAccuracy.empty() ? 0.0 : evalAccuracy.back(); }
  double bestAccuracy() const {
    return evalAccuracy.empty() ? 0.0 : *std::max_element(evalAccuracy.begin(), evalAccuracy.end());
  }
  double finalLoss() const { return evalLoss.empty() ? 0.0 : evalLoss.back(); }
  bool converged() const { return convergenceStep < static_cast<std::int64_t>(trainLoss.size()); }
};

/// Mean, sample standard deviation (0 for one value), min and max of a set of runs' values.
struct Spread {
  double mean = 0, stddev = 0, min = 0, max = 0;
  std::size_t count = 0;

  static Spread of(std::span<const double> values) {
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
};

/// One strategy over all its seeds.
struct StrategySummary {
  Strategy strategy;
  Spread finalAccuracy, bestAccuracy, finalLoss, parameters, convergenceStep, wallSeconds;
  std::size_t convergedRuns = 0;  ///< runs whose losses met the convergence rule
  std::size_t runs = 0;
};

/// How the report names and scales the held-out loss (e.g. bits per character: 1/ln 2).
struct ReportOptions {
  std::string lossName = "loss";
  double lossScale = 1.0;  ///< printed loss = loss (nats) · lossScale
};

/// \brief The article's report over several seeds.
struct ExperimentReport {
  std::string task;
  ReportOptions options;
  std::vector<StrategySummary> ranking;  ///< by mean final accuracy, best first
  std::string bestStrategy;              ///< ranking.front()
  /// The article's efficiency: the smallest parameters / final accuracy (means over seeds).
  std::string mostEfficientStrategy;
  std::vector<RunRecord> runs;  ///< every run, in the order they ran
};

/// \brief Groups \p runs by strategy (in \p strategies' order; every strategy needs >= 1 run)
/// and ranks them. Throws lora::Error for a run of an unknown strategy or a strategy without runs.
inline ExperimentReport summarize(std::string task, std::span<const Strategy> strategies,
                                  std::vector<RunRecord> runs, ReportOptions options = {}) {
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

/// Calls the callback before each run: (run index, total runs, strategy, seed).
using RunCallback = std::function<void(std::size_t, std::size_t, const Strategy&, std::uint64_t)>;

/// A task: trains one strategy with one seed and records the run.
template <typename T>
concept ExperimentTask = requires(T& task, const Strategy& s, std::uint64_t seed) {
  { task.run(s, seed) } -> std::same_as<RunRecord>;
};

/// \brief Runs every strategy with every seed (strategy-major), times each run, fills the
/// convergence step and summarises. Throws lora::Error for duplicate or empty strategy names or
/// no seeds; a task's exception propagates.
template <ExperimentTask Task>
ExperimentReport runExperiment(std::string taskName, std::span<const Strategy> strategies,
                               std::span<const std::uint64_t> seeds, Task& task,
                               ReportOptions options = {}, const RunCallback& onRun = {}) {
  constexpr const char* where = "runExperiment";
  if (seeds.empty()) detail::fail(where, "expected at least one seed, got none");
  for (std::size_t i = 0; i < strategies.size(); ++i) {
    if (strategies[i].name.empty())
      detail::fail(where, "expected named strategies, got an empty name");
    for (std::size_t j = 0; j < i; ++j)
      if (strategies[j].name == strategies[i].name)
        detail::fail(where, "expected distinct strategy names, got '{}' twice", strategies[i].name);
  }
  std::vector<RunRecord> runs;
  const std::size_t total = strategies.size() * seeds.size();
  for (const Strategy& s : strategies)
    for (std::uint64_t seed : seeds) {
      if (onRun) onRun(runs.size(), total, s, seed);
      const auto start = std::chrono::steady_clock::now();
      RunRecord r = task.run(s, seed);
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      r.strategy = s.name;
      r.seed = seed;
      if (r.wallSeconds <= 0) r.wallSeconds = took.count();
      r.convergenceStep = convergenceStep(r.trainLoss);
      runs.push_back(std::move(r));
    }
  return summarize(std::move(taskName), strategies, std::move(runs), std::move(options));
}

/// "mean ± std" with \p precision decimals.
inline std::string formatSpread(const Spread& s, int precision) {
  return fmt::format("{:.{}f} ± {:.{}f}", s.mean, precision, s.stddev, precision);
}

/// \brief The article's text report (`generate_report`), with mean ± standard deviation over
/// seeds: the ranking by final accuracy, then the best and the most parameter-efficient strategy.
inline std::string formatReport(const ExperimentReport& report) {
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

/// The strategy as JSON (the keys are the field names).
inline nlohmann::json toJson(const Strategy& s) {
  return {{"name", s.name},
          {"rank", s.rank},
          {"alpha", s.alpha},
          {"scaling", std::string(toString(s.scaling))},
          {"init", s.init},
          {"selector", s.selector},
          {"max_rank", s.maxRank},
          {"full_fine_tune", s.fullFineTune},
          {"optimizer",
           {{"rule", s.optimizer.rule},
            {"lr", s.optimizer.lr},
            {"weight_decay", s.optimizer.weightDecay},
            {"momentum", s.optimizer.momentum},
            {"lora_plus_ratio", s.optimizer.loraPlusRatio},
            {"max_grad_norm", s.optimizer.maxGradNorm}}}};
}

inline nlohmann::json toJson(const Spread& s) {
  return {{"mean", s.mean}, {"std", s.stddev}, {"min", s.min}, {"max", s.max}, {"n", s.count}};
}

/// \brief The whole report as JSON: the ranking with every spread, and every run with its
/// curves (train loss per step, held-out loss and accuracy per evaluation, ranks over time).
inline nlohmann::json toJson(const ExperimentReport& report) {
  nlohmann::json j;
  j["task"] = report.task;
  j["loss_name"] = report.options.lossName;
  j["loss_scale"] = report.options.lossScale;
  j["best_strategy"] = report.bestStrategy;
  j["most_efficient_strategy"] = report.mostEfficientStrategy;
  j["ranking"] = nlohmann::json::array();
  for (const StrategySummary& s : report.ranking)
    j["ranking"].push_back({{"strategy", toJson(s.strategy)},
                            {"final_accuracy", toJson(s.finalAccuracy)},
                            {"best_accuracy", toJson(s.bestAccuracy)},
                            {"final_loss", toJson(s.finalLoss)},
                            {"parameters", toJson(s.parameters)},
                            {"convergence_step", toJson(s.convergenceStep)},
                            {"wall_seconds", toJson(s.wallSeconds)},
                            {"converged_runs", s.convergedRuns},
                            {"runs", s.runs}});
  j["runs"] = nlohmann::json::array();
  for (const RunRecord& r : report.runs) {
    nlohmann::json ranks = nlohmann::json::array();
    for (const RankPoint& p : r.ranks) ranks.push_back({{"step", p.step}, {"ranks", p.ranks}});
    j["runs"].push_back({{"strategy", r.strategy},
                         {"seed", r.seed},
                         {"train_loss", r.trainLoss},
                         {"eval_steps", r.evalSteps},
                         {"eval_loss", r.evalLoss},
                         {"eval_accuracy", r.evalAccuracy},
                         {"ranks", ranks},
                         {"trainable_parameters", r.trainableParameters},
                         {"wall_seconds", r.wallSeconds},
                         {"convergence_step", r.convergenceStep}});
  }
  return j;
}

/// \brief The mean over runs of \p strategy of a per-evaluation series (evalLoss or
/// evalAccuracy), at the evaluation steps of its first run (all runs of a strategy evaluate at
/// the same steps). Empty when there are no runs.
inline std::pair<std::vector<double>, std::vector<double>> meanCurve(
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
