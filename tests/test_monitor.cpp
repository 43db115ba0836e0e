// lora/train/monitor.hpp and lora/train/rank_manager.hpp, with the rank manager's
// lora/rank/rank_config.hpp and lora/rank/layer_kind.hpp (one executable, to keep build time
// down): the article's LoRAPerformanceMonitor (records, report, suggestions, CSV/JSON export) and
// ProductionLoRARankManager (JSON config, recommendInitialRanks, monitorAndAdjust, delegation to
// a rank selector, the decision log), with their bad inputs.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/layer.hpp"
#include "lora/linalg/statistics.hpp"
#include "lora/rank/layer_kind.hpp"
#include "lora/rank/loss_plateau.hpp"
#include "lora/rank/rank_config.hpp"
#include "lora/train/monitor.hpp"
#include "lora/train/rank_manager.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

namespace fs = std::filesystem;
using lora::rank::LayerKind;
using lora::rank::RankManagerConfig;
using lora::test::errorOf;
using lora::test::gaussian;
using lora::train::LayerShape;
using lora::train::LayerSnapshot;
using lora::train::Monitor;
using lora::train::MonitorRecord;
using lora::train::RankManager;

// A fresh, empty folder per test.
fs::path scratch() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir =
      fs::temp_directory_path() / (std::string("lorapp_train_") + info->test_suite_name() + "_" +
                                   info->name() + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string readText(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

MonitorRecord record(std::int64_t step, double loss, std::optional<double> accuracy,
                     std::vector<LayerSnapshot> layers = {}) {
  MonitorRecord r;
  r.step = step;
  r.loss = loss;
  r.accuracy = accuracy;
  r.learningRate = 1e-3;
  r.layers = std::move(layers);
  return r;
}

LayerSnapshot layerWithGrad(const std::string& name, double grad, Eigen::Index params = 100) {
  LayerSnapshot s;
  s.name = name;
  s.rank = 4;
  s.parameterCount = params;
  s.gradNormA = grad / 2;
  s.gradNormB = grad / 2;
  return s;
}

bool hasCode(const std::vector<lora::train::Suggestion>& s, const std::string& code,
             const std::string& layer = "") {
  for (const auto& x : s)
    if (x.code == code && (layer.empty() || x.layer == layer)) return true;
  return false;
}

// ---- Monitor ---------------------------------------------------------------------------------

TEST(Monitor, CollectsEveryWatchedLayersStatistics) {
  auto q =
      lora::Layer<double>::fromFactors(gaussian<double>(4, 6, 1), gaussian<double>(5, 4, 2), 8);
  auto v = lora::Layer<float>::fromFactors(gaussian<float>(2, 6, 3), gaussian<float>(3, 2, 4), 4);
  q.backward(gaussian<double>(3, 6, 5), gaussian<double>(3, 5, 6));
  Monitor monitor;
  monitor.watch("q_proj", q);
  monitor.watch("v_proj", v);
  EXPECT_EQ(monitor.watchedLayers(), 2u);
  const auto& r = monitor.collect(7, 0.5, 0.75, 1e-3);
  EXPECT_EQ(r.step, 7);
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_EQ(r.layers[0].name, "q_proj");
  EXPECT_EQ(r.layers[0].rank, 4);
  EXPECT_EQ(r.layers[0].parameterCount, 4 * (6 + 5));
  EXPECT_DOUBLE_EQ(r.layers[0].normA, q.A().norm());
  EXPECT_DOUBLE_EQ(r.layers[0].normB, q.B().norm());
  EXPECT_DOUBLE_EQ(r.layers[0].gradNormA, q.gradA().norm());
  EXPECT_DOUBLE_EQ(r.layers[0].gradNormB, q.gradB().norm());
  EXPECT_GT(r.layers[0].gradNorm(), 0);
  EXPECT_EQ(r.layers[1].gradNorm(), 0);  // no backward yet
  EXPECT_EQ(r.totalParameters(), 44 + 2 * 9);
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_NEAR(r.timestamp, now, 60);
  EXPECT_GE(r.elapsed, 0);
  q.resize(2);  // a resize shows in the next record
  EXPECT_EQ(monitor.collect(8, 0.4, 0.8, 1e-3).layers[0].rank, 2);
}

TEST(Monitor, ReportsTheArticlesStatisticsOverTheLastSteps) {
  Monitor monitor;
  EXPECT_EQ(monitor.report().records, 0u);
  for (int i = 0; i < 30; ++i)
    monitor.add(record(i, 2.0 - 0.01 * i, 0.5 + 0.002 * i,
                       {layerWithGrad("a", 1.0, 1000), layerWithGrad("b", 2.0, 234567)}));
  const auto rep = monitor.report(20);
  EXPECT_EQ(rep.records, 20u);
  std::vector<double> losses;
  for (int i = 10; i < 30; ++i) losses.push_back(2.0 - 0.01 * i);
  EXPECT_DOUBLE_EQ(rep.lossMean, lora::linalg::mean(losses));
  EXPECT_NEAR(rep.lossStd, 0.01 * std::sqrt((20.0 * 20.0 - 1) / 12), 1e-12);  // population std
  EXPECT_DOUBLE_EQ(rep.lowestLoss, 2.0 - 0.29);
  EXPECT_DOUBLE_EQ(*rep.bestAccuracy, 0.5 + 0.002 * 29);
  EXPECT_NEAR(*rep.lossTrend, -0.01, 1e-12);
  EXPECT_NEAR(*rep.accuracyTrend, 0.002, 1e-12);
  EXPECT_EQ(rep.totalParameters, 235567);
  ASSERT_EQ(rep.layers.size(), 2u);
  const std::string text = rep.toString();
  EXPECT_CONTAINS(text, "LoRA performance report (last 20 steps)");
  EXPECT_CONTAINS(text, "total LoRA parameters: 235,567");
  EXPECT_CONTAINS(text, "loss:     falling");
  EXPECT_CONTAINS(text, "accuracy: rising");
  // Fewer than 10 records: no trend. No accuracy: said so.
  Monitor small;
  for (int i = 0; i < 9; ++i) small.add(record(i, 1.0, std::nullopt));
  const auto rs = small.report();
  EXPECT_EQ(rs.records, 9u);
  EXPECT_FALSE(rs.lossTrend.has_value());
  EXPECT_FALSE(rs.accuracyMean.has_value());
  EXPECT_CONTAINS(rs.toString(), "accuracy:       not recorded");
  EXPECT_EQ(lora::train::MonitorReport::grouped(1234567), "1,234,567");
  EXPECT_EQ(lora::train::MonitorReport::grouped(999), "999");
}

TEST(Monitor, SuggestsAsTheArticle) {
  Monitor monitor;
  monitor.add(record(0, 1.0, 0.5));
  auto s = monitor.suggestions();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].code, "insufficient_data");
  // Gradient outliers against the median (1.0): 3.5 is high, 0.05 low; a constant loss has
  // converged; 4 x 300k parameters are many.
  Monitor m2;
  for (int i = 0; i < 60; ++i)
    m2.add(record(i, 0.3, 0.9,
                  {layerWithGrad("q", 1.0, 300000), layerWithGrad("k", 1.0, 300000),
                   layerWithGrad("v", 3.5, 300000), layerWithGrad("o", 0.05, 300000)}));
  s = m2.suggestions();
  EXPECT_TRUE(hasCode(s, "high_gradient_norm", "v"));
  EXPECT_TRUE(hasCode(s, "low_gradient_norm", "o"));
  EXPECT_FALSE(hasCode(s, "high_gradient_norm", "q"));
  EXPECT_TRUE(hasCode(s, "loss_converged"));
  EXPECT_TRUE(hasCode(s, "many_parameters"));
  // A fluctuating loss; nothing else: the last 20 alternate by ±0.2.
  Monitor m3;
  for (int i = 0; i < 50; ++i) m3.add(record(i, 1.0 + (i % 2 == 0 ? 0.2 : -0.2), 0.5));
  s = m3.suggestions();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].code, "loss_fluctuating");
  EXPECT_NEAR(s[0].value, 0.2, 1e-12);
  // A steadily improving loss with ordinary gradients: no change needed.
  Monitor m4;
  for (int i = 0; i < 50; ++i)
    m4.add(record(i, 1.0 - 0.005 * i, 0.5, {layerWithGrad("a", 1.0), layerWithGrad("b", 1.2)}));
  s = m4.suggestions();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].code, "no_change_needed");
}

TEST(Monitor, SuggestionsSurviveALayerAddedLaterAndAZeroMedian) {
  Monitor monitor;
  for (int i = 0; i < 60; ++i) {
    std::vector<LayerSnapshot> layers = {layerWithGrad("a", 0.0), layerWithGrad("b", 0.0)};
    if (i >= 55) layers.push_back(layerWithGrad("c", 0.0));  // added late (the article fails)
    monitor.add(record(i, 1.0 - 0.004 * i, std::nullopt, layers));
  }
  const auto s = monitor.suggestions();
  EXPECT_FALSE(hasCode(s, "high_gradient_norm"));  // median 0: nothing is flagged
  EXPECT_FALSE(hasCode(s, "low_gradient_norm"));
}

TEST(Monitor, ExportsCsvAndJson) {
  Monitor monitor;
  monitor.add(record(0, 0.1 + 0.2, std::nullopt,
                     {layerWithGrad("plain", 1.0), layerWithGrad("a,\"b\"", 2.0)}));
  monitor.add(record(1, 0.25, 0.5));
  const std::string csv = monitor.toCsv();
  std::istringstream lines(csv);
  std::string header, row1, row2, row3, extra;
  std::getline(lines, header);
  std::getline(lines, row1);
  std::getline(lines, row2);
  std::getline(lines, row3);
  EXPECT_FALSE(std::getline(lines, extra));
  EXPECT_EQ(header,
            "step,timestamp,elapsed_s,loss,accuracy,learning_rate,layer,rank,parameters,norm_a,"
            "norm_b,grad_norm_a,grad_norm_b");
  EXPECT_CONTAINS(row1,
                  ",0.30000000000000004,,0.001,plain,4,100,0,0,0.5,0.5");  // round-trip digits
  EXPECT_CONTAINS(row2, ",\"a,\"\"b\"\"\",4,");                            // RFC 4180 quoting
  EXPECT_CONTAINS(row3, ",0.25,0.5,0.001,,,,,,,");                         // no layers
  const nlohmann::json j = monitor.toJson();
  ASSERT_EQ(j["records"].size(), 2u);
  EXPECT_TRUE(j["records"][0]["accuracy"].is_null());
  EXPECT_EQ(j["records"][1]["accuracy"].get<double>(), 0.5);
  EXPECT_EQ(j["records"][0]["layers"][1]["name"], "a,\"b\"");
  EXPECT_EQ(j["records"][0]["total_lora_params"].get<int>(), 200);
  EXPECT_EQ(j["records"][0]["loss"].get<double>(), 0.1 + 0.2);

  const fs::path dir = scratch();
  monitor.writeCsv(dir / "history.csv");
  monitor.writeJson(dir / "history.json");
  EXPECT_EQ(readText(dir / "history.csv"), csv);
  EXPECT_EQ(nlohmann::json::parse(readText(dir / "history.json")), j);
  // A failed write leaves nothing behind: the target is a folder, so the rename fails.
  fs::create_directories(dir / "taken");
  EXPECT_CONTAINS(errorOf([&] { monitor.writeCsv(dir / "taken"); }), "Monitor::writeCsv()");
  EXPECT_CONTAINS(errorOf([&] { monitor.writeCsv(dir / "missing" / "h.csv"); }),
                  "Monitor::writeCsv(): expected a writable folder for");
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 3);  // history.csv, history.json, taken: no temporary files left
  fs::remove_all(dir);
}

TEST(Monitor, RejectsBadInput) {
  Monitor monitor;
  auto layer =
      lora::Layer<double>::fromFactors(gaussian<double>(2, 3, 1), gaussian<double>(3, 2, 2), 2);
  monitor.watch("l", layer);
  EXPECT_CONTAINS(errorOf([&] { monitor.watch("l", layer); }), "'l' a second time");
  EXPECT_CONTAINS(errorOf([&] { monitor.watch("", layer); }), "layer name");
  EXPECT_CONTAINS(errorOf([&] { monitor.collect(0, NAN, 0.5, 1e-3); }), "expected a finite loss");
  EXPECT_CONTAINS(errorOf([&] { monitor.collect(0, 1.0, INFINITY, 1e-3); }), "finite accuracy");
  EXPECT_CONTAINS(errorOf([&] { monitor.collect(0, 1.0, 0.5, -1); }), "learning rate");
  EXPECT_TRUE(monitor.history().empty());
  EXPECT_CONTAINS(errorOf([&] { (void)monitor.report(0); }), "lastN >= 1");
  EXPECT_CONTAINS(errorOf([] { Monitor m({.minRecords = 1}); }), "minRecords");
  EXPECT_CONTAINS(errorOf([] { Monitor m({.lowGradientRatio = 5}); }), "lowGradientRatio");
  EXPECT_CONTAINS(errorOf([] { Monitor m({.lossWindow = 80}); }), "lossWindow");
}

// ---- RankManagerConfig -------------------------------------------------------------------------

TEST(RankConfig, DefaultsAreTheArticlesAndAMissingFileWritesNothing) {
  const RankManagerConfig c;
  EXPECT_EQ(c.minRank, 2);
  EXPECT_EQ(c.maxRank, 64);
  EXPECT_EQ(c.initialRank, 8);
  EXPECT_EQ(c.adjustmentThreshold, 0.02);
  EXPECT_EQ(c.patience, 10u);
  EXPECT_TRUE(c.layerSpecificRanks.empty());
  EXPECT_EQ(c.initializationMethod, "xavier");
  EXPECT_TRUE(c.autoAdjustment);
  const fs::path dir = scratch();
  const auto loaded = RankManagerConfig::load(dir / "lora_rank_config.json");
  EXPECT_EQ(loaded.toJson(), c.toJson());
  EXPECT_FALSE(fs::exists(dir / "lora_rank_config.json"));
  fs::remove_all(dir);
}

TEST(RankConfig, UserFieldsAreMergedOverTheDefaultsAndSaveRoundTrips) {
  const fs::path dir = scratch();
  {
    std::ofstream out(dir / "cfg.json");
    out << R"({"patience": 20, "layer_specific_ranks": {"q_proj": 16, "layers.0.self_attn.q_proj": 4},
               "auto_adjustment": false, "adjustment_threshold": 1})";
  }
  const auto c = RankManagerConfig::load(dir / "cfg.json");
  EXPECT_EQ(c.patience, 20u);
  EXPECT_FALSE(c.autoAdjustment);
  EXPECT_EQ(c.adjustmentThreshold, 1.0);
  EXPECT_EQ(c.maxRank, 64);  // default kept
  ASSERT_EQ(c.layerSpecificRanks.size(), 2u);
  EXPECT_EQ(c.layerSpecificRanks[0].first, "q_proj");                          // file order
  EXPECT_EQ(c.specificRankFor("model.layers.0.self_attn.q_proj")->second, 4);  // longest suffix
  EXPECT_EQ(c.specificRankFor("model.layers.1.self_attn.q_proj")->second, 16);
  EXPECT_EQ(c.specificRankFor("q_proj")->second, 16);  // exact
  EXPECT_FALSE(c.specificRankFor("model.layers.1.self_attn.xq_proj").has_value());
  c.save(dir / "saved.json");
  const auto back = RankManagerConfig::load(dir / "saved.json");
  EXPECT_EQ(back.toJson(), c.toJson());
  EXPECT_EQ(nlohmann::ordered_json::parse(readText(dir / "saved.json")).begin().key(), "min_rank");
  fs::remove_all(dir);
}

TEST(RankConfig, AMalformedFileIsAnErrorNamingTheField) {
  const auto err = [](const std::string& text) {
    return errorOf([&] { RankManagerConfig::parse(text, "cfg.json"); });
  };
  EXPECT_EQ(
      err(R"({"patience": "ten"})"),
      "RankManagerConfig::parse(): cfg.json: field 'patience': expected an integer, got \"ten\"");
  EXPECT_CONTAINS(err(R"({"patience": 2})"), "field 'patience': expected an integer >= 3");
  EXPECT_CONTAINS(err(R"({"patience": 10.5})"), "field 'patience': expected an integer");
  EXPECT_CONTAINS(err(R"({"min_rank": 0})"), "field 'min_rank': expected an integer >= 1, got 0");
  EXPECT_CONTAINS(err(R"({"min_rank": 8, "max_rank": 4})"), "field 'max_rank'");
  EXPECT_CONTAINS(err(R"({"initial_rank": 100})"), "field 'initial_rank'");
  EXPECT_CONTAINS(err(R"({"adjustment_threshold": -1})"), "field 'adjustment_threshold'");
  EXPECT_CONTAINS(err(R"({"adjustment_threshold": "0.1"})"), "expected a number");
  EXPECT_CONTAINS(err(R"({"layer_specific_ranks": [1, 2]})"), "field 'layer_specific_ranks'");
  EXPECT_CONTAINS(
      err(R"({"layer_specific_ranks": {"q_proj": 128}})"),
      "field 'layer_specific_ranks.q_proj': expected an integer in [min_rank, max_rank]");
  EXPECT_CONTAINS(err(R"({"layer_specific_ranks": {"q_proj": "8"}})"),
                  "field 'layer_specific_ranks.q_proj': expected an integer");
  EXPECT_CONTAINS(err(R"({"initialization_method": 3})"), "field 'initialization_method'");
  EXPECT_CONTAINS(err(R"({"auto_adjustment": "yes"})"),
                  "field 'auto_adjustment': expected true or false");
  EXPECT_CONTAINS(err(R"({"selector": "magic"})"), "field 'selector'");
  EXPECT_CONTAINS(err(R"({"patiance": 10})"), "unknown field 'patiance'");
  EXPECT_CONTAINS(err(R"([1, 2])"), "expected a JSON object");
  EXPECT_CONTAINS(err(R"({"patience": 10,)"), "expected valid JSON");
  const fs::path dir = scratch();
  {
    std::ofstream out(dir / "bad.json");
    out << R"({"max_rank": true})";
  }
  EXPECT_CONTAINS(
      errorOf([&] { RankManagerConfig::load(dir / "bad.json"); }),
      "RankManagerConfig::load(): " + (dir / "bad.json").string() + ": field 'max_rank'");
  RankManagerConfig c;
  c.patience = 1;
  EXPECT_CONTAINS(errorOf([&] { c.save(dir / "x.json"); }), "field 'patience'");
  EXPECT_FALSE(fs::exists(dir / "x.json"));
  EXPECT_CONTAINS(errorOf([&] { RankManager m(c); }), "field 'patience'");
  RankManagerConfig twice;
  twice.layerSpecificRanks = {{"q_proj", 4}, {"q_proj", 8}};
  EXPECT_CONTAINS(errorOf([&] { twice.validate(); }), "distinct layer names");
  fs::remove_all(dir);
}

// ---- recommendInitialRanks ---------------------------------------------------------------------

TEST(RankManager, IdentifiesBertAndLlamaLayerKinds) {
  using lora::rank::identifyLayerKind;
  EXPECT_EQ(identifyLayerKind("bert.encoder.layer.0.attention.self.query"), LayerKind::Query);
  EXPECT_EQ(identifyLayerKind("bert.encoder.layer.0.attention.self.key"), LayerKind::Key);
  EXPECT_EQ(identifyLayerKind("bert.encoder.layer.0.attention.self.value"), LayerKind::Value);
  EXPECT_EQ(identifyLayerKind("bert.encoder.layer.0.attention.output.dense"),
            LayerKind::AttentionOutput);
  EXPECT_EQ(identifyLayerKind("bert.encoder.layer.0.intermediate.dense"), LayerKind::Intermediate);
  EXPECT_EQ(identifyLayerKind("bert.encoder.layer.0.output.dense"), LayerKind::Output);
  EXPECT_EQ(identifyLayerKind("model.layers.0.self_attn.q_proj"), LayerKind::Query);
  EXPECT_EQ(identifyLayerKind("model.layers.0.self_attn.k_proj"), LayerKind::Key);
  EXPECT_EQ(identifyLayerKind("model.layers.0.self_attn.v_proj"), LayerKind::Value);
  EXPECT_EQ(identifyLayerKind("model.layers.0.self_attn.o_proj"), LayerKind::AttentionOutput);
  EXPECT_EQ(identifyLayerKind("model.layers.0.mlp.gate_proj"), LayerKind::Intermediate);
  EXPECT_EQ(identifyLayerKind("model.layers.0.mlp.up_proj"), LayerKind::Intermediate);
  EXPECT_EQ(identifyLayerKind("model.layers.0.mlp.down_proj"), LayerKind::Output);
  EXPECT_EQ(identifyLayerKind("monkey.dense"), LayerKind::Unknown);  // not "key"
  EXPECT_EQ(identifyLayerKind("lm_head"), LayerKind::Unknown);
}

TEST(RankManager, RecommendsTheArticlesRanksForItsExample) {
  RankManager manager;
  const auto recs = manager.recommendInitialRanks(
      {{"bert.encoder.layer.0.attention.self.query", LayerShape::square(768)},
       {"bert.encoder.layer.0.attention.self.key", LayerShape::square(768)},
       {"bert.encoder.layer.0.attention.self.value", LayerShape::square(768)},
       {"bert.encoder.layer.0.intermediate.dense", LayerShape::square(768)}},
      lora::train::TaskComplexity::Medium,
      lora::train::ResourceConstraints{.memoryGb = 8, .computeBudget = 0.5});
  ASSERT_EQ(recs.size(), 4u);
  // int(8 * 1.5 * factor): 14.4 -> 14, 12, 14, 18 (what the article's Python prints).
  EXPECT_EQ(recs[0].rank, 14);
  EXPECT_EQ(recs[1].rank, 12);
  EXPECT_EQ(recs[2].rank, 14);
  EXPECT_EQ(recs[3].rank, 18);
  EXPECT_EQ(recs[0].initialization, "xavier");
  EXPECT_CONTAINS(recs[0].reasoning,
                  "base rank 8 x complexity multiplier 1.5 (medium) x layer factor 1.2");
  EXPECT_CONTAINS(recs[0].reasoning, "within the resource limits");
}

TEST(RankManager, RecommendsForLlamaNamesAndEveryComplexity) {
  RankManager manager;
  const std::vector<std::pair<std::string, LayerShape>> llama = {
      {"model.layers.0.self_attn.q_proj", {4096, 4096}},
      {"model.layers.0.self_attn.k_proj", {4096, 1024}},
      {"model.layers.0.self_attn.v_proj", {4096, 1024}},
      {"model.layers.0.self_attn.o_proj", {4096, 4096}},
      {"model.layers.0.mlp.gate_proj", {4096, 14336}},
      {"model.layers.0.mlp.up_proj", {4096, 14336}},
      {"model.layers.0.mlp.down_proj", {14336, 4096}}};
  const auto ranks = [&](lora::train::TaskComplexity c) {
    std::vector<Eigen::Index> r;
    for (const auto& rec : manager.recommendInitialRanks(llama, c)) r.push_back(rec.rank);
    return r;
  };
  using TC = lora::train::TaskComplexity;
  EXPECT_EQ(ranks(TC::Medium), (std::vector<Eigen::Index>{14, 12, 14, 9, 18, 18, 12}));
  EXPECT_EQ(ranks(TC::Simple), (std::vector<Eigen::Index>{4, 4, 4, 3, 6, 6, 4}));
  EXPECT_EQ(ranks(TC::Complex), (std::vector<Eigen::Index>{38, 32, 38, 25, 48, 48, 32}));
  EXPECT_EQ(lora::train::taskComplexityFromString("complex"), TC::Complex);
  EXPECT_CONTAINS(errorOf([] { lora::train::taskComplexityFromString("hard"); }), "got \"hard\"");
}

TEST(RankManager, AppliesResourceConstraintsToTheTotal) {
  RankManager manager;
  const std::vector<std::pair<std::string, LayerShape>> layers = {
      {"attention.self.query", LayerShape::square(768)},
      {"attention.self.key", LayerShape::square(768)}};
  // 14 + 12 ranks x 1536 = 39936 parameters; a compute budget of 0.02 allows 20000.
  auto recs =
      manager.recommendInitialRanks(layers, lora::train::TaskComplexity::Medium,
                                    lora::train::ResourceConstraints{.computeBudget = 0.02});
  EXPECT_EQ(recs[0].rank, 7);
  EXPECT_EQ(recs[1].rank, 6);
  EXPECT_CONTAINS(recs[0].reasoning, "compute budget 0.02");
  EXPECT_CONTAINS(recs[0].reasoning, "scaled by");
  // A tiny memory: the scaled ranks fall below min_rank, which wins and says so.
  recs = manager.recommendInitialRanks(layers, lora::train::TaskComplexity::Medium,
                                       lora::train::ResourceConstraints{.memoryGb = 1e-4});
  EXPECT_EQ(recs[0].rank, 2);
  EXPECT_CONTAINS(recs[0].reasoning, "min_rank overrides the resource limit");
  EXPECT_CONTAINS(errorOf([&] {
                    manager.recommendInitialRanks(layers, lora::train::TaskComplexity::Medium,
                                                  lora::train::ResourceConstraints{.memoryGb = -1});
                  }),
                  "memoryGb");
  EXPECT_CONTAINS(errorOf([&] { manager.recommendInitialRanks({}); }), "at least one layer");
}

TEST(RankManager, HonoursLayerSpecificRanks) {
  RankManagerConfig config;
  config.layerSpecificRanks = {{"q_proj", 32}, {"layers.1.self_attn.q_proj", 6}};
  RankManager manager(config);
  const auto recs = manager.recommendInitialRanks({{"model.layers.0.self_attn.q_proj", {}},
                                                   {"model.layers.1.self_attn.q_proj", {}},
                                                   {"model.layers.1.self_attn.v_proj", {}}});
  EXPECT_EQ(recs[0].rank, 32);
  EXPECT_EQ(recs[1].rank, 6);
  EXPECT_EQ(recs[2].rank, 14);
  EXPECT_CONTAINS(recs[1].reasoning, "layer_specific_ranks[\"layers.1.self_attn.q_proj\"] = 6");
}

// ---- monitorAndAdjust --------------------------------------------------------------------------

using NamedRanks = std::vector<std::pair<std::string, Eigen::Index>>;

TEST(RankManager, GrowsByTwoWhenLossAndAccuracyAreFlatThenStartsTheWindowAgain) {
  RankManager manager;  // patience 10, ranks 2..64
  const NamedRanks ranks = {{"q", 8}, {"v", 63}, {"o", 64}};
  for (int i = 0; i < 9; ++i) {
    const auto d = manager.monitorAndAdjust({.loss = 1.0 + 1e-4 * i, .accuracy = 0.5}, ranks);
    EXPECT_EQ(d.status, "insufficient_history");
    EXPECT_TRUE(d.adjustments.empty());
  }
  const auto d = manager.monitorAndAdjust({.loss = 1.0009, .accuracy = 0.5}, ranks);
  EXPECT_EQ(d.status, "stagnant");
  EXPECT_NEAR(*d.lossSlope, 1e-4, 1e-12);
  ASSERT_EQ(d.adjustments.size(), 2u);  // o is at max_rank
  EXPECT_EQ(d.adjustments[0].layer, "q");
  EXPECT_EQ(d.adjustments[0].newRank, 10);
  EXPECT_EQ(d.adjustments[1].newRank, 64);  // capped
  EXPECT_EQ(d.adjustments[0].reason, "stagnant_increase_rank");
  // The window starts again: the old flat records do not grow the rank a second time.
  EXPECT_EQ(manager.monitorAndAdjust({.loss = 1.0, .accuracy = 0.5}, {{"q", 10}}).status,
            "insufficient_history");
  EXPECT_EQ(manager.performanceHistory().size(), 11u);
  EXPECT_EQ(manager.rankHistory().back()[0].second, 10);
}

TEST(RankManager, ShrinksByOneWhenTrainingDiverges) {
  RankManager manager;
  lora::train::AdjustmentDecision d;
  for (int i = 0; i < 10; ++i)
    d = manager.monitorAndAdjust({.loss = 1.0 + 0.05 * i, .accuracy = 0.9 - 0.01 * i},
                                 {{"q", 8}, {"k", 2}});
  EXPECT_EQ(d.status, "diverging");
  ASSERT_EQ(d.adjustments.size(), 1u);  // k is at min_rank
  EXPECT_EQ(d.adjustments[0].newRank, 7);
  EXPECT_EQ(d.adjustments[0].reason, "diverging_decrease_rank");
  // Improving and mixed trends change nothing.
  RankManager m2;
  for (int i = 0; i < 10; ++i)
    d = m2.monitorAndAdjust({.loss = 1.0 - 0.05 * i, .accuracy = 0.5 + 0.01 * i}, {{"q", 8}});
  EXPECT_EQ(d.status, "improving");
  EXPECT_TRUE(d.adjustments.empty());
  RankManager m3;
  for (int i = 0; i < 10; ++i)
    d = m3.monitorAndAdjust({.loss = 1.0 - 0.05 * i, .accuracy = 0.5 - 0.01 * i}, {{"q", 8}});
  EXPECT_EQ(d.status, "unstable");
}

TEST(RankManager, WorksWithoutAccuracy) {
  RankManager manager;
  lora::train::AdjustmentDecision d;
  for (int i = 0; i < 10; ++i) d = manager.monitorAndAdjust({.loss = 0.5}, {{"q", 8}});
  EXPECT_EQ(d.status, "stagnant");
  EXPECT_FALSE(d.accuracySlope.has_value());
  RankManager m2;
  for (int i = 0; i < 10; ++i) d = m2.monitorAndAdjust({.loss = 0.5 + 0.01 * i}, {{"q", 8}});
  EXPECT_EQ(d.status, "diverging");
}

TEST(RankManager, DisabledAutoAdjustmentRecordsNothing) {
  RankManagerConfig config;
  config.autoAdjustment = false;
  RankManager manager(config);
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(manager.monitorAndAdjust({.loss = 1.0, .accuracy = 0.5}, {{"q", 8}}).status,
              "disabled");
  EXPECT_TRUE(manager.performanceHistory().empty());
}

TEST(RankManager, DelegatesToARankSelector) {
  RankManagerConfig config;
  config.selector = "slope_plateau";
  RankManager manager(config);
  EXPECT_TRUE(manager.delegating());
  lora::train::AdjustmentDecision d;
  int step = 0;
  for (; step < 40 && d.adjustments.empty(); ++step)
    d = manager.monitorAndAdjust({.loss = 0.7}, {{"q", 8}});  // a perfect plateau
  EXPECT_EQ(d.status, "delegated");
  ASSERT_EQ(d.adjustments.size(), 1u);
  EXPECT_EQ(d.adjustments[0].reason, "slope_plateau:plateau_increase_rank");
  EXPECT_EQ(d.adjustments[0].newRank, 12);  // max(r + 1, int(1.5 r))
  EXPECT_EQ(step, 10);                      // window = patience
  // Delegating to the article's loss-plateau rule instead.
  RankManager m2;
  m2.delegateTo(lora::rank::ArticleLossPlateau({.initialRank = 8, .patience = 3}));
  for (int i = 0; i < 6; ++i) d = m2.monitorAndAdjust({.loss = 0.7}, {{"q", 8}});
  EXPECT_EQ(d.status, "delegated");
  m2.clearDelegate();
  EXPECT_FALSE(m2.delegating());
}

TEST(RankManager, LogsEveryDecisionWithATimestamp) {
  const fs::path dir = scratch();
  {
    RankManager manager(RankManagerConfig{}, dir / "lora_rank_log.txt");
    manager.recommendInitialRanks({{"model.layers.0.self_attn.q_proj", {}}});
    for (int i = 0; i < 10; ++i)
      manager.monitorAndAdjust({.loss = 1.0, .accuracy = 0.5}, {{"q_proj", 8}});
  }
  const std::string log = readText(dir / "lora_rank_log.txt");
  std::istringstream lines(log);
  std::string line;
  int n = 0;
  const std::regex stamp(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO .+$)");
  while (std::getline(lines, line)) {
    EXPECT_TRUE(std::regex_match(line, stamp)) << line;
    ++n;
  }
  EXPECT_EQ(n, 4);  // the recommendation (2 lines), the stagnant decision and its adjustment
  EXPECT_CONTAINS(log, "recommended initial ranks: complexity=medium, layers=1");
  EXPECT_CONTAINS(log, "decision: status=stagnant");
  EXPECT_CONTAINS(log, "q_proj: 8 -> 10 (stagnant_increase_rank)");
  EXPECT_CONTAINS(errorOf([&] { RankManager m(RankManagerConfig{}, dir / "no" / "log.txt"); }),
                  "decision log");
  fs::remove_all(dir);
}

TEST(RankManager, RejectsBadMetricsRecordingNothing) {
  RankManager manager;
  EXPECT_CONTAINS(errorOf([&] {
                    manager.monitorAndAdjust({.loss = NAN}, {{"q", 8}});
                  }),
                  "finite loss");
  EXPECT_CONTAINS(errorOf([&] {
                    manager.monitorAndAdjust({.loss = 1, .accuracy = NAN}, {{"q", 8}});
                  }),
                  "finite accuracy");
  EXPECT_CONTAINS(errorOf([&] {
                    manager.monitorAndAdjust({.loss = 1}, {{"q", 8}, {"q", 4}});
                  }),
                  "'q' twice");
  EXPECT_CONTAINS(errorOf([&] {
                    manager.monitorAndAdjust({.loss = 1}, {{"q", 0}});
                  }),
                  "ranks >= 1");
  EXPECT_TRUE(manager.performanceHistory().empty());
}

}  // namespace
