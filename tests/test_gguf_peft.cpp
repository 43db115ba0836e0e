// PEFT fixtures through GGUF: what llama.cpp computes from the file (alpha / r · B A, with B's
// q/k rows un-permuted) equals PEFT's s · B · A for every module and every variant, and
// PEFT -> GGUF -> PEFT gives the same delta (bit-exact for F32 plain LoRA).
#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "lora/io/gguf.hpp"
#include "lora/io/gguf_adapter.hpp"
#include "lora/io/peft_file.hpp"
#include "support/cli.hpp"
#include "support/errors.hpp"
#include "support/fixtures.hpp"
#include "support/gguf.hpp"

namespace {

namespace fs = std::filesystem;
using lora::GgmlType;

// "layers.0.self_attn.q_proj" -> "blk.0.attn_q.weight" (the fixtures are bare models).
std::string ggufWeight(const std::string& module, const lora::GgufArchitecture& arch) {
  const auto afterLayers = module.find("layers.") + 7;
  const auto dot = module.find('.', afterLayers);
  const std::string layer = module.substr(afterLayers, dot - afterLayers);
  const std::string suffix = module.substr(dot + 1);
  for (const auto& r : arch.modules)
    if (r.hf == suffix) return "blk." + layer + "." + std::string(r.gguf) + ".weight";
  return "";
}

struct Case {
  std::string variant;
  GgmlType type;
};

class GgufFixtures : public ::testing::TestWithParam<Case> {};

TEST_P(GgufFixtures, LlamaCppDeltaEqualsPeftsAndRoundTrips) {
  const Case c = GetParam();
  const fs::path dir = lora::test::fixtureDir() / c.variant;
  if (!fs::exists(dir / "adapter_config.json")) GTEST_SKIP() << "no variant " << c.variant;
  const auto peft = lora::PeftAdapterFile::open(dir);
  const int heads = lora::test::llamaHeads(peft);
  const std::string archName = heads > 0 ? "llama" : "qwen2";
  const auto& arch = lora::ggufArchitecture(archName, "test");
  lora::test::ScratchDir scratch("gguf_fixture");
  lora::PeftToGgufOptions o;
  o.arch = archName;
  o.heads = {heads, heads};
  o.type = c.type;
  o.name = "fixture";
  o.skipUnknown = true;  // a set may adapt modules llama.cpp's table does not have
  const auto report = lora::convertPeftToGguf(peft, scratch / "a.gguf", o);
  EXPECT_EQ(report.modules + report.skipped.size(), peft.modules().size());
  ASSERT_GT(report.modules, 0u);
  const auto gguf = lora::GgufReader::open(scratch / "a.gguf");
  const auto& alphaValue = gguf.value("adapter.lora.alpha");
  ASSERT_EQ(alphaValue.type(), lora::GgufType::Float32);
  const double alpha = alphaValue.asFloat("test", "alpha");
  EXPECT_EQ(alpha, report.alpha);
  EXPECT_EQ(gguf.value("general.architecture").asString("t", "a"), archName);
  EXPECT_EQ(gguf.value("general.type").asString("t", "t"), "adapter");
  EXPECT_EQ(gguf.value("adapter.type").asString("t", "t"), "lora");
  EXPECT_EQ(gguf.metadata().size(), 6u);
  EXPECT_EQ(gguf.tensors().size(), 2 * report.modules);

  // The tolerance of the file's dtype, relative to the delta's norm.
  const double tol = c.type == GgmlType::F32    ? 1e-6
                     : c.type == GgmlType::F16  ? 2e-3
                     : c.type == GgmlType::BF16 ? 1.5e-2
                                                : 2e-2;
  for (const auto& m : peft.modules()) {
    SCOPED_TRACE(m.name);
    const Eigen::MatrixXd A = peft.A<double>(m), B = peft.B<double>(m);
    const Eigen::MatrixXd delta = peft.scaling(m) * B * A;
    const std::string w = ggufWeight(m.name, arch);
    if (w.empty()) continue;
    const Eigen::MatrixXf ga = gguf.matrix(w + ".lora_a");
    Eigen::MatrixXf gb = gguf.matrix(w + ".lora_b");
    ASSERT_EQ(ga.rows(), m.rank);
    ASSERT_EQ(ga.cols(), m.in);
    ASSERT_EQ(gb.rows(), m.out);
    if (archName == "llama" && (m.name.ends_with("q_proj") || m.name.ends_with("k_proj")))
      gb = lora::permuteHeads(gb, heads, true, "test");
    // llama.cpp: scale = alpha / rank, rank = lora_b's ne[0].
    const Eigen::MatrixXd llama =
        (alpha / static_cast<double>(gb.cols())) * gb.cast<double>() * ga.cast<double>();
    EXPECT_LE((llama - delta).norm(), tol * delta.norm() + 1e-12);
  }

  // And back: the same delta for every module.
  lora::GgufToPeftOptions back;
  back.heads = {heads, heads};
  back.modulePrefix = "";
  lora::convertGgufToPeft(gguf, scratch / "back", back);
  const auto again = lora::PeftAdapterFile::open(scratch / "back");
  ASSERT_EQ(again.modules().size(), report.modules);
  std::map<std::string, const lora::PeftAdapterFile::Module*> byName;
  for (const auto& m : again.modules()) byName[m.name] = &m;
  const bool plain = !peft.config().useRslora && peft.config().alphaPattern.empty();
  for (const auto& m : peft.modules()) {
    SCOPED_TRACE(m.name);
    if (ggufWeight(m.name, arch).empty()) continue;
    ASSERT_EQ(byName.count(m.name), 1u);
    const auto& n = *byName[m.name];
    const Eigen::MatrixXd delta = peft.scaling(m) * peft.B<double>(m) * peft.A<double>(m);
    const Eigen::MatrixXd round = again.scaling(n) * again.B<double>(n) * again.A<double>(n);
    EXPECT_LE((round - delta).norm(), tol * delta.norm() + 1e-12);
    if (c.type == GgmlType::F32 && plain) {  // bit-exact
      EXPECT_EQ(again.A<float>(n), peft.A<float>(m));
      EXPECT_EQ(again.B<float>(n), peft.B<float>(m));
      EXPECT_EQ(n.alpha, m.alpha);
      EXPECT_EQ(n.rank, m.rank);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, GgufFixtures,
    ::testing::Values(Case{"default", GgmlType::F32}, Case{"default", GgmlType::F16},
                      Case{"default", GgmlType::BF16}, Case{"default", GgmlType::Q8_0},
                      Case{"default_trained", GgmlType::F32}, Case{"gaussian", GgmlType::F32},
                      Case{"rslora_patterns", GgmlType::F32},
                      Case{"rslora_patterns", GgmlType::Q8_0}),
    [](const auto& info) {
      return info.param.variant + "_" + std::string(lora::ggmlTypeName(info.param.type));
    });

TEST(GgufFixtureErrors, DoraUnknownModulesAndMissingHeadsAreRefused) {
  lora::test::ScratchDir scratch("gguf_refused");
  const fs::path fixtures = lora::test::fixtureDir();
  lora::PeftToGgufOptions o;
  o.arch = "qwen2";
  const auto dora = lora::PeftAdapterFile::open(fixtures / "dora");
  EXPECT_CONTAINS(
      lora::test::errorOf([&] { lora::convertPeftToGguf(dora, scratch / "d.gguf", o); }), "DoRA");
  const auto peft = lora::PeftAdapterFile::open(fixtures / "default");
  o.arch = "llama";  // q_proj needs head counts
  bool hasQ = false;
  for (const auto& m : peft.modules()) hasQ |= m.name.ends_with("q_proj");
  if (hasQ) {
    EXPECT_CONTAINS(
        lora::test::errorOf([&] { lora::convertPeftToGguf(peft, scratch / "q.gguf", o); }),
        "head counts");
  }
  o.arch = "mistral";
  EXPECT_CONTAINS(
      lora::test::errorOf([&] { lora::convertPeftToGguf(peft, scratch / "m.gguf", o); }),
      "known architecture");
  EXPECT_TRUE(fs::is_empty(scratch.path()));  // nothing written by a refused conversion
}

}  // namespace
