#pragma once
/// \file experiment.hpp
/// \brief Strategy experiments (the article's section 4.1, made real): strategies described by
/// rank, initializer, rank selector and optimizer; runs over several seeds; the article's report
/// (ranking by final accuracy, best accuracy, parameters, convergence step, time, most
/// parameter-efficient strategy) with mean ± spread over seeds, as text and (with
/// lora/analysis/experiment_json.hpp) JSON.
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
#include <concepts>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"
#include "lora/scaling.hpp"

namespace lora::analysis {

/// \brief The article's convergence step (`_find_convergence_step`, section 4.1): the first i in
/// [window, n − window) whose window losses[i, i + window) has population standard deviation
/// below \p threshold; n (the number of losses) when there is none or when n < 2·window.
/// Losses must be finite and window >= 1 (lora::Error otherwise).
std::int64_t convergenceStep(std::span<const double> losses, std::size_t window = 50,
                             double threshold = 0.01);

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

  static Spread of(std::span<const double> values);
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
ExperimentReport summarize(std::string task, std::span<const Strategy> strategies,
                           std::vector<RunRecord> runs, ReportOptions options = {});

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
std::string formatSpread(const Spread& s, int precision);

/// \brief The article's text report (`generate_report`), with mean ± standard deviation over
/// seeds: the ranking by final accuracy, then the best and the most parameter-efficient strategy.
std::string formatReport(const ExperimentReport& report);

/// \brief The mean over runs of \p strategy of a per-evaluation series (evalLoss or
/// evalAccuracy), at the evaluation steps of its first run (all runs of a strategy evaluate at
/// the same steps). Empty when there are no runs.
std::pair<std::vector<double>, std::vector<double>> meanCurve(
    const ExperimentReport& report, const std::string& strategy,
    std::vector<double> RunRecord::*series);

}  // namespace lora::analysis
