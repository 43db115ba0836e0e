// Tests for lora/io/adapter_config.hpp, and the safetensors reader against the PEFT fixtures.
// Nothing about the fixture set is hard-coded: variants, modules, ranks and scalings are all
// discovered from the files (see ../shared/peft-fixtures/README.md).

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/error.hpp"
#include "lora/io/adapter_config.hpp"
#include "lora/io/safetensors.hpp"
#include "support/errors.hpp"
#include "support/fixtures.hpp"
#include "support/json.hpp"

namespace {

namespace fs = std::filesystem;
using lora::AdapterConfig;
using lora::DType;
using lora::SafeTensorsReader;

constexpr std::string_view kPrefix = "base_model.model.";
constexpr std::string_view kLoraA = ".lora_A.weight";
constexpr std::string_view kLoraB = ".lora_B.weight";

using lora::test::errorOf;

using lora::test::variantDirs;

using lora::test::readJson;

// ---------------------------------------------------------------------------------------------
// PEFT fixtures

TEST(PeftFixtures, FixtureSetExists) {
  ASSERT_TRUE(fs::is_directory(lora::test::fixtureDir()))
      << "no fixture set at " << lora::test::fixtureDir()
      << " (set LORA_PEFT_FIXTURES or provide ../shared/peft-fixtures/set_a)";
  EXPECT_FALSE(variantDirs().empty());
}

TEST(PeftFixtures, RanksScalingsAndTargetsMatchPeft) {
  ASSERT_TRUE(fs::is_directory(lora::test::fixtureDir()));
  for (const fs::path& dir : variantDirs()) {
    SCOPED_TRACE(dir.filename().string());
    const AdapterConfig cfg = AdapterConfig::load(dir);
    EXPECT_EQ(cfg.peftType, "LORA");
    EXPECT_FALSE(cfg.rawJson.empty());
    const nlohmann::json meta = readJson(dir / "meta.json");
    ASSERT_TRUE(meta.contains("scalings"));
    const auto& scalings = meta.at("scalings");

    const auto st = SafeTensorsReader::open(dir / "adapter_model.safetensors");
    std::size_t modules = 0;
    for (const std::string& name : st.names()) {
      const std::string_view key = name;
      if (!key.starts_with(kPrefix) || !key.ends_with(kLoraA)) continue;
      const std::string m(key.substr(kPrefix.size(), key.size() - kPrefix.size() - kLoraA.size()));
      SCOPED_TRACE(m);
      ++modules;
      const auto& a = st.info(name);
      ASSERT_EQ(a.shape.size(), 2u);
      const auto rank = a.shape[0];
      EXPECT_EQ(rank, cfg.rankFor(m));
      EXPECT_EQ(rank, cfg.rankFor(std::string(kPrefix) + m));  // prefix is stripped
      const std::string bName = std::string(kPrefix) + m + std::string(kLoraB);
      ASSERT_TRUE(st.contains(bName));
      EXPECT_EQ(st.info(bName).shape.at(1), rank);
      if (meta.contains("ranks") && meta.at("ranks").contains(m)) {
        EXPECT_EQ(meta.at("ranks").at(m).get<std::int64_t>(), rank);
      }

      ASSERT_TRUE(scalings.contains(m)) << "meta.json has no scaling for " << m;
      const double expected = scalings.at(m).get<double>();
      const double got = cfg.scalingFor(m);
      EXPECT_LE(std::fabs(got - expected), 1e-12 * std::fabs(expected))
          << "scaling " << got << " vs PEFT " << expected;
      EXPECT_TRUE(cfg.targets(m));
    }
    EXPECT_GT(modules, 0u);
    EXPECT_EQ(modules, scalings.size()) << "every module PEFT scaled has a lora_A tensor";
  }
}

TEST(PeftFixtures, EveryTensorReadsAsFloatAndDouble) {
  ASSERT_TRUE(fs::is_directory(lora::test::fixtureDir()));
  std::size_t files = 0;
  std::size_t tensors = 0;
  for (const auto& e : fs::recursive_directory_iterator(lora::test::fixtureDir())) {
    if (!e.is_regular_file() || e.path().extension() != ".safetensors") continue;
    SCOPED_TRACE(e.path().string());
    ++files;
    const auto st = SafeTensorsReader::open(e.path());
    EXPECT_EQ(st.sourceName(), e.path().string());
    for (const std::string& name : st.names()) {
      SCOPED_TRACE(name);
      ++tensors;
      const lora::TensorInfo& t = st.info(name);
      const std::size_t rank = t.shape.size();
      Eigen::VectorXd asDouble;
      Eigen::VectorXf asFloat;
      if (rank == 2) {
        const Eigen::MatrixXd md = st.matrix<double>(name);
        const Eigen::MatrixXf mf = st.matrix<float>(name);
        ASSERT_EQ(md.rows(), t.shape[0]);
        ASSERT_EQ(md.cols(), t.shape[1]);
        // Column-major matrix vs the row-major data of flat().
        const Eigen::VectorXd flat = st.flat<double>(name);
        for (Eigen::Index i = 0; i < md.rows(); ++i) {
          for (Eigen::Index j = 0; j < md.cols(); ++j) {
            ASSERT_EQ(md(i, j), flat(i * md.cols() + j));
          }
        }
        asDouble = md.reshaped();
        asFloat = mf.reshaped();
      } else if (rank == 1) {
        asDouble = st.vector<double>(name);
        asFloat = st.vector<float>(name);
      } else {
        asDouble = st.flat<double>(name);
        asFloat = st.flat<float>(name);
      }
      ASSERT_EQ(asDouble.size(), t.numel());
      ASSERT_EQ(asFloat.size(), t.numel());
      EXPECT_TRUE(asDouble.allFinite());
      if (t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16) {
        EXPECT_EQ(asFloat.cast<double>(), asDouble);  // widening is exact
      } else {
        EXPECT_EQ(asFloat, asDouble.cast<float>());
      }
    }
  }
  EXPECT_GT(files, 0u);
  EXPECT_GT(tensors, 0u);
}

// Writing the adapters back gives the same bytes for every tensor.
TEST(PeftFixtures, AdaptersSurviveAWriteReadCycle) {
  ASSERT_TRUE(fs::is_directory(lora::test::fixtureDir()));
  const fs::path out = fs::temp_directory_path() /
                       ("lorapp-peft-roundtrip-" + std::to_string(std::random_device{}()));
  fs::create_directories(out);
  for (const fs::path& dir : variantDirs()) {
    SCOPED_TRACE(dir.filename().string());
    const auto st = SafeTensorsReader::open(dir / "adapter_model.safetensors");
    lora::SafeTensorsWriter w;
    for (const auto& [key, value] : st.metadata()) w.setMetadata(key, value);
    for (const std::string& name : st.names()) {
      const auto& t = st.info(name);
      if (t.shape.size() == 2) {
        w.add(name, st.matrix<double>(name), t.dtype);
      } else {
        ASSERT_EQ(t.shape.size(), 1u);
        w.addVector(name, st.vector<double>(name), t.dtype);
      }
    }
    const fs::path file = out / (dir.filename().string() + ".safetensors");
    w.write(file);
    const auto back = SafeTensorsReader::open(file);
    EXPECT_EQ(back.names(), st.names());
    EXPECT_EQ(back.metadata(), st.metadata());
    for (const std::string& name : st.names()) {
      const auto x = st.rawBytes(name);
      const auto y = back.rawBytes(name);
      ASSERT_TRUE(std::equal(x.begin(), x.end(), y.begin(), y.end())) << name;
    }
  }
  fs::remove_all(out);
}

// ---------------------------------------------------------------------------------------------
// AdapterConfig on synthetic JSON (the PEFT rules, independent of the fixture set)

TEST(AdapterConfigParse, FieldsAndDefaults) {
  const std::string text = R"({
    "peft_type": "LORA", "r": 4, "lora_alpha": 12.5, "use_rslora": true, "use_dora": true,
    "fan_in_fan_out": true, "bias": "lora_only", "lora_dropout": 0.1,
    "target_modules": ["q_proj", "v_proj"], "init_lora_weights": "pissa_niter_4",
    "task_type": "CAUSAL_LM", "base_model_name_or_path": "toy", "unknown_field": [1, 2]
  })";
  const AdapterConfig c = AdapterConfig::parse(text, "cfg.json");
  EXPECT_EQ(c.r, 4);
  EXPECT_EQ(c.loraAlpha, 12.5);
  EXPECT_TRUE(c.useRslora);
  EXPECT_TRUE(c.useDora);
  EXPECT_TRUE(c.fanInFanOut);
  EXPECT_EQ(c.bias, "lora_only");
  EXPECT_EQ(c.loraDropout, 0.1);
  EXPECT_EQ(c.targetModules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_FALSE(c.targetModulesRegex.has_value());
  EXPECT_EQ(c.initLoraWeights, "pissa_niter_4");
  EXPECT_EQ(c.taskType, "CAUSAL_LM");
  EXPECT_EQ(c.baseModelNameOrPath, "toy");
  EXPECT_EQ(c.rawJson, text);
  EXPECT_EQ(c.scalingFor("x.q_proj"), 12.5 / 2.0);

  const AdapterConfig d = AdapterConfig::parse(
      R"({"init_lora_weights": false, "task_type": null, "target_modules": null})", "d.json");
  EXPECT_EQ(d.r, 8);
  EXPECT_EQ(d.loraAlpha, 8.0);
  EXPECT_EQ(d.initLoraWeights, "false");
  EXPECT_FALSE(d.taskType.has_value());
  EXPECT_TRUE(d.targetModules.empty());
  EXPECT_EQ(d.scalingFor("anything"), 1.0);
  EXPECT_EQ(AdapterConfig::parse(R"({"init_lora_weights": true})", "e").initLoraWeights, "true");
}

TEST(AdapterConfigParse, PatternRuleFollowsPeft) {
  const AdapterConfig c = AdapterConfig::parse(R"({
    "r": 8, "lora_alpha": 16,
    "rank_pattern": {"q_proj": 4, "layers.1.self_attn.v_proj": 2, "up_proj|down_proj": 6,
                     "mlp.*": 3},
    "alpha_pattern": {"layers\\.[0-9]+\\.mlp\\.up_proj": 32}
  })",
                                               "p.json");
  EXPECT_EQ(c.rankFor("layers.0.self_attn.q_proj"), 4);
  EXPECT_EQ(c.rankFor("base_model.model.layers.0.self_attn.q_proj"), 4);
  EXPECT_EQ(c.rankFor("q_proj"), 4);                       // (.*\.)? may be empty
  EXPECT_EQ(c.rankFor("layers.0.self_attn.xq_proj"), 8);   // needs a '.' before the key
  EXPECT_EQ(c.rankFor("layers.0.self_attn.q_proj_2"), 8);  // anchored at the end
  EXPECT_EQ(c.rankFor("layers.1.self_attn.v_proj"), 2);
  EXPECT_EQ(c.rankFor("layers.0.self_attn.v_proj"), 8);
  EXPECT_EQ(c.rankFor("layers.0.mlp.up_proj"), 6);  // alternation, file order first
  EXPECT_EQ(c.rankFor("layers.0.mlp.gate_proj"), 3);
  EXPECT_EQ(c.rankFor("mlp.gate_proj"), 3);  // re.match anchors at the start only
  EXPECT_EQ(c.alphaFor("layers.12.mlp.up_proj"), 32.0);
  EXPECT_EQ(c.alphaFor("layers.x.mlp.up_proj"), 16.0);
  EXPECT_EQ(c.scalingFor("layers.3.mlp.up_proj"), 32.0 / 6.0);

  // File order, not sorted order, decides.
  const AdapterConfig first =
      AdapterConfig::parse(R"({"rank_pattern": {"z.*": 5, "a.*": 7}})", "o.json");
  EXPECT_EQ(first.rankPattern.front().first, "z.*");
  EXPECT_EQ(first.rankFor("za"), 5);
  const AdapterConfig a = AdapterConfig::parse(R"({"rank_pattern": {"x.q": 2, ".*q": 9}})", "o");
  const AdapterConfig b = AdapterConfig::parse(R"({"rank_pattern": {".*q": 9, "x.q": 2}})", "o");
  EXPECT_EQ(a.rankFor("m.x.q"), 2);
  EXPECT_EQ(b.rankFor("m.x.q"), 9);

  // Python's $ also matches before a final newline.
  EXPECT_EQ(c.rankFor("layers.0.q_proj\n"), 4);

  // rsLoRA: alpha / sqrt(r).
  const AdapterConfig rs = AdapterConfig::parse(
      R"({"r": 16, "lora_alpha": 8, "use_rslora": true, "rank_pattern": {"k": 4}})", "rs");
  EXPECT_DOUBLE_EQ(rs.scalingFor("a.k"), 8.0 / 2.0);
  EXPECT_DOUBLE_EQ(rs.scalingFor("a.v"), 8.0 / 4.0);

  // Fields changed after parsing are honoured.
  AdapterConfig changed = c;
  changed.rankPattern = {{"v_proj", 11}};
  EXPECT_EQ(changed.rankFor("layers.0.self_attn.v_proj"), 11);
  changed.rankPattern = {{"(", 1}};
  EXPECT_THROW((void)changed.rankFor("x"), lora::Error);
}

TEST(AdapterConfigParse, TargetsFollowsPeft) {
  const AdapterConfig list =
      AdapterConfig::parse(R"({"target_modules": ["q_proj", "mlp.up_proj"]})", "t.json");
  EXPECT_TRUE(list.targets("q_proj"));
  EXPECT_TRUE(list.targets("layers.0.self_attn.q_proj"));
  EXPECT_TRUE(list.targets("base_model.model.layers.0.self_attn.q_proj"));
  EXPECT_TRUE(list.targets("layers.0.mlp.up_proj"));
  EXPECT_FALSE(list.targets("layers.0.self_attn.xq_proj"));
  EXPECT_FALSE(list.targets("layers.0.self_attn.q_proj.base"));
  EXPECT_FALSE(list.targets("up_proj"));

  const AdapterConfig regex =
      AdapterConfig::parse(R"({"target_modules": "layers\\.\\d+\\.(q|v)_proj"})", "t.json");
  ASSERT_TRUE(regex.targetModulesRegex.has_value());
  EXPECT_TRUE(regex.targets("layers.10.q_proj"));
  EXPECT_TRUE(regex.targets("layers.1.v_proj"));
  EXPECT_FALSE(regex.targets("model.layers.1.v_proj"));  // full match
  EXPECT_FALSE(regex.targets("layers.1.k_proj"));
}

TEST(AdapterConfigParse, InvalidInputIsAnError) {
  struct Case {
    const char* json;
    const char* word;
  };
  const std::vector<Case> cases = {
      {R"({"r": 0})", "\"r\""},
      {R"({"r": -4})", "\"r\""},
      {R"({"r": 2.5})", "\"r\""},
      {R"({"r": "8"})", "\"r\""},
      {R"({"r": true})", "\"r\""},
      {R"({"r": 4294967296})", "\"r\""},
      {R"({"lora_alpha": 0})", "lora_alpha"},
      {R"({"lora_alpha": -1.5})", "lora_alpha"},
      {R"({"lora_alpha": "16"})", "lora_alpha"},
      {R"({"lora_alpha": 1e999})", "1e999"},  // nlohmann rejects the overflow
      {R"({"peft_type": "IA3"})", "IA3"},
      {R"({"peft_type": 1})", "peft_type"},
      {R"({"use_rslora": "yes"})", "use_rslora"},
      {R"({"use_dora": 1})", "use_dora"},
      {R"({"bias": "some"})", "bias"},
      {R"({"lora_dropout": 2})", "lora_dropout"},
      {R"({"lora_dropout": "0.1"})", "lora_dropout"},
      {R"({"target_modules": 5})", "target_modules"},
      {R"({"target_modules": ["q", 1]})", "target_modules"},
      {R"({"target_modules": "("})", "target_modules"},
      {R"({"rank_pattern": {"q": 0}})", "'q'"},
      {R"({"rank_pattern": {"q": 1.5}})", "'q'"},
      {R"({"rank_pattern": [1]})", "rank_pattern"},
      {R"({"rank_pattern": {"(q": 2}})", "(q"},
      {R"({"alpha_pattern": {"q": -1}})", "'q'"},
      {R"({"alpha_pattern": {"q": "x"}})", "'q'"},
      {R"({"alpha_pattern": {"[": 2}})", "["},
      {R"({"init_lora_weights": 3})", "init_lora_weights"},
      {R"({"task_type": 3})", "task_type"},
      {R"({"r": 8,})", "valid JSON"},
      {R"([1, 2])", "JSON object"},
      {"", "valid JSON"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    EXPECT_THROW((void)AdapterConfig::parse(c.json, "bad_config.json"), lora::Error);
    const std::string message =
        errorOf([&] { (void)AdapterConfig::parse(c.json, "bad_config.json"); });
    EXPECT_CONTAINS(message, "AdapterConfig::parse(): expected");
    EXPECT_CONTAINS(message, "bad_config.json");
    EXPECT_CONTAINS(message, c.word);
  }
}

TEST(AdapterConfigParse, LoadReportsThePath) {
  const fs::path missing = fs::temp_directory_path() / "lorapp-no-such-adapter-dir";
  EXPECT_THROW((void)AdapterConfig::load(missing), lora::Error);
  EXPECT_CONTAINS(errorOf([&] { (void)AdapterConfig::load(missing); }), missing.string());
  const fs::path dir = fs::temp_directory_path() /
                       ("lorapp-adapter-config-" + std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  { std::ofstream(dir / "adapter_config.json") << R"({"r": 3, "lora_alpha": 6})"; }
  EXPECT_EQ(AdapterConfig::load(dir).scalingFor("m"), 2.0);
  EXPECT_EQ(AdapterConfig::load(dir / "adapter_config.json").r, 3);
  EXPECT_CONTAINS(AdapterConfig::load(dir).sourceName, "adapter_config.json");
  fs::remove_all(dir);
}

}  // namespace
