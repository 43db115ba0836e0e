// `lora convert` as a user runs it: PEFT -> GGUF -> PEFT on the fixtures (the same factors back
// for F32), the input's format read from its content, and every refusal one line with status 1
// that leaves nothing behind.
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/io/gguf.hpp"
#include "lora/io/peft_file.hpp"
#include "support/cli.hpp"
#include "support/cli_fixtures.hpp"
#include "support/fixtures.hpp"

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

}  // namespace
