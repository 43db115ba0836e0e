// Bad adapter input to the `lora` subcommands: each case is exactly one readable line on stderr
// ("lora: error: ..."), exit code 1, nothing on stdout, and no output file or folder left behind.
// The adapters are small synthetic ones written here. Flags, outputs and usage: test_cli_usage.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lora/io/adapter_config.hpp"
#include "lora/io/peft_writer.hpp"
#include "lora/io/safetensors.hpp"
#include "support/cli.hpp"
#include "support/cli_synthetic.hpp"
#include "support/matrices.hpp"

namespace {

using namespace lora::test::cli_synthetic;
using lora::test::CliResult;
using lora::test::runCli;
using lora::test::ScratchDir;

TEST(CliErrors, TheGoodAdapterWorks) {
  ScratchDir tmp("good");
  writeGoodAdapter(tmp / "a");
  writeBase(tmp / "base.safetensors");
  EXPECT_EQ(runCli("inspect " + q(tmp / "a")).status, 0);
  EXPECT_EQ(runCli("resize --rank 2 " + q(tmp / "a") + " " + q(tmp / "o")).status, 0);
  EXPECT_EQ(runCli("merge --base " + q(tmp / "base.safetensors") + " --adapter " + q(tmp / "a") +
                   " --out " + q(tmp / "m.safetensors"))
                .status,
            0);
  EXPECT_EQ(runCli("recommend --budget 5 " + q(tmp / "a")).status, 0);
}

TEST(CliErrors, MissingFolderOrFiles) {
  ScratchDir tmp("missing");
  expectAllRefuse(tmp, tmp / "nowhere", "no such");
  fs::create_directories(tmp / "no_config");
  writeGoodAdapter(tmp / "good");
  fs::copy(tmp / "good" / "adapter_model.safetensors", tmp / "no_config");
  expectAllRefuse(tmp, tmp / "no_config", "adapter_config.json");
  fs::create_directories(tmp / "no_tensors");
  fs::copy(tmp / "good" / "adapter_config.json", tmp / "no_tensors");
  expectAllRefuse(tmp, tmp / "no_tensors", "adapter_model.safetensors");
  writeText(tmp / "a_file", "x");
  expectError("recommend --budget 5 " + q(tmp / "a_file"), "`lora inspect` and `lora resize`");
  // inspect and resize read a file that is not GGUF as a kohya LoRA (a safetensors file).
  expectError("inspect " + q(tmp / "a_file"), "expected at least 8 bytes");
  expectError("merge --base " + q(tmp / "none.safetensors") + " --adapter " + q(tmp / "good") +
                  " --out " + q(tmp / "m.safetensors"),
              "none.safetensors", tmp / "m.safetensors");
  expectError("convert-pissa --initial " + q(tmp / "none") + " --trained " + q(tmp / "good") +
                  " --out " + q(tmp / "c"),
              "no such file", tmp / "c");
}

TEST(CliErrors, BadConfigs) {
  ScratchDir tmp("config");
  writeGoodAdapter(tmp / "good");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"peft_type": "LORA", "r": "4"})", "expected \"r\" to be a positive integer"},
      {R"({"peft_type": "LORA", "r": 4, "lora_alpha": "8"})", "expected \"lora_alpha\""},
      {R"({"peft_type": "LORA", "r": 4, "use_rslora": "yes"})", "expected \"use_rslora\""},
      {R"({"peft_type": "LORA", "r": 4, "rank_pattern": [1]})", "expected \"rank_pattern\""},
      {R"({"peft_type": "IA3", "r": 4})", "expected \"peft_type\" to be \"LORA\""},
      {R"({"peft_type": "LORA", "r": 4, )", "expected valid JSON"},
      {R"([4])", "expected a JSON object"},
      {R"({"peft_type": "LORA", "r": 8, "lora_alpha": 8})", "expected rank 8"},
  };
  int i = 0;
  for (const auto& [config, word] : cases) {
    std::string name = "config_";
    name += std::to_string(i++);  // (not "c" + to_string: GCC 12 warns falsely, -Wrestrict)
    const fs::path dir = tmp / name;
    fs::create_directories(dir);
    fs::copy(tmp / "good" / "adapter_model.safetensors", dir);
    writeText(dir / "adapter_config.json", config);
    expectAllRefuse(tmp, dir, word);
  }
}

TEST(CliErrors, BadModules) {
  ScratchDir tmp("modules");
  // A without B.
  expectAllRefuse(
      tmp,
      adapterWithTensors(tmp, "a_only",
                         "{" + entry("layers.0.q.lora_A.weight", "F32", "[4, 6]", 0, 96) + "}", 96),
      "got only lora_A");
  // A and B disagree on r.
  expectAllRefuse(
      tmp,
      adapterWithTensors(tmp, "r_mismatch",
                         "{" + entry("layers.0.q.lora_A.weight", "F32", "[4, 6]", 0, 96) + ", " +
                             entry("layers.0.q.lora_B.weight", "F32", "[8, 3]", 96, 192) + "}",
                         192),
      "with the same r");
  // A DoRA magnitude without use_dora, and a tensor of another kind.
  expectAllRefuse(tmp,
                  adapterWithTensors(
                      tmp, "magnitude",
                      "{" + entry("layers.0.q.lora_A.weight", "F32", "[4, 6]", 0, 96) + ", " +
                          entry("layers.0.q.lora_B.weight", "F32", "[8, 4]", 96, 224) + ", " +
                          entry("layers.0.q.lora_magnitude_vector", "F32", "[8]", 224, 256) + "}",
                      256),
                  "without use_dora");
  expectAllRefuse(
      tmp,
      adapterWithTensors(tmp, "embedding",
                         "{" + entry("embed.lora_embedding_A", "F32", "[4, 6]", 0, 96) + "}", 96),
      "not supported");
  // Integer factors.
  expectAllRefuse(
      tmp,
      adapterWithTensors(tmp, "ints",
                         "{" + entry("layers.0.q.lora_A.weight", "I32", "[4, 6]", 0, 96) + ", " +
                             entry("layers.0.q.lora_B.weight", "I32", "[8, 4]", 96, 224) + "}",
                         224),
      "got I32");
  // Non-finite factors are refused by the computations.
  lora::PeftAdapterWriter w(lora::AdapterConfig::parse(kConfig, "t"));
  w.add("layers.0.q", lora::test::gaussian<float>(4, 6, 1), lora::test::gaussian<float>(8, 4, 2),
        8);
  w.write(tmp / "nan");
  {
    // Overwrite one value of A with a NaN (F32 0x7fc00000) in the data buffer.
    std::fstream f(tmp / "nan" / "adapter_model.safetensors",
                   std::ios::in | std::ios::out | std::ios::binary);
    std::uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    f.seekp(static_cast<std::streamoff>(8 + n));
    const std::uint32_t nan = 0x7fc00000u;
    f.write(reinterpret_cast<const char*>(&nan), 4);
  }
  expectError("inspect " + q(tmp / "nan"), "NaN");
  expectError("resize --rank 2 " + q(tmp / "nan") + " " + q(tmp / "o"), "NaN", tmp / "o");
}

TEST(CliErrors, MalformedSafetensors) {
  ScratchDir tmp("safetensors");
  const std::string a = entry("layers.0.q.lora_A.weight", "F32", "[4, 6]", 0, 96);
  const std::string b = entry("layers.0.q.lora_B.weight", "F32", "[8, 4]", 96, 224);
  const std::string good = "{" + a + ", " + b + "}";
  // Truncated: the data stop short of the offsets.
  expectAllRefuse(tmp, adapterWithTensors(tmp, "truncated", good, 200), "expected");
  // A file shorter than the 8-byte length.
  {
    const fs::path dir = tmp / "tiny";
    fs::create_directories(dir);
    writeText(dir / "adapter_config.json", kConfig);
    writeText(dir / "adapter_model.safetensors", "abc");
    expectAllRefuse(tmp, dir, "at least 8 bytes");
  }
  // Header length past the end of the file.
  expectAllRefuse(tmp, adapterWithTensors(tmp, "length", good, 224, 1u << 20), "header length");
  // Overlapping and out-of-range offsets.
  expectAllRefuse(
      tmp,
      adapterWithTensors(
          tmp, "overlap",
          "{" + a + ", " + entry("layers.0.q.lora_B.weight", "F32", "[8, 4]", 64, 192) + "}", 192),
      "overlaps");
  expectAllRefuse(
      tmp,
      adapterWithTensors(
          tmp, "range",
          "{" + a + ", " + entry("layers.0.q.lora_B.weight", "F32", "[8, 4]", 96, 4096) + "}", 224),
      "expected");
  // Unknown dtype; shape byte size against offsets; invalid JSON header.
  expectAllRefuse(
      tmp,
      adapterWithTensors(
          tmp, "dtype",
          "{" + entry("layers.0.q.lora_A.weight", "F31", "[4, 6]", 0, 96) + ", " + b + "}", 224),
      "F31");
  expectAllRefuse(
      tmp,
      adapterWithTensors(
          tmp, "shape",
          "{" + entry("layers.0.q.lora_A.weight", "F32", "[4, 5]", 0, 96) + ", " + b + "}", 224),
      "expected");
  expectAllRefuse(tmp, adapterWithTensors(tmp, "json", "{\"base_model.model.x\": ", 0), "JSON");
  // The base model file of merge is checked the same way.
  writeGoodAdapter(tmp / "good");
  writeSafetensors(tmp / "bad_base.safetensors", "{not json}", 0);
  expectError("merge --base " + q(tmp / "bad_base.safetensors") + " --adapter " + q(tmp / "good") +
                  " --out " + q(tmp / "m.safetensors"),
              "JSON", tmp / "m.safetensors");
}

}  // namespace
