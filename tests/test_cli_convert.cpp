// `lora convert` as a user runs it: PEFT -> GGUF -> PEFT on the fixtures (the same factors back
// for F32), the input's format read from its content, and every refusal one line with status 1
// that leaves nothing behind.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/io/gguf.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "support/cli.hpp"
#include "support/cli_fixtures.hpp"
#include "support/fixtures.hpp"
#include "support/gguf.hpp"

namespace {

namespace fs = std::filesystem;
using namespace lora::test::cli_fixtures;
using lora::test::CliResult;
using lora::test::runCli;
using lora::test::ScratchDir;

TEST(CliConvert, PeftToGgufAndBackKeepsTheFactors) {
  ScratchDir s("cli_convert");
  const fs::path in = lora::test::fixtureDir() / "default";
  // qwen2: no permutation, so no head counts are needed whatever the fixture's shapes.
  CliResult r = runCli("convert " + q(in) + " " + q(s / "a.gguf") +
                       " --arch qwen2 --dtype f32 --json --skip-unknown");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["to"], "gguf");
  EXPECT_EQ(j["type"], "F32");
  const auto gguf = lora::GgufReader::open(s / "a.gguf");
  EXPECT_EQ(gguf.value("general.name").asString("t", "n"), "Default");  // from the folder's name
  // The input is recognized by its content: a GGUF under another name, a folder named .gguf.
  fs::copy_file(s / "a.gguf", s / "adapter.bin");
  r = runCli("convert " + q(s / "adapter.bin") + " " + q(s / "back.gguf") + " --module-prefix ''");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto before = lora::PeftAdapterFile::open(in);
  const auto after = lora::PeftAdapterFile::open(s / "back.gguf");
  const std::size_t converted = static_cast<std::size_t>(j["modules"].get<int>());
  ASSERT_EQ(after.modules().size(), converted);
  for (const auto& m : after.modules()) {
    SCOPED_TRACE(m.name);
    const auto* original = [&]() -> const lora::PeftAdapterFile::Module* {
      for (const auto& o : before.modules())
        if (o.name == m.name) return &o;
      return nullptr;
    }();
    ASSERT_NE(original, nullptr);
    EXPECT_EQ(after.A<float>(m), before.A<float>(*original));
    EXPECT_EQ(after.B<float>(m), before.B<float>(*original));
    EXPECT_EQ(after.scaling(m), before.scaling(*original));
  }
}

TEST(CliConvert, RefusalsAreOneLineAndWriteNothing) {
  ScratchDir s("cli_convert_refused");
  const fs::path fixtures = lora::test::fixtureDir();
  const fs::path in = fixtures / "default";
  // No architecture; an unknown one; DoRA; an adapter for a residual base (PiSSA).
  expectOneErrorLine(runCli("convert " + q(in) + " " + q(s / "x.gguf")));
  expectOneErrorLine(runCli("convert " + q(in) + " " + q(s / "x.gguf") + " --arch gpt2"));
  expectOneErrorLine(runCli("convert " + q(fixtures / "dora") + " " + q(s / "x.gguf") +
                            " --arch qwen2 --skip-unknown"));
  if (fs::exists(fixtures / "pissa"))
    expectOneErrorLine(runCli("convert " + q(fixtures / "pissa") + " " + q(s / "x.gguf") +
                              " --arch qwen2 --skip-unknown"));
  // Never over an input, not over an existing file without --force, not the same format.
  expectOneErrorLine(runCli("convert " + q(in) + " " + q(in / "adapter_model.safetensors") +
                            " --arch qwen2 --skip-unknown --force"));
  expectOneErrorLine(runCli("convert " + q(in) + " " + q(s / "x.gguf") + " --to peft"));
  expectOneErrorLine(runCli("convert " + q(s / "missing") + " " + q(s / "x.gguf")));
  expectOneErrorLine(runCli("convert " + q(in / "adapter_config.json") + " " + q(s / "x.gguf")));
  expectOneErrorLine(runCli("convert " + q(in) + " " + q(s / "x.gguf") +
                            " --arch qwen2 --skip-unknown --dtype q4_0"));
  EXPECT_TRUE(fs::is_empty(s.path()));
  ASSERT_EQ(
      runCli("convert " + q(in) + " " + q(s / "x.gguf") + " --arch qwen2 --skip-unknown").status,
      0);
  expectOneErrorLine(
      runCli("convert " + q(in) + " " + q(s / "x.gguf") + " --arch qwen2 --skip-unknown"));
  EXPECT_EQ(runCli("convert " + q(in) + " " + q(s / "x.gguf") + " --arch qwen2 --skip-unknown " +
                   "--force")
                .status,
            0);
  // A truncated GGUF is one line too.
  const std::string bytes = lora::test::readText(s / "x.gguf");
  {
    std::ofstream cut(s / "cut.gguf", std::ios::binary);
    cut.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  expectOneErrorLine(runCli("convert " + q(s / "cut.gguf") + " " + q(s / "out")));
  EXPECT_FALSE(fs::exists(s / "out"));
}

TEST(CliConvert, InspectResizeAndMergeReadGguf) {
  ScratchDir s("cli_gguf_commands");
  const fs::path fixtures = lora::test::fixtureDir();
  const fs::path in = fixtures / "default_trained";
  const auto peft = lora::PeftAdapterFile::open(in);
  const int heads = lora::test::llamaHeads(peft);
  const std::string arch = heads > 0 ? " --arch llama --n-head " + std::to_string(heads) +
                                           " --n-head-kv " + std::to_string(heads)
                                     : " --arch qwen2";
  ASSERT_EQ(runCli("convert " + q(in) + " " + q(s / "a.gguf") + arch + " --dtype f32").status, 0);

  // inspect: the same modules and spectra as the PEFT folder (names with the CausalLM prefix).
  CliResult r = runCli("inspect --json " + q(s / "a.gguf"));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto g = nlohmann::json::parse(r.out);
  r = runCli("inspect --json " + q(in));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto p = nlohmann::json::parse(r.out);
  EXPECT_EQ(g["format"], "gguf");
  ASSERT_EQ(g["modules"].size(), p["modules"].size());
  std::map<std::string, nlohmann::json> byName;
  for (const auto& m : p["modules"]) byName["model." + m["name"].get<std::string>()] = m;
  for (const auto& m : g["modules"]) {
    const auto& o = byName.at(m["name"].get<std::string>());
    EXPECT_EQ(m["rank"], o["rank"]);
    EXPECT_NEAR(m["sigma1"].get<double>(), o["sigma1"].get<double>(),
                1e-6 * o["sigma1"].get<double>());
    EXPECT_NEAR(m["scaling"].get<double>(), o["scaling"].get<double>(), 1e-6);
  }

  // resize: a GGUF out, the file's alpha kept, each delta the rank-k truncation of the original.
  r = runCli("resize " + q(s / "a.gguf") + " " + q(s / "r.gguf") + " --rank 3 --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto resized = lora::PeftAdapterFile::openGguf(s / "r.gguf", {heads, heads}, "");
  EXPECT_EQ(resized.gguf()->value("adapter.lora.alpha").asFloat("t", "alpha"),
            lora::GgufReader::open(s / "a.gguf").value("adapter.lora.alpha").asFloat("t", "a"));
  ASSERT_EQ(resized.modules().size(), peft.modules().size());
  for (const auto& m : resized.modules()) {
    SCOPED_TRACE(m.name);
    const lora::PeftAdapterFile::Module* o = nullptr;
    for (const auto& x : peft.modules())
      if (x.name == m.name) o = &x;
    ASSERT_NE(o, nullptr);
    const Eigen::MatrixXd delta = denseDelta(peft, *o);
    const auto svd = lora::linalg::denseSVD(delta, Eigen::ComputeThinU | Eigen::ComputeThinV);
    const Eigen::Index k = std::min<Eigen::Index>(3, o->rank);
    EXPECT_EQ(m.rank, k);
    const Eigen::MatrixXd best =
        svd.U.leftCols(k) * svd.S.head(k).asDiagonal() * svd.V.leftCols(k).transpose();
    EXPECT_LE((denseDelta(resized, m) - best).norm(), 1e-5 * delta.norm() + 1e-12);
  }
  // Resizing to the same type and rank keeps every byte.
  r = runCli("resize " + q(s / "a.gguf") + " " + q(s / "same.gguf") + " --rank 1000 --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(lora::test::readText(s / "same.gguf"), lora::test::readText(s / "a.gguf"));
  // Never over the input.
  expectOneErrorLine(
      runCli("resize " + q(s / "a.gguf") + " " + q(s / "a.gguf") + " --rank 2 --force"));

  // merge: the same merged weights as from the PEFT folder.
  ASSERT_EQ(runCli("merge --base " + q(baseModel()) + " --adapter " + q(in) + " --out " +
                   q(s / "peft.safetensors"))
                .status,
            0);
  const std::string headArgs =
      heads > 0 ? " --n-head " + std::to_string(heads) + " --n-head-kv " + std::to_string(heads)
                : "";
  if (heads > 0)  // llama's q/k rows cannot be un-permuted without the head counts
    expectOneErrorLine(runCli("merge --base " + q(baseModel()) + " --adapter " + q(s / "a.gguf") +
                              " --out " + q(s / "x.safetensors")));
  r = runCli("merge --base " + q(baseModel()) + " --adapter " + q(s / "a.gguf") + " --out " +
             q(s / "gguf.safetensors") + headArgs);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_LE(maxRelativeDifference(s / "gguf.safetensors", s / "peft.safetensors"), 1e-6);
}

}  // namespace
