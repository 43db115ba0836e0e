// `lora inspect` and `lora resize` on kohya-format Stable Diffusion LoRA files, as a user runs
// them: every module's new rank, alpha, dtype and delta against a dense SVD of the delta with
// kohya's rules, the file's keys and metadata as resize_lora.py writes them, and every refusal one
// line with status 1 that leaves nothing behind.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <Eigen/SVD>

#include "lora/io/kohya.hpp"
#include "lora/io/kohya_resize.hpp"
#include "lora/io/safetensors.hpp"
#include "support/cli.hpp"
#include "support/cli_synthetic.hpp"
#include "support/kohya.hpp"

namespace {

namespace fs = std::filesystem;
using Eigen::Index;
using lora::DType;
using lora::KohyaRule;
using lora::test::CliResult;
using lora::test::KohyaSpec;
using lora::test::runCli;
using lora::test::ScratchDir;
using lora::test::cli_synthetic::expectError;
using lora::test::cli_synthetic::q;

// SDXL-named modules plus an all-zero one and one without alpha.
std::vector<KohyaSpec> specs() {
  auto s = lora::test::sdxlSpecs();
  KohyaSpec zero{"lora_unet_output_blocks_0_1_proj_out", 24, 24, 4, 0, 0, 4.0f};
  zero.upScale = 0;
  s.push_back(zero);
  KohyaSpec noAlpha{"lora_te1_text_model_encoder_layers_1_self_attn_v_proj", 32, 48, 6};
  noAlpha.alpha.reset();
  s.push_back(noAlpha);
  KohyaSpec lowRank{"lora_te2_text_model_encoder_layers_3_mlp_fc2", 40, 64, 8};
  lowRank.live = 3;  // three directions, five of σ = 0
  s.push_back(lowRank);
  return s;
}

struct Case {
  std::string flags;
  lora::KohyaResizeOptions options;
};

// Checks OUT against kohya's rules applied to a dense SVD of each module's delta in IN.
void expectResizedAsKohya(const fs::path& in, const fs::path& out,
                          const lora::KohyaResizeOptions& o, DType outType, double tolerance) {
  const auto a = lora::SafeTensorsReader::open(in);
  const auto b = lora::SafeTensorsReader::open(out);
  const auto layout = lora::readKohyaLayout(a);
  const auto resized = lora::readKohyaLayout(b);
  ASSERT_EQ(resized.modules.size(), layout.modules.size());
  // The same keys, plus an alpha for every module.
  std::vector<std::string> expected = a.names();
  for (const auto& m : layout.modules)
    if (m.keyAlpha.empty()) expected.push_back(m.name + ".alpha");
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(b.names(), expected);  // sorted, as safetensors writes them
  for (std::size_t i = 0; i < layout.modules.size(); ++i) {
    const lora::KohyaModule& m = layout.modules[i];
    const lora::KohyaModule& r = resized.modules[i];
    SCOPED_TRACE(m.name);
    ASSERT_EQ(r.name, m.name);
    // kohya's script reads float32 and forms the delta: here in double from those values.
    const Eigen::MatrixXd delta = a.flattenedMatrix<float>(m.keyUp).cast<double>() *
                                  a.flattenedMatrix<float>(m.keyDown).cast<double>();
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(delta, Eigen::ComputeThinU | Eigen::ComputeThinV);
    const Index n = std::min(m.out, m.columns());
    const Index k = lora::kohyaNewRank(svd.singularValues(), n, o.rule, o.parameter, o.rankFor(m));
    EXPECT_EQ(r.rank, k);
    EXPECT_EQ(r.kernelH, m.kernelH);
    EXPECT_EQ(r.kernelW, m.kernelW);
    ASSERT_TRUE(r.alpha.has_value());
    const double alpha = lora::kohyaNewAlpha(m.alpha, m.rank, k);
    EXPECT_EQ(*r.alpha,
              static_cast<double>(static_cast<float>(outType == DType::F32 ? alpha : *r.alpha)));
    EXPECT_NEAR(*r.alpha, alpha, 1e-2 * alpha);
    for (const auto* key : {&r.keyDown, &r.keyUp, &r.keyAlpha})
      EXPECT_EQ(b.info(*key).dtype, outType);
    EXPECT_TRUE(b.info(r.keyAlpha).shape.empty());
    // The delta kohya's file applies: up·down·alpha/k, against the truncated dense SVD.
    const Eigen::MatrixXd up = b.flattenedMatrix<double>(r.keyUp);
    const Eigen::MatrixXd down = b.flattenedMatrix<double>(r.keyDown);
    const Index kept = std::min<Index>(k, svd.singularValues().size());
    const Eigen::MatrixXd truncated = svd.matrixU().leftCols(kept) *
                                      svd.singularValues().head(kept).asDiagonal() *
                                      svd.matrixV().leftCols(kept).transpose();
    const double scaleIn = m.scale(), scaleOut = *r.alpha / static_cast<double>(k);
    EXPECT_LE((scaleOut * up * down - scaleIn * truncated).norm(),
              tolerance * std::max(1e-30, scaleIn * delta.norm()));
  }
}

TEST(CliKohya, ResizeGivesEveryModuleKohyasRankAlphaAndDelta) {
  ScratchDir tmp("cli_kohya_resize");
  const fs::path in = tmp / "in.safetensors";
  lora::test::writeKohyaFile(in, specs(), 21, DType::F32);
  std::vector<Case> cases;
  const auto add = [&](std::string flags, KohyaRule rule, double t, Index rank, Index conv) {
    lora::KohyaResizeOptions o;
    o.rule = rule;
    o.parameter = t;
    o.rank = rank;
    o.convRank = conv;
    cases.push_back({std::move(flags), o});
  };
  add("--rank 6", KohyaRule::Fixed, 0, 6, 0);  // above some old ranks (4)
  add("--rank 5 --conv-rank 2", KohyaRule::Fixed, 0, 5, 2);
  add("--sv-ratio 4", KohyaRule::SvRatio, 4, 4, 0);  // kohya's default cap of 4
  add("--sv-ratio 1000 --max-rank 16", KohyaRule::SvRatio, 1000, 16, 0);
  add("--sv-cumulative 0.8 --max-rank 16 --conv-rank 3", KohyaRule::SvCumulative, 0.8, 16, 3);
  add("--sv-fro 0.9 --max-rank 16", KohyaRule::SvFro, 0.9, 16, 0);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.flags);
    const fs::path out = tmp / "out.safetensors";
    const CliResult r = runCli("resize " + q(in) + " " + q(out) + " " + c.flags + " --force");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("kohya rules (resize_lora.py)"), std::string::npos) << r.out;
    expectResizedAsKohya(in, out, c.options, DType::F32, 1e-5);
  }
  // The bytes do not depend on the thread count.
  ASSERT_EQ(runCli("resize " + q(in) + " " + q(tmp / "t1.safetensors") +
                   " --sv-fro 0.9 --max-rank 16 --threads 1 --quiet")
                .status,
            0);
  ASSERT_EQ(runCli("resize " + q(in) + " " + q(tmp / "t2.safetensors") +
                   " --sv-fro 0.9 --max-rank 16 --threads 2 --quiet")
                .status,
            0);
  EXPECT_EQ(lora::test::readText(tmp / "t1.safetensors"),
            lora::test::readText(tmp / "t2.safetensors"));
}

TEST(CliKohya, OutputDtypesAndFp16Input) {
  ScratchDir tmp("cli_kohya_dtype");
  const fs::path in = tmp / "in.safetensors";
  lora::test::writeKohyaFile(in, lora::test::sdxlSpecs(), 5, DType::F16);
  lora::KohyaResizeOptions o;
  o.rule = KohyaRule::SvFro;
  o.parameter = 0.95;
  o.rank = 8;
  for (const auto& [flag, type, tol] :
       {std::tuple{"", DType::F32, 1e-5}, std::tuple{"--dtype f16", DType::F16, 5e-3},
        std::tuple{"--dtype bf16", DType::BF16, 3e-2}}) {
    SCOPED_TRACE(flag);
    const fs::path out = tmp / "out.safetensors";
    const CliResult r = runCli("resize " + q(in) + " " + q(out) + " --sv-fro 0.95 --max-rank 8 " +
                               flag + " --force --quiet");
    ASSERT_EQ(r.status, 0) << r.err;
    expectResizedAsKohya(in, out, o, type, tol);
  }
}

TEST(CliKohya, MetadataIsUpdatedAndTheHashesRecomputed) {
  ScratchDir tmp("cli_kohya_meta");
  const fs::path in = tmp / "in.safetensors";
  lora::test::writeKohyaFile(in, lora::test::sdxlSpecs(), 8, DType::F32,
                             {{"ss_training_comment", "trained on cats"},
                              {"ss_network_dim", "8"},
                              {"ss_network_alpha", "4.0"},
                              {"sshs_model_hash", "stale"},
                              {"modelspec.title", "Cats"}});
  const fs::path out = tmp / "out.safetensors";
  CliResult r = runCli("resize " + q(in) + " " + q(out) + " --rank 4 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto st = lora::SafeTensorsReader::open(out);
  const auto& meta = st.metadata();
  EXPECT_EQ(meta.at("ss_training_comment"), "dimension is resized from 8 to 4; trained on cats");
  EXPECT_EQ(meta.at("ss_network_dim"), "4");
  // The alpha of the last module in key order (…_attn2_to_k: rank 8, alpha 1, so 1/8·4).
  EXPECT_EQ(meta.at("ss_network_alpha"), "0.5");
  EXPECT_EQ(meta.at("modelspec.title"), "Cats");
  lora::SafeTensorsWriter again;
  for (const std::string& n : st.names())
    again.addRaw(n, st.info(n).dtype, st.info(n).shape, st.rawBytes(n));
  const auto h = lora::kohyaHashes(again, meta);
  EXPECT_EQ(meta.at("sshs_model_hash"), h.model);
  EXPECT_EQ(meta.at("sshs_legacy_hash"), h.legacy);
  EXPECT_EQ(j["metadata"]["sshs_model_hash"], h.model);
  EXPECT_EQ(j["format"], "kohya");
  EXPECT_EQ(j["modules"].size(), 5u);

  r = runCli("resize " + q(in) + " " + q(tmp / "dyn.safetensors") + " --sv-ratio 2 --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto dyn = lora::SafeTensorsReader::open(tmp / "dyn.safetensors").metadata();
  EXPECT_EQ(dyn.at("ss_training_comment"),
            "Dynamic resize with sv_ratio: 2.0 from 8; trained on cats");
  EXPECT_EQ(dyn.at("ss_network_dim"), "Dynamic");
  EXPECT_EQ(dyn.at("ss_network_alpha"), "Dynamic");
}

TEST(CliKohya, InspectShowsKindsKernelsAndSpectra) {
  ScratchDir tmp("cli_kohya_inspect");
  const fs::path in = tmp / "in.safetensors";
  lora::test::writeKohyaFile(in, lora::test::sdxlSpecs(), 4, DType::BF16);
  CliResult r = runCli("inspect " + q(in));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("(kohya LoRA): 5 modules, BF16 factors"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("conv 3x3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("20·3·3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("linear"), std::string::npos) << r.out;
  // --plot as for PEFT folders (the data as CSV where gnuplot is missing).
  r = runCli("inspect " + q(in) + " --quiet --plot " + q(tmp / "spectra.svg"));
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string chart = fs::exists(tmp / "spectra.svg")
                                ? lora::test::readText(tmp / "spectra.svg")
                                : lora::test::readText(tmp / "spectra.svg.csv");
  EXPECT_NE(chart.find("lora_unet_input_blocks_4_0_in_layers_2"), std::string::npos);
  r = runCli("inspect " + q(in) + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["format"], "kohya");
  const auto st = lora::SafeTensorsReader::open(in);
  const auto layout = lora::readKohyaLayout(st);
  ASSERT_EQ(j["modules"].size(), layout.modules.size());
  for (std::size_t i = 0; i < layout.modules.size(); ++i) {
    const auto& m = layout.modules[i];
    const auto& e = j["modules"][i];
    SCOPED_TRACE(m.name);
    EXPECT_EQ(e["name"], m.name);
    EXPECT_EQ(e["kind"], m.isConv() ? "conv" : "linear");
    EXPECT_EQ(e["in"], m.columns());
    if (m.isConv()) {
      EXPECT_EQ(e["kernel"], nlohmann::json::array({m.kernelH, m.kernelW}));
      EXPECT_EQ(e["channels_in"], m.in);
    }
    const Eigen::MatrixXd delta =
        st.flattenedMatrix<double>(m.keyUp) * st.flattenedMatrix<double>(m.keyDown);
    const double sigma1 = Eigen::JacobiSVD<Eigen::MatrixXd>(delta).singularValues()(0);
    EXPECT_NEAR(e["sigma1"].get<double>(), m.scale() * sigma1, 1e-9 * m.scale() * sigma1);
  }
}

TEST(CliKohya, RefusalsAreOneLineAndLeaveNothing) {
  ScratchDir tmp("cli_kohya_refuse");
  const fs::path in = tmp / "in.safetensors";
  lora::test::writeKohyaFile(in, lora::test::sdxlSpecs(), 2);
  const fs::path out = tmp / "out.safetensors";
  const std::string io = q(in) + " " + q(out);
  expectError("resize " + io + " --energy 0.9", "got --energy", out);
  expectError("resize " + io + " --knee", "got --knee", out);
  expectError("resize " + io + " --rank 4 --min-rank 2", "got --min-rank", out);
  expectError("resize " + io + " --rank 4 --max-rank 8", "--max-rank only with", out);
  expectError("resize " + io + " --rank 4 --conv-rank 0", "--conv-rank >= 1", out);
  expectError("resize " + io + " --rank 4 --dtype f64", "f32, f16 or bf16", out);
  expectError("resize " + io + " --sv-ratio 0.5", "finite number >= 1", out);
  // A fixed rank above min(out, in·kh·kw) (kohya's script crashes there).
  expectError("resize " + io + " --rank 41", "at most 40", out);
  expectError("resize " + q(in) + " " + q(in) + " --rank 2 --force", "input", std::nullopt);
  lora::SafeTensorsWriter bad;
  bad.addFlat("lora_unet_x.lora_up.weight", {4, 2}, Eigen::VectorXf::Ones(8));
  bad.write(tmp / "bad.safetensors");
  expectError("resize " + q(tmp / "bad.safetensors") + " " + q(out) + " --rank 2",
              "module 'lora_unet_x'", out);
  expectError("inspect " + q(tmp / "bad.safetensors"), "module 'lora_unet_x'");
  // The other subcommands read PEFT folders and GGUF files only.
  lora::test::cli_synthetic::writeBase(tmp / "base.safetensors");
  expectError("merge --base " + q(tmp / "base.safetensors") + " --adapter " + q(in) + " --out " +
                  q(tmp / "m.safetensors"),
              "`lora inspect` and `lora resize`", tmp / "m.safetensors");
  expectError("recommend --budget 8 " + q(in), "`lora inspect` and `lora resize`");
  expectError("convert " + q(in) + " " + q(tmp / "c.gguf"), "`lora inspect` and `lora resize`",
              tmp / "c.gguf");
  // --conv-rank is for kohya files only.
  lora::test::cli_synthetic::writeGoodAdapter(tmp / "peft");
  expectError("resize " + q(tmp / "peft") + " " + q(tmp / "p2") + " --rank 2 --conv-rank 2",
              "--conv-rank only for a kohya", tmp / "p2");
  EXPECT_TRUE(fs::exists(in));
}

}  // namespace
