// The experiment pipelines of examples/experiments/, shortened: pretrain, adapt, report. They
// check that the tasks measure something real (LoRA adaptation beats the frozen model by a wide
// margin on the shifted digits and on French), not how good any strategy is.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "experiments/charlm.hpp"
#include "experiments/digits.hpp"
#include "experiments/studies.hpp"
#include "support/cli.hpp"

namespace {

using namespace lora::experiments;
using lora::analysis::Strategy;

const DigitsSplit& digits() {
  static const DigitsSplit split =
      splitDigits(loadDigits(LORA_DIGITS_CSV), DigitShift::Rotate90, 2024);
  return split;
}

const Network& digitsNetwork() {
  static const Network net =
      pretrain(std::vector<Index>{64, 64, 10}, digits().train, {.steps = 400, .quiet = true});
  return net;
}

TEST(DigitsData, LoadsTheUciTestSet) {
  const Dataset d = loadDigits(LORA_DIGITS_CSV);
  EXPECT_EQ(d.size(), 1797);
  EXPECT_EQ(d.X.cols(), 64);
  EXPECT_EQ(d.y.front(), 0);  // the first image is a 0
  EXPECT_EQ(d.X.minCoeff(), 0.0f);
  EXPECT_EQ(d.X.maxCoeff(), 1.0f);
  // Rotating four times is the identity; mirroring twice too.
  Dataset r = d;
  for (int k = 0; k < 4; ++k) r = shiftDigits(r, DigitShift::Rotate90);
  EXPECT_EQ(r.X, d.X);
  EXPECT_EQ(shiftDigits(shiftDigits(d, DigitShift::Mirror), DigitShift::Mirror).X, d.X);
  EXPECT_NE(shiftDigits(d, DigitShift::Rotate90).X, d.X);
  EXPECT_THROW(parseDigitShift("sideways"), lora::Error);
  EXPECT_THROW(loadDigits("/nonexistent/digits.csv"), lora::Error);
}

TEST(DigitsPipeline, LoraBeatsTheFrozenModelOnRotatedDigits) {
  const Network& net = digitsNetwork();
  EXPECT_GT(evaluate(net, digits().val).accuracy, 0.9);  // pretraining worked
  AdaptationTask task(net, digits().shiftedTrain, digits().shiftedVal,
                      {.steps = 200, .batch = 64, .evalEvery = 50, .quiet = true});
  const double frozen = task.frozen().accuracy;
  EXPECT_LT(frozen, 0.4);  // the shift breaks it
  Strategy s{.name = "r4", .rank = 4, .alpha = 16, .init = "peft_default"};
  s.optimizer.lr = 3e-3;
  const auto r = task.run(s, 1);
  ASSERT_EQ(r.evalAccuracy.size(), 5u);              // steps 0, 50, 100, 150, 200
  EXPECT_DOUBLE_EQ(r.evalAccuracy.front(), frozen);  // B = 0: the adapter starts as a no-op
  EXPECT_GT(r.finalAccuracy(), frozen + 0.4) << "frozen " << frozen;
  EXPECT_EQ(r.trainLoss.size(), 200u);
  EXPECT_EQ(r.trainableParameters, 4 * (64 + 64) + 4 * (64 + 10));
  // The same seed gives the same run.
  EXPECT_EQ(task.run(s, 1).trainLoss, r.trainLoss);
}

TEST(DigitsPipeline, RankSelectorResizesThroughTheOptimizer) {
  AdaptationTask task(digitsNetwork(), digits().shiftedTrain, digits().shiftedVal,
                      {.steps = 220, .batch = 64, .evalEvery = 110, .quiet = true});
  Strategy s{
      .name = "dyn", .rank = 8, .alpha = 16, .init = "xavier", .selector = "article_gradient"};
  s.optimizer.lr = 3e-3;
  const auto r = task.run(s, 3);
  ASSERT_FALSE(r.ranks.empty());
  EXPECT_EQ(r.ranks.front().step, 0);
  EXPECT_EQ(r.ranks.front().ranks, (std::vector<Index>{8, 8}));
  // The article's selector decides every 100 steps; it moved at least one layer.
  ASSERT_GE(r.ranks.size(), 2u);
  EXPECT_EQ(r.ranks[1].step % 100, 0);
  EXPECT_GT(r.finalAccuracy(), task.frozen().accuracy + 0.3);
  s.selector = "sideways";
  EXPECT_THROW(task.run(s, 1), lora::Error);
}

TEST(DigitsPipeline, RejectsBadSettings) {
  const std::vector<Index> sizes{64, 8, 10};
  EXPECT_THROW(pretrain(sizes, digits().train, {.steps = 0, .quiet = true}), lora::Error);
  EXPECT_THROW(pretrain(sizes, digits().train, {.batch = 0, .quiet = true}), lora::Error);
  EXPECT_THROW(pretrain(std::vector<Index>{32, 8, 10}, digits().train, {.quiet = true}),
               lora::Error);
  Dataset unlabeled = digits().shiftedTrain;
  unlabeled.y.pop_back();
  EXPECT_THROW(AdaptationTask(digitsNetwork(), unlabeled, digits().shiftedVal, {.quiet = true}),
               lora::Error);
  EXPECT_THROW(AdaptationTask(digitsNetwork(), digits().shiftedTrain, digits().shiftedVal,
                              {.steps = 0, .quiet = true}),
               lora::Error);
  AdaptationTask task(digitsNetwork(), digits().shiftedTrain, digits().shiftedVal,
                      {.steps = 5, .quiet = true});
  Strategy s{.name = "bad init", .rank = 4, .init = "sideways"};
  EXPECT_THROW(task.run(s, 1), lora::Error);
  s.init = "peft_default";
  s.optimizer.rule = "lion";
  EXPECT_THROW(task.run(s, 1), lora::Error);
}

TEST(DigitsPipeline, StudiesWriteReportsAndCharts) {
  const lora::test::ScratchDir tmp("studies");  // one per run: ctest -j runs tests side by side
  const std::filesystem::path out = tmp / "studies";
  AdaptationTask task(digitsNetwork(), digits().shiftedTrain, digits().shiftedVal,
                      {.steps = 120, .batch = 64, .evalEvery = 40, .quiet = true});
  StudyOptions o;
  o.task = "digits (test)";
  o.seeds = {1, 2};
  o.lr = 3e-3;
  o.rsloraRanks = {2, 8};
  o.pissaRank = 4;
  o.out = out;
  ::testing::internal::CaptureStdout();
  const nlohmann::json j = runStudies(task, o, {{"task", "digits"}}, "header\n");
  const std::string text = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(j["comparison"]["ranking"].size(), comparisonStrategies(o).size());
  EXPECT_EQ(j["comparison"]["runs"].size(), 2 * comparisonStrategies(o).size());
  EXPECT_EQ(j["rslora"]["ranking"].size(), 4u);
  EXPECT_EQ(j["pissa"]["ranking"].size(), 2u);
  EXPECT_NE(text.find("Most parameter-efficient"), std::string::npos);
  EXPECT_NE(text.find("rsLoRA study"), std::string::npos);
  EXPECT_NE(text.find("PiSSA study"), std::string::npos);
  for (const char* f : {"report.txt", "report.json"})
    EXPECT_TRUE(std::filesystem::exists(out / f)) << f;
  // Each chart drawn where gnuplot runs, else its data as FILE.csv (and then not the chart).
  const char* gp = std::getenv("LORA_GNUPLOT");
  const std::string gnuplot = gp != nullptr && *gp != '\0' ? gp : "gnuplot";
  const bool drawn = std::system(("command -v '" + gnuplot + "' >/dev/null 2>&1").c_str()) == 0;
  for (const char* f : {"comparison_curves.png", "params_vs_accuracy.png", "rank_over_time.png",
                        "spectra.png", "rslora.png", "pissa.png"}) {
    EXPECT_EQ(std::filesystem::exists(out / f), drawn) << f;
    EXPECT_EQ(std::filesystem::exists(out / (std::string(f) + ".csv")), !drawn) << f;
  }
  std::ifstream json(out / "report.json");
  EXPECT_EQ(nlohmann::json::parse(json)["comparison"]["task"], "digits (test)");
  // Full fine-tuning is one of the compared strategies, and trains every weight.
  int fullFineTunes = 0;
  for (const auto& s : j["comparison"]["ranking"]) {
    if (s["strategy"]["full_fine_tune"].get<bool>()) {
      ++fullFineTunes;
      EXPECT_EQ(s["parameters"]["mean"].get<double>(), 64.0 * 64 + 64 + 64 * 10 + 10);
    }
  }
  EXPECT_EQ(fullFineTunes, 1);
}

TEST(CharPipeline, LoraLearnsFrenchFromTheEnglishModel) {
  CharTaskOptions o;
  o.pretrainSamples = 30000;
  o.adaptSamples = 10000;
  o.valSamples = 3000;
  const CharTask t = makeCharTask(o);
  EXPECT_GT(t.englishWords, 50000u);  // wamerican
  EXPECT_GT(t.frenchWords, 100000u);  // wfrench
  EXPECT_EQ(t.vocab.symbols.front(), U'\0');
  EXPECT_NE(t.vocab.index.count(U'é'), 0u);  // French letters are in the vocabulary
  EXPECT_EQ(t.frenchTrain.X.cols(), o.context * t.vocab.size());
  // Every sample is one-hot per context position.
  EXPECT_EQ(t.frenchTrain.X.row(0).sum(), static_cast<float>(o.context));

  const Index V = t.vocab.size();
  const Network net = pretrain(std::vector<Index>{o.context * V, 96, V}, t.englishTrain,
                               {.steps = 600, .batch = 128, .quiet = true});
  const double bits = 1 / std::log(2.0);
  EXPECT_LT(evaluate(net, t.englishVal).loss * bits, 3.6);  // better than letter frequencies
  AdaptationTask task(net, t.frenchTrain, t.frenchVal,
                      {.steps = 200, .batch = 128, .evalEvery = 100, .quiet = true});
  const double frozen = task.frozen().loss * bits;
  Strategy s{.name = "r8", .rank = 8, .alpha = 16, .init = "peft_default"};
  s.optimizer.lr = 3e-3;
  const auto r = task.run(s, 1);
  EXPECT_LT(r.finalLoss() * bits, frozen - 0.5) << "frozen " << frozen << " bits/char";
}

TEST(CharData, RejectsMissingListsAndBadUtf8) {
  EXPECT_THROW(loadWordList("/nonexistent/words"), lora::Error);
  const auto bad = std::filesystem::temp_directory_path() / "lora_bad_words.txt";
  {
    std::ofstream f(bad, std::ios::binary);
    f << "good\n"
      << "\xC3"
      << "\n";
  }
  EXPECT_THROW(loadWordList(bad), lora::Error);
  {
    std::ofstream f(bad, std::ios::binary);
    f << "Caf\xC3\xA9\n\nABC\n";
  }
  const auto words = loadWordList(bad);
  ASSERT_EQ(words.size(), 2u);
  EXPECT_EQ(words[0], U"café");
  EXPECT_EQ(words[1], U"abc");
  std::filesystem::remove(bad);
}

}  // namespace
