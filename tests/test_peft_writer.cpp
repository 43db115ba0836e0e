// Tests for lora/io/peft_writer.hpp and lora/io/peft_file.hpp, and the SafeTensorsWriter
// additions they use (addRaw, addFlat, append). The round trip runs over every adapter variant
// of the PEFT fixture set, discovered from the files (LORA_PEFT_FIXTURES).

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/error.hpp"
#include "lora/io/adapter_config.hpp"
#include "lora/io/peft_adapter.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/io/peft_writer.hpp"
#include "lora/io/safetensors.hpp"
#include "support/cli.hpp"
#include "support/errors.hpp"
#include "support/fixtures.hpp"
#include "support/matrices.hpp"

namespace {

namespace fs = std::filesystem;
using lora::AdapterConfig;
using lora::DType;
using lora::PeftAdapter;
using lora::PeftAdapterFile;
using lora::PeftAdapterWriter;
using lora::SafeTensorsReader;
using lora::test::errorOf;
using lora::test::ScratchDir;

using lora::test::variantDirs;

nlohmann::ordered_json readOrderedJson(const fs::path& p) {
  return nlohmann::ordered_json::parse(lora::test::readText(p));
}

// Exact comparison of every tensor, rank, alpha and scaling of two loaded adapters.
void expectSameAdapter(const PeftAdapter<float>& a, const PeftAdapter<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  auto ib = b.begin();
  for (auto ia = a.begin(); ia != a.end(); ++ia, ++ib) {
    SCOPED_TRACE(ia->first);
    EXPECT_EQ(ia->first, ib->first);
    const auto& la = ia->second;
    const auto& lb = ib->second;
    EXPECT_EQ(la.rank(), lb.rank());
    EXPECT_EQ(la.alpha(), lb.alpha());
    EXPECT_EQ(la.scaling(), lb.scaling());
    EXPECT_EQ(la.scalingMode(), lb.scalingMode());
    EXPECT_TRUE(la.A() == lb.A());
    EXPECT_TRUE(la.B() == lb.B());
    EXPECT_EQ(la.isDora(), lb.isDora());
    if (la.isDora() && lb.isDora()) {
      EXPECT_TRUE(la.magnitude() == lb.magnitude());
    }
    // And PEFT's pattern rule, read from the two configs, agrees per module.
    EXPECT_EQ(a.config().rankFor(ia->first), b.config().rankFor(ib->first));
    EXPECT_EQ(a.config().alphaFor(ia->first), b.config().alphaFor(ib->first));
    EXPECT_EQ(a.config().scalingFor(ia->first), b.config().scalingFor(ib->first));
  }
}

// ---------------------------------------------------------------------------------------------
// Round trips over the fixtures

TEST(PeftWriterFixtures, EveryVariantLoadsSavesAndLoadsAgainIdentically) {
  ASSERT_TRUE(fs::is_directory(lora::test::fixtureDir())) << lora::test::fixtureDir();
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty());
  for (const fs::path& dir : variants) {
    SCOPED_TRACE(dir.filename().string());
    const auto original = PeftAdapter<float>::load(dir);
    ScratchDir tmp("roundtrip");
    const fs::path out = tmp / "adapter";
    lora::savePeftAdapter(original, out, DType::F32);
    const auto again = PeftAdapter<float>::load(out);
    expectSameAdapter(original, again);

    // PEFT's file layout: the same tensor names, F32, {"format": "pt"}.
    const auto st0 = SafeTensorsReader::open(dir / "adapter_model.safetensors");
    const auto st1 = SafeTensorsReader::open(out / "adapter_model.safetensors");
    std::vector<std::string> n0 = st0.names(), n1 = st1.names();
    std::sort(n0.begin(), n0.end());
    std::sort(n1.begin(), n1.end());
    EXPECT_EQ(n0, n1);
    EXPECT_EQ(st1.metadata().at("format"), "pt");
    for (const std::string& n : st1.names()) EXPECT_EQ(st1.info(n).dtype, DType::F32) << n;

    // The config keeps every field of the original (unknown ones too), patterns included.
    const auto j0 = readOrderedJson(dir / "adapter_config.json");
    const auto j1 = readOrderedJson(out / "adapter_config.json");
    for (auto it = j0.begin(); it != j0.end(); ++it) {
      ASSERT_TRUE(j1.contains(it.key())) << it.key();
      EXPECT_EQ(j1[it.key()], it.value()) << it.key();
    }
    // A second save writes the same files.
    const fs::path out2 = tmp / "adapter2";
    lora::savePeftAdapter(again, out2, DType::F32);
    EXPECT_EQ(lora::test::readText(out / "adapter_config.json"),
              lora::test::readText(out2 / "adapter_config.json"));
    EXPECT_EQ(lora::test::readText(out / "adapter_model.safetensors"),
              lora::test::readText(out2 / "adapter_model.safetensors"));
  }
}

TEST(PeftWriterFixtures, HalfPrecisionOutputRoundsEachValue) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty());
  for (const fs::path& dir : variants) {
    SCOPED_TRACE(dir.filename().string());
    const auto original = PeftAdapter<float>::load(dir);
    for (const auto& [dtype, relative] :
         {std::pair{DType::F16, 1.0 / 2048}, std::pair{DType::BF16, 1.0 / 256}}) {
      ScratchDir tmp("half");
      lora::savePeftAdapter(original, tmp / "a", dtype);
      const auto st = SafeTensorsReader::open(tmp / "a" / "adapter_model.safetensors");
      for (const std::string& n : st.names()) EXPECT_EQ(st.info(n).dtype, dtype) << n;
      const auto again = PeftAdapter<float>::load(tmp / "a");
      ASSERT_EQ(again.size(), original.size());
      auto it = again.begin();
      for (const auto& [name, layer] : original) {
        const auto& other = (it++)->second;
        EXPECT_EQ(other.rank(), layer.rank()) << name;
        EXPECT_EQ(other.scaling(), layer.scaling()) << name;
        const Eigen::ArrayXXf dA = (other.A() - layer.A()).array().abs();
        const Eigen::ArrayXXf bound =
            layer.A().array().abs() * static_cast<float>(relative) + 1e-7f;
        EXPECT_TRUE((dA <= bound).all()) << name;
      }
    }
  }
}

TEST(PeftWriterFixtures, ChangedRanksResolveUnderPeftsPatternRule) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty());
  for (const fs::path& dir : variants) {
    SCOPED_TRACE(dir.filename().string());
    auto adapter = PeftAdapter<double>::load(dir);
    std::vector<std::pair<std::string, Eigen::Index>> wanted;
    Eigen::Index i = 0;
    for (auto& [name, layer] : adapter) {
      // Every other module shrinks, to ranks that differ between modules.
      if (i++ % 2 == 0 && layer.rank() > 1)
        layer.resize(1 + (i % std::max<Eigen::Index>(1, layer.rank() - 1)));
      wanted.emplace_back(name, layer.rank());
    }
    ScratchDir tmp("patterns");
    lora::savePeftAdapter(adapter, tmp / "a");
    const AdapterConfig cfg = AdapterConfig::load(tmp / "a");
    const auto again = PeftAdapter<double>::load(tmp / "a");  // checks ranks against the config
    for (const auto& [name, rank] : wanted) {
      EXPECT_EQ(cfg.rankFor(name), rank) << name;
      EXPECT_NEAR(cfg.scalingFor(name), adapter.layer(name).scaling(),
                  1e-12 * adapter.layer(name).scaling())
          << name;
      EXPECT_EQ(again.layer(name).rank(), rank);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Patterns

TEST(PeftWriterPatterns, KeysAreEscapedAnchoredAndIndependentOfOrder) {
  // Names with regex metacharacters, and names that are dotted suffixes of other names.
  const std::vector<lora::ModuleRankAlpha> modules = {{"layers.0.fc", 4, 8},
                                                      {"model.layers.0.fc", 8, 8},
                                                      {"x.model.layers.0.fc", 2, 8},
                                                      {"blocks.1.attn(qkv)+", 6, 3},
                                                      {"blocks.1.attn.q", 8, 8},
                                                      {"layers.10.fc", 8, 8},
                                                      {"layers.1.fc", 8, 16},
                                                      {"a.b", 8, 8},
                                                      {"xa.b", 5, 8}};
  AdapterConfig cfg;
  lora::assignPatterns(cfg, modules);
  EXPECT_EQ(cfg.r, 8);
  EXPECT_EQ(cfg.loraAlpha, 8);
  const std::string text = lora::adapterConfigJson(cfg);
  const AdapterConfig parsed = AdapterConfig::parse(text, "written");
  for (const auto& m : modules) {
    EXPECT_EQ(parsed.rankFor(m.module), m.rank) << m.module;
    EXPECT_EQ(parsed.alphaFor(m.module), m.alpha) << m.module;
    EXPECT_TRUE(parsed.targets(m.module)) << m.module;
  }
  // PEFT sorts the keys when it saves a config again: the result must not depend on the order.
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(text);
  for (const char* field : {"rank_pattern", "alpha_pattern"}) {
    nlohmann::ordered_json reversed = nlohmann::ordered_json::object();
    std::vector<std::string> keys;
    for (auto it = j[field].begin(); it != j[field].end(); ++it) keys.push_back(it.key());
    std::reverse(keys.begin(), keys.end());
    for (const auto& k : keys) reversed[k] = j[field][k];
    j[field] = reversed;
  }
  const AdapterConfig reordered = AdapterConfig::parse(j.dump(), "reordered");
  for (const auto& m : modules) {
    EXPECT_EQ(reordered.rankFor(m.module), m.rank) << m.module;
    EXPECT_EQ(reordered.alphaFor(m.module), m.alpha) << m.module;
  }
  EXPECT_EQ(lora::escapePatternKey("a.b(c)[d]+e*f?g|h^i$j{k}\\"),
            "a\\.b\\(c\\)\\[d\\]\\+e\\*f\\?g\\|h\\^i\\$j\\{k\\}\\\\");
}

TEST(PeftWriterPatterns, AConfigThatAlreadyResolvesIsKept) {
  AdapterConfig cfg = AdapterConfig::parse(
      R"({"peft_type": "LORA", "r": 16, "lora_alpha": 16, "rank_pattern": {"down_proj": 4},
          "alpha_pattern": {"up_proj": 64}, "target_modules": ["down_proj", "up_proj", "q_proj"]})",
      "t");
  const std::vector<lora::ModuleRankAlpha> modules = {{"layers.0.mlp.down_proj", 4, 16},
                                                      {"layers.0.mlp.up_proj", 16, 64},
                                                      {"layers.0.q_proj", 16, 16}};
  AdapterConfig kept = cfg;
  lora::assignPatterns(kept, modules);
  EXPECT_EQ(kept.rankPattern, cfg.rankPattern);
  EXPECT_EQ(kept.alphaPattern, cfg.alphaPattern);
  EXPECT_EQ(kept.targetModules, cfg.targetModules);
  // A module the list misses is added to it; a regex that misses one is an error.
  AdapterConfig extended = cfg;
  lora::assignPatterns(extended, {{"layers.0.k_proj", 16, 16}});
  EXPECT_TRUE(extended.targets("layers.0.k_proj"));
  AdapterConfig regex =
      AdapterConfig::parse(R"({"peft_type": "LORA", "target_modules": ".*q_proj"})", "t");
  EXPECT_CONTAINS(errorOf([&] {
                    lora::assignPatterns(regex, {{"layers.0.k_proj", 8, 8}});
                  }),
                  "assignPatterns(): expected the target_modules regex '.*q_proj' to match module "
                  "'layers.0.k_proj'");
}

TEST(PeftWriterConfig, HasEveryFieldPeftReadsWithSortedKeys) {
  ScratchDir tmp("fields");
  AdapterConfig tpl = AdapterConfig::parse(
      R"({"peft_type": "LORA", "use_rslora": true, "task_type": "CAUSAL_LM", "zeta": [1, 2],
          "base_model_name_or_path": "org/model", "init_lora_weights": "gaussian", "lora_dropout": 0.05})",
      "t");
  PeftAdapterWriter w(tpl, DType::BF16);
  w.add("layers.0.q_proj", lora::test::gaussian<float>(4, 6, 1),
        lora::test::gaussian<float>(5, 4, 2), 8.0);
  w.add("base_model.model.layers.0.v_proj", lora::test::gaussian<double>(2, 6, 3),
        lora::test::gaussian<double>(5, 2, 4), 4.0);
  w.write(tmp / "a");
  const auto j = readOrderedJson(tmp / "a" / "adapter_config.json");
  for (const char* field :
       {"peft_type", "r", "lora_alpha", "target_modules", "rank_pattern", "alpha_pattern",
        "use_rslora", "use_dora", "fan_in_fan_out", "bias", "lora_dropout", "init_lora_weights",
        "task_type", "base_model_name_or_path", "inference_mode", "zeta"}) {
    EXPECT_TRUE(j.contains(field)) << field;
  }
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["use_rslora"], true);
  EXPECT_EQ(j["use_dora"], false);
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["init_lora_weights"], "gaussian");
  EXPECT_EQ(j["zeta"], nlohmann::ordered_json::parse("[1, 2]"));
  const auto file = PeftAdapterFile::open(tmp / "a");
  ASSERT_EQ(file.modules().size(), 2u);
  EXPECT_EQ(file.modules()[1].name, "layers.0.v_proj");
  EXPECT_EQ(file.modules()[1].rank, 2);
  EXPECT_EQ(file.modules()[1].alpha, 4.0);
  EXPECT_EQ(file.dtype(), DType::BF16);
  EXPECT_EQ(file.scaling(file.modules()[0]), 8.0 / 2.0);  // rsLoRA: 8 / sqrt(4)
  const auto st = SafeTensorsReader::open(tmp / "a" / "adapter_model.safetensors");
  EXPECT_TRUE(st.contains("base_model.model.layers.0.q_proj.lora_A.weight"));
  EXPECT_TRUE(st.contains("base_model.model.layers.0.v_proj.lora_B.weight"));
  EXPECT_EQ(st.metadata().at("format"), "pt");
}

TEST(PeftWriterConfig, DoraMagnitudesAreWritten) {
  ScratchDir tmp("dora");
  PeftAdapterWriter w;
  const Eigen::VectorXf m = lora::test::gaussian<float>(5, 1, 9).cwiseAbs();
  w.add("fc", lora::test::gaussian<float>(3, 4, 1), lora::test::gaussian<float>(5, 3, 2), 6.0, m);
  w.write(tmp / "a");
  const auto adapter = PeftAdapter<float>::load(tmp / "a");
  EXPECT_TRUE(adapter.config().useDora);
  EXPECT_TRUE(adapter.layer("fc").magnitude() == m);
}

// Expressions are evaluated once: a nullary Random expression used to read as "NaN or Inf"
// (Eigen's allFinite() reads it twice and gets other values), and a product is written as is.
TEST(PeftWriterConfig, AcceptsEigenExpressions) {
  ScratchDir tmp("expr");
  PeftAdapterWriter w;
  const Eigen::MatrixXf A = lora::test::gaussian<float>(3, 4, 1);
  w.add("fc", Eigen::MatrixXf::Random(3, 4), Eigen::MatrixXf::Zero(5, 3), 6.0);
  w.add("fc2", A * 2.0f, Eigen::MatrixXf::Constant(5, 3, 0.25f), 6.0);
  w.write(tmp / "a");
  const auto adapter = PeftAdapter<float>::load(tmp / "a");
  EXPECT_TRUE(adapter.layer("fc").A().allFinite());
  EXPECT_LE(adapter.layer("fc").A().cwiseAbs().maxCoeff(), 1.0f);
  EXPECT_TRUE(adapter.layer("fc2").A() == A * 2.0f);
  EXPECT_TRUE(adapter.layer("fc2").B() == Eigen::MatrixXf::Constant(5, 3, 0.25f));
}

// ---------------------------------------------------------------------------------------------
// Bad input and fail-safe writes

TEST(PeftWriterErrors, BadModulesThrowAndLeaveTheWriterUnchanged) {
  PeftAdapterWriter w;
  const Eigen::MatrixXf A = lora::test::gaussian<float>(3, 4, 1),
                        B = lora::test::gaussian<float>(5, 3, 2);
  w.add("fc", A, B, 8);
  EXPECT_CONTAINS(
      errorOf([&] { w.add("g", A, lora::test::gaussian<float>(5, 2, 3), 8); }),
      "PeftAdapterWriter::add(): expected A (r x in) and B (out x r) with the same r >= 1 "
      "for module 'g', got A 3x4 and B 5x2");
  EXPECT_CONTAINS(errorOf([&] { w.add("fc", A, B, 8); }), "got 'fc' twice");
  EXPECT_CONTAINS(errorOf([&] { w.add("g", A, B, 0); }), "expected a positive finite alpha");
  Eigen::MatrixXf bad = A;
  bad(0, 0) = std::nanf("");
  EXPECT_CONTAINS(errorOf([&] { w.add("g", bad, B, 8); }), "got NaN or Inf");
  EXPECT_CONTAINS(errorOf([&] { w.add("g", A, B, 8, Eigen::VectorXf::Ones(5)); }),
                  "expected every module without a DoRA magnitude");
  EXPECT_EQ(w.size(), 1u);
  EXPECT_CONTAINS(errorOf([] { PeftAdapterWriter(AdapterConfig{}, DType::I32); }),
                  "expected an output dtype of F32, F16, BF16 or F64, got I32");
  ScratchDir tmp("empty");
  EXPECT_CONTAINS(errorOf([&] { PeftAdapterWriter().write(tmp / "x"); }),
                  "expected at least one module");
  EXPECT_FALSE(fs::exists(tmp / "x"));
}

TEST(PeftWriterErrors, FailedWritesLeaveNoPartialOutput) {
  ScratchDir tmp("failsafe");
  PeftAdapterWriter w;
  w.add("fc", lora::test::gaussian<float>(3, 4, 1), lora::test::gaussian<float>(5, 3, 2), 8);

  // A folder below a regular file cannot be created: nothing is left behind.
  std::ofstream(tmp / "file") << "x";
  EXPECT_CONTAINS(errorOf([&] { w.write(tmp / "file" / "sub" / "adapter"); }),
                  "PeftAdapterWriter::write(): expected");
  EXPECT_EQ(lora::test::readText(tmp / "file"), "x");

  // An earlier adapter stays as it was when the second rename fails (a folder is in the way of
  // adapter_config.json): the tensors file comes back from its hard link.
  PeftAdapterWriter first;
  first.add("fc", lora::test::gaussian<float>(2, 4, 7), lora::test::gaussian<float>(5, 2, 8), 8);
  first.write(tmp / "a");
  const std::string before = lora::test::readText(tmp / "a" / "adapter_model.safetensors");
  fs::remove(tmp / "a" / "adapter_config.json");
  fs::create_directories(tmp / "a" / "adapter_config.json" / "in_the_way");
  EXPECT_CONTAINS(errorOf([&] { w.write(tmp / "a"); }), "expected to move the new config into");
  EXPECT_EQ(lora::test::readText(tmp / "a" / "adapter_model.safetensors"), before);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(tmp / "a"))
    left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"adapter_config.json", "adapter_model.safetensors"}));

  // A folder in the way of the tensors file: the write fails before any rename.
  fs::create_directories(tmp / "b" / "new" / "adapter_model.safetensors");
  EXPECT_CONTAINS(errorOf([&] { w.write(tmp / "b" / "new"); }),
                  "expected a file path for the tensors");
  EXPECT_TRUE(fs::is_directory(tmp / "b" / "new" / "adapter_model.safetensors"));
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp / "b" / "new"), fs::directory_iterator()), 1);
}

TEST(PeftWriterErrors, AtomicTextWrites) {
  ScratchDir tmp("text");
  lora::writeFileAtomic(tmp / "f.json", "{}\n");
  EXPECT_EQ(lora::test::readText(tmp / "f.json"), "{}\n");
  EXPECT_CONTAINS(errorOf([&] { lora::writeFileAtomic(tmp / "missing" / "f.json", "x"); }),
                  "writeFileAtomic(): expected a writable folder");
  EXPECT_CONTAINS(errorOf([&] { lora::writeFileAtomic(tmp.path(), "x"); }), "expected a file path");
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
}

// ---------------------------------------------------------------------------------------------
// Streaming (streamTo): the same files as a writer that keeps everything, module by module

TEST(PeftWriterStreaming, EveryVariantStreamsToTheSameTensorsAndConfig) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty());
  for (const fs::path& dir : variants) {
    SCOPED_TRACE(dir.filename().string());
    const auto file = PeftAdapterFile::open(dir);
    EXPECT_TRUE(file.tensors().isMapped());
    ScratchDir tmp("stream");
    // Bounds above the real ranks (a resize's bounds are the old ranks): the header's room is
    // larger than it needs and padded with spaces.
    std::vector<lora::ModuleBound> bounds;
    for (const auto& m : file.modules())
      bounds.push_back(
          {m.name, static_cast<int>(m.rank) + 100, m.in, m.out, !m.keyMagnitude.empty()});
    PeftAdapterWriter kept(file.config(), DType::F32), streamed(file.config(), DType::F32);
    streamed.streamTo(tmp / "streamed", bounds);
    EXPECT_TRUE(streamed.isStreaming());
    for (const auto& m : file.modules()) {
      const Eigen::MatrixXf A = file.A<float>(m), B = file.B<float>(m);
      PeftAdapterWriter part(file.config(), DType::F32);
      if (m.keyMagnitude.empty()) {
        kept.add(m.name, A, B, m.alpha);
        part.add(m.name, A, B, m.alpha);
      } else {
        kept.add(m.name, A, B, m.alpha, file.magnitude<float>(m));
        part.add(m.name, A, B, m.alpha, file.magnitude<float>(m));
      }
      streamed.append(std::move(part));
      file.release(m);
      // Released pages come back from the file when used again.
      EXPECT_EQ(file.A<float>(m), A);
    }
    kept.write(tmp / "kept");
    streamed.write(tmp / "streamed");
    EXPECT_EQ(lora::test::readText(tmp / "kept" / "adapter_config.json"),
              lora::test::readText(tmp / "streamed" / "adapter_config.json"));
    const auto a = SafeTensorsReader::open(tmp / "kept" / "adapter_model.safetensors");
    const auto b = SafeTensorsReader::open(tmp / "streamed" / "adapter_model.safetensors");
    EXPECT_EQ(a.names(), b.names());
    EXPECT_EQ(b.metadata(), a.metadata());
    for (const std::string& n : a.names()) {
      const auto x = a.rawBytes(n), y = b.rawBytes(n);
      EXPECT_TRUE(std::equal(x.begin(), x.end(), y.begin(), y.end())) << n;
      EXPECT_EQ(a.info(n).shape, b.info(n).shape) << n;
    }
    const auto loaded = PeftAdapter<float>::load(tmp / "streamed");
    expectSameAdapter(PeftAdapter<float>::load(dir), loaded);
    // Only the two files are left.
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp / "streamed"), fs::directory_iterator()), 2);
  }
}

TEST(PeftWriterStreaming, BoundsAreEnforcedAndFailuresLeaveNothing) {
  ScratchDir tmp("stream_errors");
  const Eigen::MatrixXf A = lora::test::gaussian<float>(3, 4, 1),
                        B = lora::test::gaussian<float>(5, 3, 2);
  const std::vector<lora::ModuleBound> bounds = {{"fc", 3, 4, 5, false}, {"g", 2, 4, 5, false}};
  {
    PeftAdapterWriter w;
    w.streamTo(tmp / "sub" / "out", bounds);
    EXPECT_TRUE(fs::is_directory(tmp / "sub" / "out"));
    EXPECT_CONTAINS(errorOf([&] { w.add("other", A, B, 8); }),
                    "PeftAdapterWriter::add(): expected a module listed in the bounds given to "
                    "streamTo, got tensor 'base_model.model.other.lora_A.weight'");
    EXPECT_CONTAINS(errorOf([&] { w.add("g", A, B, 8); }), "got a larger shape");
    EXPECT_EQ(w.size(), 0u);
    w.add("fc", A, B, 8);  // still usable after the errors
    EXPECT_CONTAINS(errorOf([&] { w.streamTo(tmp / "again", bounds); }),
                    "expected a writer that is not streaming yet");
    EXPECT_CONTAINS(errorOf([&] { w.write(tmp / "elsewhere"); }),
                    "expected the folder given to streamTo");
    PeftAdapterWriter plain;
    plain.add("g", lora::test::gaussian<float>(2, 4, 3), lora::test::gaussian<float>(5, 2, 4), 4);
    PeftAdapterWriter other;
    other.streamTo(tmp / "other", bounds);
    EXPECT_CONTAINS(errorOf([&] { plain.append(std::move(other)); }),
                    "expected a writer that is not streaming");
    // Destroyed before write(): the staging files and the folders streamTo created are gone.
  }
  EXPECT_FALSE(fs::exists(tmp / "sub"));
  EXPECT_FALSE(fs::exists(tmp / "other"));
  EXPECT_CONTAINS(errorOf([&] { PeftAdapterWriter().streamTo(tmp / "x", {}); }),
                  "expected at least one module bound");
  EXPECT_CONTAINS(errorOf([&] {
                    PeftAdapterWriter().streamTo(tmp / "x", {{"fc", 0, 4, 5, false}});
                  }),
                  "expected a module name, a rank >= 1");
  PeftAdapterWriter full;
  full.add("fc", A, B, 8);
  EXPECT_CONTAINS(errorOf([&] { full.streamTo(tmp / "x", bounds); }), "expected an empty writer");
  std::ofstream(tmp / "file") << "x";
  EXPECT_CONTAINS(errorOf([&] { PeftAdapterWriter().streamTo(tmp / "file", bounds); }),
                  "expected a folder for the adapter, got the file");
  EXPECT_FALSE(fs::exists(tmp / "x"));

  // A streamed write over an earlier adapter replaces it; a written writer cannot write again.
  PeftAdapterWriter first;
  first.add("fc", A, B, 8);
  first.write(tmp / "a");
  PeftAdapterWriter w;
  w.streamTo(tmp / "a", bounds);
  w.add("g", lora::test::gaussian<float>(2, 4, 5), lora::test::gaussian<float>(5, 2, 6), 4);
  w.write(tmp / "a");
  const auto file = PeftAdapterFile::open(tmp / "a");
  ASSERT_EQ(file.modules().size(), 1u);
  EXPECT_EQ(file.modules()[0].name, "g");
  EXPECT_EQ(file.modules()[0].rank, 2);
  EXPECT_CONTAINS(errorOf([&] { w.write(tmp / "a"); }), "has not written yet");
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp / "a"), fs::directory_iterator()), 2);
}

// ---------------------------------------------------------------------------------------------
// PeftAdapterFile agrees with PeftAdapter

TEST(PeftAdapterFileFixtures, ModulesRanksAlphasAndFactorsAgreeWithPeftAdapter) {
  for (const fs::path& dir : variantDirs()) {
    SCOPED_TRACE(dir.filename().string());
    const auto file = PeftAdapterFile::open(dir);
    const auto adapter = PeftAdapter<double>::load(dir);
    ASSERT_EQ(file.modules().size(), adapter.size());
    auto it = adapter.begin();
    for (const auto& m : file.modules()) {
      const auto& [name, layer] = *it++;
      EXPECT_EQ(m.name, name);
      EXPECT_EQ(m.rank, layer.rank());
      EXPECT_EQ(m.in, layer.inFeatures());
      EXPECT_EQ(m.out, layer.outFeatures());
      EXPECT_EQ(m.alpha, layer.alpha());
      EXPECT_EQ(file.scaling(m), layer.scaling());
      EXPECT_TRUE(file.A<double>(m) == layer.A());
      EXPECT_TRUE(file.B<double>(m) == layer.B());
      EXPECT_EQ(file.parameterCount(m), layer.parameterCount());
      if (layer.isDora()) {
        EXPECT_TRUE(file.magnitude<double>(m) == layer.magnitude());
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SafeTensorsWriter additions

TEST(SafeTensorsWriterAdditions, RawFlatAndAppend) {
  ScratchDir tmp("st");
  lora::SafeTensorsWriter w;
  const std::vector<std::byte> ids = {std::byte{1}, std::byte{0}, std::byte{0}, std::byte{0},
                                      std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}};
  w.addRaw("ids", DType::I64, {1}, ids);
  Eigen::VectorXd flat(24);
  for (int i = 0; i < 24; ++i) flat(i) = i * 0.5;
  w.addFlat("conv", {2, 3, 2, 2}, flat, DType::F32);
  EXPECT_CONTAINS(errorOf([&] { w.addRaw("bad", DType::F32, {3}, ids); }),
                  "SafeTensorsWriter::addRaw(): expected 12 bytes for tensor 'bad'");
  EXPECT_CONTAINS(errorOf([&] { w.addFlat("bad", {5}, flat); }),
                  "SafeTensorsWriter::addFlat(): expected 5 values for shape [5]");
  EXPECT_CONTAINS(errorOf([&] { w.addRaw("ids", DType::I64, {1}, ids); }), "duplicate 'ids'");
  lora::SafeTensorsWriter other;
  other.add("m", Eigen::MatrixXf::Ones(2, 2));
  lora::SafeTensorsWriter clash;
  clash.add("conv", Eigen::MatrixXf::Ones(1, 1));
  EXPECT_CONTAINS(errorOf([&] { w.append(std::move(clash)); }), "duplicate 'conv'");
  EXPECT_EQ(clash.size(), 1u);
  w.append(std::move(other));
  EXPECT_EQ(w.size(), 3u);
  EXPECT_EQ(other.size(), 0u);
  w.write(tmp / "f.safetensors");
  const auto st = SafeTensorsReader::open(tmp / "f.safetensors");
  EXPECT_EQ(st.names(), (std::vector<std::string>{"ids", "conv", "m"}));
  EXPECT_EQ(st.info("ids").dtype, DType::I64);
  EXPECT_EQ(st.info("conv").shape, (std::vector<std::int64_t>{2, 3, 2, 2}));
  EXPECT_TRUE(st.flat<double>("conv") == flat);
  EXPECT_TRUE(st.matrix<float>("m") == Eigen::MatrixXf::Ones(2, 2));
}

}  // namespace
