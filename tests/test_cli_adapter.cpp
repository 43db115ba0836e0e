// `lora inspect | merge | convert-pissa` on the PEFT fixture adapters, run as a user runs them
// (the binary, its exit code, stdout and the files it writes), checked against PEFT's own files
// (merged.safetensors, meta.json) and dense computations done here. Variants, modules, shapes and
// ranks are discovered from the files (LORA_PEFT_FIXTURES). Resize and recommend: test_cli_resize.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/io/adapter_config.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/io/peft_writer.hpp"
#include "lora/io/safetensors.hpp"
#include "lora/linalg/spectrum.hpp"
#include "lora/rank/budget.hpp"
#include "support/cli.hpp"
#include "support/cli_fixtures.hpp"
#include "support/fixtures.hpp"
#include "support/matrices.hpp"

namespace {

using namespace lora::test::cli_fixtures;
using lora::test::CliResult;
using lora::test::runCli;
using lora::test::ScratchDir;
using Json = nlohmann::json;

TEST(CliAdapter, HelpListsTheSubcommands) {
  const CliResult r = runCli("--help");
  EXPECT_EQ(r.status, 0);
  for (const char* sub : {"inspect", "merge", "resize", "convert-pissa", "recommend"}) {
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
    EXPECT_EQ(runCli(std::string(sub) + " --help").status, 0) << sub;
  }
}

TEST(CliInspect, ReportsEveryModuleOfEveryVariant) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty()) << lora::test::fixtureDir();
  for (const fs::path& dir : variants) {
    SCOPED_TRACE(dir.filename().string());
    const CliResult r = runCli("inspect --json " + q(dir));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;  // no progress bar when stderr is not a terminal
    const Json j = Json::parse(r.out);
    const auto file = PeftAdapterFile::open(dir);
    const Json meta = Json::parse(lora::test::readText(dir / "meta.json"));
    ASSERT_EQ(j["modules"].size(), file.modules().size());
    long long params = 0;
    for (std::size_t i = 0; i < file.modules().size(); ++i) {
      const auto& m = file.modules()[i];
      const Json& e = j["modules"][i];
      SCOPED_TRACE(m.name);
      EXPECT_EQ(e["name"], m.name);
      EXPECT_EQ(e["out"], m.out);
      EXPECT_EQ(e["in"], m.in);
      EXPECT_EQ(e["rank"], meta["ranks"][m.name]);
      EXPECT_NEAR(e["scaling"].get<double>(), meta["scalings"][m.name].get<double>(), 1e-12);
      const Eigen::VectorXd sigma =
          denseSpectrum(denseDelta(file, m), std::min({m.rank, m.out, m.in}));
      EXPECT_NEAR(e["sigma1"].get<double>(), sigma(0), 1e-9 * sigma(0) + 1e-300);
      EXPECT_EQ(e["energy_rank_90"], lora::linalg::energyRank(sigma, 0.90));
      EXPECT_EQ(e["energy_rank_99"], lora::linalg::energyRank(sigma, 0.99));
      EXPECT_NEAR(e["entropy_effective_rank"].get<double>(),
                  lora::linalg::entropyEffectiveRank(sigma), 1e-6);
      EXPECT_EQ(e["params"], file.parameterCount(m));
      params += file.parameterCount(m);
    }
    EXPECT_EQ(j["totals"]["params"], params);
    if (dir == variants.front()) {  // the table, once
      const CliResult text = runCli("inspect " + q(dir));
      ASSERT_EQ(text.status, 0);
      for (const auto& m : file.modules()) EXPECT_NE(text.out.find(m.name), std::string::npos);
    }
  }
}

TEST(CliMerge, EqualsPeftsMergedModelForEveryVariant) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty());
  for (const fs::path& dir : variants) {
    SCOPED_TRACE(dir.filename().string());
    ScratchDir tmp("merge");
    const fs::path out = tmp / "merged.safetensors";
    const AdapterConfig cfg = AdapterConfig::load(dir);
    const CliResult r = runCli("merge --base " + q(baseModel()) + " --adapter " + q(dir) +
                               " --out " + q(out));
    if (mutatesBase(cfg)) {
      // PiSSA/OLoRA factors apply to the residual base, which PEFT made at initialisation:
      // merging them into the original weights would be wrong, so merge refuses...
      expectOneErrorLine(r);
      EXPECT_FALSE(fs::exists(out));
    } else {
      ASSERT_EQ(r.status, 0) << r.err;
      EXPECT_LE(maxRelativeDifference(out, dir / "merged.safetensors"), 1e-5);
    }
    // ... and with the residual base (the base file with residual.safetensors put in), every
    // variant's merge equals PEFT's merge_and_unload().
    const fs::path resBase = residualBase(dir, tmp.path());
    const fs::path out2 = tmp / "merged_residual.safetensors";
    const CliResult res = runCli("merge --residual --base " + q(resBase) + " --adapter " + q(dir) +
                                 " --out " + q(out2) + " --threads 3");
    ASSERT_EQ(res.status, 0) << res.err;
    EXPECT_LE(maxRelativeDifference(out2, dir / "merged.safetensors"), 1e-5);
  }
}

TEST(CliMerge, DtypeOptionConvertsEveryFloatTensor) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty());
  const fs::path dir = variants.front();
  ScratchDir tmp("mergedtype");
  const fs::path f32 = tmp / "f32.safetensors", bf16 = tmp / "bf16.safetensors";
  ASSERT_EQ(runCli("merge --residual --base " + q(residualBase(dir, tmp.path())) + " --adapter " +
                   q(dir) + " --out " + q(f32))
                .status,
            0);
  const CliResult r = runCli("merge --residual --dtype bf16 --base " +
                             q(residualBase(dir, tmp.path())) + " --adapter " + q(dir) + " --out " +
                             q(bf16));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto st = SafeTensorsReader::open(bf16);
  for (const std::string& n : st.names()) EXPECT_EQ(st.info(n).dtype, DType::BF16) << n;
  EXPECT_LE(maxRelativeDifference(bf16, f32), 1.0 / 256);
}

TEST(CliMerge, FanInFanOutAndDoraOnASyntheticModel) {
  // fan_in_fan_out stores the base weight as (in, out); DoRA scales each output row of
  // V = W + s·B·A by m / ||V||_row. Checked densely here.
  for (const bool dora : {false, true}) {
    SCOPED_TRACE(dora ? "dora" : "lora");
    ScratchDir tmp("fanin");
    const std::string config = std::string(R"({"peft_type": "LORA", "r": 3, "lora_alpha": 6, "fan_in_fan_out": true, "use_dora": )") +
                               (dora ? "true" : "false") + "}";
    const Eigen::MatrixXd A = lora::test::gaussian<double>(3, 5, 1), B = lora::test::gaussian<double>(7, 3, 2);
    const Eigen::VectorXd m = lora::test::gaussian<double>(7, 1, 3).cwiseAbs();
    writeAdapter(tmp / "a", config, DType::F64, [&](lora::PeftAdapterWriter& w) {
      if (dora) {
        w.add("h.0.c_attn", A, B, 6, m);
      } else {
        w.add("h.0.c_attn", A, B, 6);
      }
    });
    const Eigen::MatrixXd W = lora::test::gaussian<double>(7, 5, 4);  // out x in
    lora::SafeTensorsWriter base;
    base.add("h.0.c_attn.weight", W.transpose(), DType::F64);  // stored (in, out)
    base.addFlat("h.0.c_attn.bias", {7}, lora::test::gaussian<double>(7, 1, 5), DType::F64);
    base.write(tmp / "base.safetensors");
    const CliResult r = runCli("merge --base " + q(tmp / "base.safetensors") + " --adapter " +
                               q(tmp / "a") + " --out " + q(tmp / "m.safetensors"));
    ASSERT_EQ(r.status, 0) << r.err;
    Eigen::MatrixXd V = W + 2.0 * B * A;  // s = 6 / 3
    if (dora) {
      const Eigen::VectorXd c = m.array() / V.rowwise().norm().array();
      V = c.asDiagonal() * V;
    }
    const auto st = SafeTensorsReader::open(tmp / "m.safetensors");
    EXPECT_EQ(st.info("h.0.c_attn.weight").shape, (std::vector<std::int64_t>{5, 7}));
    EXPECT_LE((st.matrix<double>("h.0.c_attn.weight") - V.transpose()).norm(), 1e-12 * V.norm());
    EXPECT_EQ(st.info("h.0.c_attn.bias").dtype, DType::F64);
  }
}

TEST(CliConvertPissa, ConvertedAdapterOnTheOriginalBaseEqualsPeftsMergedModel) {
  // For every variant without DoRA: the adapter right after init (A0, B0) and the saved one
  // (A1, B1) give a rank-2r LoRA whose merge into the original base is PEFT's merged model.
  // (PiSSA/OLoRA fixtures are saved untrained, so there s·B1·A1 - s·B0·A0 cancels to rounding:
  // that checks the sign and the stacking of the B0 half; the other variants start at B0 = 0.)
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty());
  for (const fs::path& dir : variants) {
    SCOPED_TRACE(dir.filename().string());
    ScratchDir tmp("convert");
    const AdapterConfig cfg = AdapterConfig::load(dir);
    const CliResult r = runCli("convert-pissa --initial " + q(dir / "init_adapter.safetensors") +
                               " --trained " + q(dir) + " --out " + q(tmp / "lora"));
    if (cfg.useDora) {
      expectOneErrorLine(r);
      EXPECT_FALSE(fs::exists(tmp / "lora"));
      continue;
    }
    ASSERT_EQ(r.status, 0) << r.err;
    const auto out = PeftAdapterFile::open(tmp / "lora");
    const auto in = PeftAdapterFile::open(dir);
    const AdapterConfig& oc = out.config();
    EXPECT_EQ(oc.r, 2 * cfg.r);
    EXPECT_NEAR(oc.loraAlpha, cfg.loraAlpha * (cfg.useRslora ? std::sqrt(2.0) : 2.0), 1e-12);
    EXPECT_EQ(oc.initLoraWeights, "true");
    for (std::size_t i = 0; i < in.modules().size(); ++i) {
      EXPECT_EQ(out.modules()[i].rank, 2 * in.modules()[i].rank);
      EXPECT_NEAR(out.scaling(out.modules()[i]), in.scaling(in.modules()[i]), 1e-12);
    }
    const fs::path merged = tmp / "merged.safetensors";
    ASSERT_EQ(runCli("merge --base " + q(baseModel()) + " --adapter " + q(tmp / "lora") +
                     " --out " + q(merged))
                  .status,
              0);
    EXPECT_LE(maxRelativeDifference(merged, dir / "merged.safetensors"), 1e-5);
  }
}

TEST(CliConvertPissa, DeltaIsTrainedMinusInitialWithAndWithoutRsLora) {
  for (const bool rslora : {false, true}) {
    SCOPED_TRACE(rslora ? "rslora" : "standard");
    ScratchDir tmp("convert_synth");
    const std::string config =
        std::string(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "init_lora_weights": "pissa", )") +
        R"("rank_pattern": {"v": 2}, "alpha_pattern": {"v": 3}, "use_rslora": )" +
        (rslora ? "true" : "false") + "}";
    const auto fill = [](std::uint64_t seed) {
      return [seed](lora::PeftAdapterWriter& w) {
        w.add("layers.0.q", lora::test::gaussian<double>(4, 7, seed), lora::test::gaussian<double>(9, 4, seed + 1), 8);
        w.add("layers.0.v", lora::test::gaussian<double>(2, 7, seed + 2), lora::test::gaussian<double>(5, 2, seed + 3), 3);
      };
    };
    writeAdapter(tmp / "init", config, DType::F64, fill(10));
    writeAdapter(tmp / "trained", config, DType::F64, fill(20));
    // The initial factors as PEFT's initial folder, and as a bare safetensors file.
    lora::SafeTensorsWriter bare;
    const auto init = PeftAdapterFile::open(tmp / "init");
    for (const auto& m : init.modules()) {
      bare.add(m.name + ".lora_A.weight", init.A<double>(m), DType::F64);
      bare.add(m.name + ".lora_B.weight", init.B<double>(m), DType::F64);
    }
    bare.write(tmp / "init.safetensors");
    for (const fs::path& initial : {tmp / "init", tmp / "init.safetensors"}) {
      const fs::path out = tmp / ("out_" + initial.filename().string());
      const CliResult r = runCli("convert-pissa --initial " + q(initial) + " --trained " +
                                 q(tmp / "trained") + " --out " + q(out));
      ASSERT_EQ(r.status, 0) << r.err;
      const auto conv = PeftAdapterFile::open(out);
      const auto trained = PeftAdapterFile::open(tmp / "trained");
      const double factor = rslora ? std::sqrt(2.0) : 2.0;
      EXPECT_EQ(conv.config().r, 8);
      EXPECT_NEAR(conv.config().loraAlpha, 8 * factor, 1e-12);
      for (std::size_t i = 0; i < conv.modules().size(); ++i) {
        const auto& m = conv.modules()[i];
        SCOPED_TRACE(m.name);
        EXPECT_EQ(m.rank, 2 * trained.modules()[i].rank);
        EXPECT_NEAR(m.alpha, trained.modules()[i].alpha * factor, 1e-12);
        const Eigen::MatrixXd want =
            denseDelta(trained, trained.modules()[i]) - denseDelta(init, init.modules()[i]);
        EXPECT_LE((denseDelta(conv, m) - want).norm(), 1e-12 * want.norm());
      }
    }
  }
}

TEST(CliAdapter, AZeroDeltaAdapterIsHandled) {
  // A fresh PEFT adapter has B = 0: every σ is 0. inspect, resize and recommend (energy-shared
  // exactly) still work; the article's allocation needs some importance and says so.
  ScratchDir tmp("zero");
  writeAdapter(tmp / "a", R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8})", DType::F32,
               [](lora::PeftAdapterWriter& w) {
                 w.add("l.0.q", lora::test::gaussian<float>(4, 6, 1), Eigen::MatrixXf::Zero(8, 4), 8);
                 w.add("l.0.v", lora::test::gaussian<float>(4, 6, 2), Eigen::MatrixXf::Zero(5, 4), 8);
               });
  EXPECT_EQ(runCli("inspect " + q(tmp / "a")).status, 0);
  ASSERT_EQ(runCli("resize --energy 0.9 " + q(tmp / "a") + " " + q(tmp / "o")).status, 0);
  const auto out = PeftAdapterFile::open(tmp / "o");
  for (const auto& m : out.modules()) {
    EXPECT_EQ(m.rank, 1);
    EXPECT_TRUE(out.B<float>(m).isZero());
    EXPECT_NEAR(out.A<float>(m).norm(), 1.0, 1e-6);  // a unit row keeps the layer trainable
  }
  const CliResult exact = runCli("recommend --json --budget 6 " + q(tmp / "a"));
  ASSERT_EQ(exact.status, 0) << exact.err;
  EXPECT_EQ(Json::parse(exact.out)["total_rank"], 6);
  const CliResult article = runCli("recommend --rule article --budget 6 " + q(tmp / "a"));
  expectOneErrorLine(article);
  EXPECT_NE(article.err.find("positive total importance"), std::string::npos) << article.err;
}

}  // namespace
