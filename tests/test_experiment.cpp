// lora/analysis/experiment.hpp and experiment_json.hpp: the article's convergence rule, summaries
// over seeds, the article's report (text and JSON) and the runner.
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lora/analysis/experiment.hpp"
#include "lora/analysis/experiment_json.hpp"
#include "lora/random.hpp"

namespace {

using lora::analysis::ExperimentReport;
using lora::analysis::RunRecord;
using lora::analysis::Spread;
using lora::analysis::Strategy;

// The article's `_find_convergence_step`, transcribed literally (numpy's std is the population
// standard deviation), as the reference.
std::int64_t articleConvergence(const std::vector<double>& losses, std::size_t window,
                                double threshold) {
  const std::size_t n = losses.size();
  if (n < window * 2) return static_cast<std::int64_t>(n);
  for (std::size_t i = window; i < n - window; ++i) {
    const double mean =
        std::accumulate(losses.begin() + i, losses.begin() + i + window, 0.0) / window;
    double ss = 0;
    for (std::size_t j = i; j < i + window; ++j) ss += (losses[j] - mean) * (losses[j] - mean);
    if (std::sqrt(ss / window) < threshold) return static_cast<std::int64_t>(i);
  }
  return static_cast<std::int64_t>(n);
}

TEST(ConvergenceStep, MatchesTheArticleOnNoisyDecays) {
  lora::Rng rng(5);
  for (int trial = 0; trial < 40; ++trial) {
    const std::size_t n = 60 + rng() % 400;
    const double tau = 20 + rng.uniform01() * 150, noise = rng.uniform01() * 0.03;
    std::vector<double> losses(n);
    for (std::size_t i = 0; i < n; ++i)
      losses[i] = 2.0 * std::exp(-double(i) / tau) + noise * rng.normal();
    EXPECT_EQ(lora::analysis::convergenceStep(losses), articleConvergence(losses, 50, 0.01))
        << "trial " << trial;
    EXPECT_EQ(lora::analysis::convergenceStep(losses, 10, 0.05),
              articleConvergence(losses, 10, 0.05));
  }
}

TEST(ConvergenceStep, FlatFromTheStartConvergesAtTheWindow) {
  const std::vector<double> flat(200, 1.0);
  EXPECT_EQ(lora::analysis::convergenceStep(flat), 50);  // the article starts at i = window
}

TEST(ConvergenceStep, TooShortOrNeverFlatGivesTheLength) {
  EXPECT_EQ(lora::analysis::convergenceStep(std::vector<double>(99, 1.0)), 99);
  std::vector<double> zigzag(300);
  for (std::size_t i = 0; i < zigzag.size(); ++i) zigzag[i] = i % 2 ? 1.0 : 0.9;
  EXPECT_EQ(lora::analysis::convergenceStep(zigzag), 300);
}

TEST(ConvergenceStep, FindsTheStepWhereTheLossSettles) {
  std::vector<double> losses(400);
  for (std::size_t i = 0; i < losses.size(); ++i) losses[i] = i < 150 ? 3.0 - 0.01 * i : 1.5;
  // Windows [i, i + 50) with i >= 150 are constant; earlier ones include the slope (0.01/step,
  // std over 50 steps about 0.14), so the first flat window starts where the loss settles.
  EXPECT_EQ(lora::analysis::convergenceStep(losses), articleConvergence(losses, 50, 0.01));
  EXPECT_GE(lora::analysis::convergenceStep(losses), 140);
  EXPECT_LE(lora::analysis::convergenceStep(losses), 150);
}

TEST(ConvergenceStep, RejectsBadInput) {
  const std::vector<double> bad{1.0, NAN, 2.0};
  EXPECT_THROW(lora::analysis::convergenceStep(bad), lora::Error);
  EXPECT_THROW(lora::analysis::convergenceStep(std::vector<double>(10, 1.0), 0), lora::Error);
  try {
    lora::analysis::convergenceStep(bad);
  } catch (const lora::Error& e) {
    EXPECT_NE(std::string(e.what()).find("convergenceStep"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("step 1"), std::string::npos);
  }
}

TEST(Spread, MeanSampleStdMinMax) {
  const std::vector<double> v{1, 2, 3, 4};
  const Spread s = Spread::of(v);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.stddev, std::sqrt(5.0 / 3.0));
  EXPECT_EQ(s.min, 1);
  EXPECT_EQ(s.max, 4);
  EXPECT_EQ(s.count, 4u);
  EXPECT_EQ(Spread::of(std::vector<double>{7}).stddev, 0);
}

RunRecord run(const std::string& strategy, std::uint64_t seed, std::vector<double> acc,
              std::int64_t params) {
  RunRecord r;
  r.strategy = strategy;
  r.seed = seed;
  r.trainLoss.assign(120, 1.0);
  r.trainLoss[0] = 3.0;
  for (std::size_t i = 0; i < acc.size(); ++i) {
    r.evalSteps.push_back(static_cast<std::int64_t>(i * 10));
    r.evalLoss.push_back(1.0 - acc[i]);
  }
  r.evalAccuracy = std::move(acc);
  r.trainableParameters = params;
  r.convergenceStep = lora::analysis::convergenceStep(r.trainLoss);
  r.wallSeconds = 0.5;
  return r;
}

TEST(Summarize, RanksByMeanFinalAccuracyAndFindsTheArticlesMostEfficient) {
  const std::vector<Strategy> strategies{
      {.name = "small", .rank = 2}, {.name = "big", .rank = 32}, {.name = "mid", .rank = 8}};
  std::vector<RunRecord> runs{
      run("small", 1, {0.1, 0.70}, 100),      run("small", 2, {0.1, 0.74}, 100),
      run("big", 1, {0.1, 0.95, 0.90}, 1600), run("big", 2, {0.1, 0.92, 0.92}, 1600),
      run("mid", 1, {0.1, 0.80}, 400),        run("mid", 2, {0.1, 0.84}, 400)};
  const ExperimentReport r = lora::analysis::summarize("toy", strategies, runs);
  ASSERT_EQ(r.ranking.size(), 3u);
  EXPECT_EQ(r.ranking[0].strategy.name, "big");
  EXPECT_EQ(r.ranking[1].strategy.name, "mid");
  EXPECT_EQ(r.ranking[2].strategy.name, "small");
  EXPECT_EQ(r.bestStrategy, "big");
  EXPECT_DOUBLE_EQ(r.ranking[0].finalAccuracy.mean, 0.91);
  EXPECT_DOUBLE_EQ(r.ranking[0].bestAccuracy.mean, 0.935);
  EXPECT_EQ(r.ranking[0].runs, 2u);
  // parameters / accuracy: small 100/0.72 = 139, mid 400/0.82 = 488, big 1600/0.91 = 1758.
  EXPECT_EQ(r.mostEfficientStrategy, "small");
  EXPECT_EQ(r.ranking[0].convergedRuns, 2u);
  EXPECT_DOUBLE_EQ(r.ranking[0].convergenceStep.mean, 50);

  const std::string text = lora::analysis::formatReport(r);
  EXPECT_LT(text.find("1. big"), text.find("2. mid"));
  EXPECT_LT(text.find("2. mid"), text.find("3. small"));
  EXPECT_NE(text.find("0.9100 ± 0.0141"), std::string::npos) << text;
  EXPECT_NE(text.find("Most parameter-efficient: small"), std::string::npos);

  const nlohmann::json j = lora::analysis::toJson(r);
  EXPECT_EQ(j["best_strategy"], "big");
  EXPECT_EQ(j["ranking"][0]["strategy"]["rank"], 32);
  EXPECT_DOUBLE_EQ(j["ranking"][2]["final_accuracy"]["mean"].get<double>(), 0.72);
  EXPECT_EQ(j["runs"].size(), 6u);
  EXPECT_EQ(j["runs"][2]["eval_accuracy"].size(), 3u);

  const auto [steps, mean] = lora::analysis::meanCurve(r, "big", &RunRecord::evalAccuracy);
  ASSERT_EQ(mean.size(), 3u);
  EXPECT_DOUBLE_EQ(mean[1], 0.935);
  EXPECT_EQ(steps[2], 20);
}

TEST(Summarize, RejectsUnknownRunsAndStrategiesWithoutRuns) {
  const std::vector<Strategy> strategies{{.name = "a"}, {.name = "b"}};
  EXPECT_THROW(lora::analysis::summarize("t", strategies, {run("a", 1, {0.5}, 1)}), lora::Error);
  EXPECT_THROW(
      lora::analysis::summarize(
          "t", strategies, {run("a", 1, {0.5}, 1), run("b", 1, {0.5}, 1), run("c", 1, {0.5}, 1)}),
      lora::Error);
}

// A task whose accuracy grows with the rank, to check the runner end to end.
struct RankTask {
  int calls = 0;
  RunRecord run(const Strategy& s, std::uint64_t seed) {
    ++calls;
    RunRecord r;
    for (int i = 0; i < 200; ++i) r.trainLoss.push_back(1.0 / (1 + i) + 0.001 * double(seed));
    r.evalSteps = {0, 200};
    r.evalAccuracy = {0.1, 1.0 - 1.0 / double(s.rank + 1)};
    r.evalLoss = {2.0, 1.0 / double(s.rank)};
    r.trainableParameters = s.rank * 100;
    return r;
  }
};
static_assert(lora::analysis::ExperimentTask<RankTask>);

TEST(RunExperiment, RunsEveryStrategyWithEverySeed) {
  RankTask task;
  const std::vector<Strategy> strategies{{.name = "r1", .rank = 1}, {.name = "r4", .rank = 4}};
  const std::vector<std::uint64_t> seeds{1, 2, 3};
  std::vector<std::string> seen;
  const ExperimentReport r = lora::analysis::runExperiment(
      "rank task", strategies, seeds, task, {},
      [&](std::size_t i, std::size_t n, const Strategy& s, std::uint64_t seed) {
        seen.push_back(fmt::format("{}/{} {} {}", i, n, s.name, seed));
      });
  EXPECT_EQ(task.calls, 6);
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_EQ(seen.front(), "0/6 r1 1");
  EXPECT_EQ(seen.back(), "5/6 r4 3");
  EXPECT_EQ(r.bestStrategy, "r4");
  ASSERT_EQ(r.runs.size(), 6u);
  EXPECT_EQ(r.runs[4].strategy, "r4");
  EXPECT_EQ(r.runs[4].seed, 2u);
  EXPECT_GT(r.runs[4].wallSeconds, 0);
  EXPECT_EQ(r.runs[0].convergenceStep, articleConvergence(r.runs[0].trainLoss, 50, 0.01));
  EXPECT_EQ(r.ranking[0].finalAccuracy.count, 3u);
}

TEST(RunExperiment, RejectsDuplicateNamesAndNoSeeds) {
  RankTask task;
  const std::vector<Strategy> twice{{.name = "x"}, {.name = "x"}};
  const std::vector<std::uint64_t> seeds{1};
  EXPECT_THROW(lora::analysis::runExperiment("t", twice, seeds, task), lora::Error);
  const std::vector<Strategy> one{{.name = "x"}};
  EXPECT_THROW(lora::analysis::runExperiment("t", one, std::vector<std::uint64_t>{}, task),
               lora::Error);
  EXPECT_EQ(task.calls, 0);
}

}  // namespace
