// Bad flags, outputs and shapes for the `lora` subcommands: an adapter that does not fit the base,
// unwritable outputs, rank flags out of range (each one error line, exit 1, no output left) and
// usage errors (exit 2). The adapters are small synthetic ones written here.

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

TEST(CliUsage, AdapterThatDoesNotFitTheBase) {
  ScratchDir tmp("fit");
  writeGoodAdapter(tmp / "a");
  writeBase(tmp / "wide.safetensors", 7);
  expectError("merge --base " + q(tmp / "wide.safetensors") + " --adapter " + q(tmp / "a") +
                  " --out " + q(tmp / "m.safetensors"),
              "of shape [8, 6]", tmp / "m.safetensors");
  writeBase(tmp / "no_v.safetensors", 6, false);
  expectError("merge --base " + q(tmp / "no_v.safetensors") + " --adapter " + q(tmp / "a") +
                  " --out " + q(tmp / "m.safetensors"),
              "layers.0.v.weight", tmp / "m.safetensors");
  // An earlier output file is left as it was, --force or not.
  writeText(tmp / "earlier.safetensors", "earlier");
  expectError("merge --base " + q(tmp / "wide.safetensors") + " --adapter " + q(tmp / "a") +
                  " --out " + q(tmp / "earlier.safetensors"),
              "expected --out to be a new file, got the existing");
  expectError("merge --force --base " + q(tmp / "wide.safetensors") + " --adapter " + q(tmp / "a") +
                  " --out " + q(tmp / "earlier.safetensors"),
              "of shape");
  EXPECT_EQ(lora::test::readText(tmp / "earlier.safetensors"), "earlier");
  // PiSSA factors are not merged into the original base unless --residual says it is one.
  lora::PeftAdapterWriter w(lora::AdapterConfig::parse(
      R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "init_lora_weights": "pissa"})", "t"));
  w.add("layers.0.q", lora::test::gaussian<float>(4, 6, 1), lora::test::gaussian<float>(8, 4, 2),
        8);
  w.write(tmp / "pissa");
  writeBase(tmp / "base.safetensors");
  expectError("merge --base " + q(tmp / "base.safetensors") + " --adapter " + q(tmp / "pissa") +
                  " --out " + q(tmp / "m.safetensors"),
              "convert-pissa", tmp / "m.safetensors");
  expectError("resize --rank 2 " + q(tmp / "pissa") + " " + q(tmp / "r"), "convert-pissa",
              tmp / "r");
  EXPECT_EQ(runCli("merge --residual --base " + q(tmp / "base.safetensors") + " --adapter " +
                   q(tmp / "pissa") + " --out " + q(tmp / "m.safetensors"))
                .status,
            0);
}

TEST(CliUsage, ConvertPissaMismatches) {
  ScratchDir tmp("convert");
  writeGoodAdapter(tmp / "trained");
  lora::PeftAdapterWriter w(lora::AdapterConfig::parse(kConfig, "t"));
  w.add("layers.0.q", lora::test::gaussian<float>(4, 6, 1), lora::test::gaussian<float>(8, 4, 2),
        8);
  w.write(tmp / "one_module");
  expectError("convert-pissa --initial " + q(tmp / "one_module") + " --trained " +
                  q(tmp / "trained") + " --out " + q(tmp / "c"),
              "cover the 2 modules", tmp / "c");
  lora::SafeTensorsWriter bare;
  bare.add("layers.0.q.lora_A.weight", lora::test::gaussian<float>(4, 6, 1));
  bare.add("layers.0.q.lora_B.weight", lora::test::gaussian<float>(8, 4, 1));
  bare.add("layers.0.v.lora_A.weight", lora::test::gaussian<float>(4, 7, 1));
  bare.add("layers.0.v.lora_B.weight", lora::test::gaussian<float>(5, 4, 1));
  bare.write(tmp / "init.safetensors");
  expectError("convert-pissa --initial " + q(tmp / "init.safetensors") + " --trained " +
                  q(tmp / "trained") + " --out " + q(tmp / "c"),
              "expected initial factors of the trained shapes for 'layers.0.v'", tmp / "c");
}

TEST(CliUsage, UnwritableOutputs) {
  ScratchDir tmp("unwritable");
  writeGoodAdapter(tmp / "a");
  writeBase(tmp / "base.safetensors");
  writeText(tmp / "file", "x");
  expectError("resize --rank 2 " + q(tmp / "a") + " " + q(tmp / "file" / "out"), "expected",
              tmp / "file" / "out");
  expectError("resize --rank 2 " + q(tmp / "a") + " " + q(tmp / "file"),
              "expected OUT_DIR to be a folder, got the file");
  EXPECT_EQ(lora::test::readText(tmp / "file"), "x");
  expectError("merge --base " + q(tmp / "base.safetensors") + " --adapter " + q(tmp / "a") +
                  " --out " + q(tmp / "missing" / "m.safetensors"),
              "existing folder", tmp / "missing");
  expectError("merge --base " + q(tmp / "base.safetensors") + " --adapter " + q(tmp / "a") +
                  " --out " + q(tmp.path()),
              "got the folder");
  expectError("convert-pissa --initial " + q(tmp / "a") + " --trained " + q(tmp / "a") + " --out " +
                  q(tmp / "file" / "c"),
              "expected", tmp / "file" / "c");
  expectError(
      "recommend --budget 4 --write-pattern " + q(tmp / "file" / "p.json") + " " + q(tmp / "a"),
      "expected --write-pattern in an existing folder");
  // Nothing but what the test made is left in the scratch folder.
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(tmp.path()))
    left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"a", "base.safetensors", "file"}));
}

TEST(CliUsage, RankFlagsOutOfRange) {
  ScratchDir tmp("flags");
  writeGoodAdapter(tmp / "a");
  const fs::path out = tmp / "out";
  const std::string in = q(tmp / "a") + " " + q(out);
  for (const auto& [flags, word] : std::vector<std::pair<std::string, std::string>>{
           {"--rank 0", "--rank >= 1"},
           {"--rank -3", "--rank >= 1"},
           {"--energy 0", "--energy in (0, 1]"},
           {"--energy 1.5", "--energy in (0, 1]"},
           {"--sv-ratio 0.5", "--sv-ratio"},
           {"--sv-cumulative 2", "--sv-cumulative in (0, 1]"},
           {"--sv-fro -1", "--sv-fro in (0, 1]"},
           {"--rank 2 --min-rank 0", "--min-rank >= 1"},
           {"--rank 2 --max-rank 0", "--max-rank >= 1"},
           {"--rank 2 --min-rank 4 --max-rank 2", "--min-rank <= --max-rank"},
           {"--rank 2 --threads 0", "--threads >= 1"},
           {"--rank 2 --dtype f8", "--dtype"},
           {"--rank-pattern " + q(tmp / "none.json"), "readable --rank-pattern"}}) {
    expectError("resize " + flags + " " + in, word, out);
  }
  writeText(tmp / "bad.json", R"({"rank_pattern": {"q": 0}})");
  expectError("resize --rank-pattern " + q(tmp / "bad.json") + " " + in, "positive integer rank",
              out);
  writeText(tmp / "bad2.json", "{oops");
  expectError("resize --rank-pattern " + q(tmp / "bad2.json") + " " + in, "valid JSON", out);
  expectError("recommend --budget 0 " + q(tmp / "a"), "--budget >= 1");
  expectError("recommend --budget 100 " + q(tmp / "a"), "expected a budget in [2, 8]");
  expectError("recommend --budget 4 --min-rank 0 " + q(tmp / "a"), "--min-rank >= 1");
  expectError("recommend --budget 4 --min-rank 3 --max-rank 2 " + q(tmp / "a"),
              "--min-rank <= --max-rank");
  expectError("inspect --threads 0 " + q(tmp / "a"), "--threads >= 1");
  expectError("merge --dtype q4 --base x --adapter " + q(tmp / "a") + " --out " + q(tmp / "m"),
              "--dtype", tmp / "m");
}

TEST(CliUsage, UsageErrorsExitWithTwo) {
  ScratchDir tmp("usage");
  writeGoodAdapter(tmp / "a");
  const fs::path out = tmp / "out";
  expectError("resize " + q(tmp / "a") + " " + q(out), "Exactly 1 option", out, 2);
  expectError("resize --rank 2 --knee " + q(tmp / "a") + " " + q(out), "Exactly 1 option", out, 2);
  expectError("resize --rank two " + q(tmp / "a") + " " + q(out), "rank", out, 2);
  expectError("inspect --bogus " + q(tmp / "a"), "bogus", std::nullopt, 2);
  expectError("merge --adapter " + q(tmp / "a"), "required", std::nullopt, 2);
  expectError("recommend --budget 4 --rule best " + q(tmp / "a"), "best", std::nullopt, 2);
  expectError("", "subcommand", std::nullopt, 2);
}

TEST(CliUsage, ResizeNeverWritesOverItsInput) {
  ScratchDir tmp("own_input");
  writeGoodAdapter(tmp / "a");
  const std::string before = lora::test::readText(tmp / "a" / "adapter_model.safetensors");
  fs::create_directory_symlink(tmp / "a", tmp / "link");
  for (const fs::path& out : {tmp / "a", tmp / "." / "a" / ".", tmp / "link"}) {
    for (const char* force : {"", "--force "}) {
      expectError(std::string("resize ") + force + "--rank 2 " + q(tmp / "a") + " " + q(out),
                  "expected OUT_DIR to be a folder other than the inputs");
    }
  }
  EXPECT_EQ(lora::test::readText(tmp / "a" / "adapter_model.safetensors"), before);
  // A resize that fails leaves no output folder and no staging file behind.
  expectError("resize --rank 0 " + q(tmp / "a") + " " + q(tmp / "out"), "--rank >= 1", tmp / "out");
}

// Every subcommand that writes refuses to write one of its inputs (by device and inode: a
// symlink or another spelling is no way around it, --force neither), refuses an existing output
// without --force, and with --force replaces only the files it writes.
TEST(CliUsage, NoSubcommandWritesOverItsInputsOrAnExistingOutput) {
  ScratchDir tmp("outputs");
  writeGoodAdapter(tmp / "a");
  writeBase(tmp / "base.safetensors");
  fs::create_symlink(tmp / "base.safetensors", tmp / "base_link.safetensors");
  fs::create_symlink(tmp / "a" / "adapter_model.safetensors", tmp / "tensors.svg");
  const std::string a = q(tmp / "a");
  const std::string adapterBytes = lora::test::readText(tmp / "a" / "adapter_model.safetensors");
  const std::string configBytes = lora::test::readText(tmp / "a" / "adapter_config.json");
  const std::string baseBytes = lora::test::readText(tmp / "base.safetensors");
  const std::string merge = "merge --base " + q(tmp / "base.safetensors") + " --adapter " + a;
  for (const char* force : {"", " --force"}) {
    SCOPED_TRACE(force);
    const std::string f = force;
    for (const fs::path& out :
         {tmp / "base.safetensors", tmp / "base_link.safetensors",
          tmp / "a" / "adapter_model.safetensors", tmp / "a" / "adapter_config.json"})
      expectError(merge + f + " --out " + q(out),
                  "expected --out to be a new file, not one of the inputs");
    expectError("recommend --budget 4 " + a + f + " --write-pattern " +
                    q(tmp / "a" / "adapter_config.json"),
                "expected --write-pattern to be a new file, not one of the inputs");
    expectError("inspect " + a + f + " --plot " + q(tmp / "tensors.svg"),
                "expected --plot to be a new file, not one of the inputs");
    expectError("convert-pissa --initial " + a + " --trained " + a + f + " --out " + a,
                "expected --out to be a folder other than the inputs");
  }
  EXPECT_EQ(lora::test::readText(tmp / "a" / "adapter_model.safetensors"), adapterBytes);
  EXPECT_EQ(lora::test::readText(tmp / "a" / "adapter_config.json"), configBytes);
  EXPECT_EQ(lora::test::readText(tmp / "base.safetensors"), baseBytes);

  // An existing output: refused without --force (nothing changed), replaced with it; the other
  // files of an output folder stay.
  fs::create_directory(tmp / "out");
  writeText(tmp / "out" / "notes.txt", "mine");
  expectError("resize --rank 2 " + a + " " + q(tmp / "out"),
              "expected OUT_DIR to be a new or empty folder");
  EXPECT_FALSE(fs::exists(tmp / "out" / "adapter_model.safetensors"));
  ASSERT_EQ(runCli("resize --force --rank 2 " + a + " " + q(tmp / "out")).status, 0);
  EXPECT_TRUE(fs::exists(tmp / "out" / "adapter_model.safetensors"));
  EXPECT_EQ(lora::test::readText(tmp / "out" / "notes.txt"), "mine");

  writeText(tmp / "merged.safetensors", "earlier");
  expectError(merge + " --out " + q(tmp / "merged.safetensors"),
              "expected --out to be a new file, got the existing");
  EXPECT_EQ(lora::test::readText(tmp / "merged.safetensors"), "earlier");
  ASSERT_EQ(runCli(merge + " --force --out " + q(tmp / "merged.safetensors")).status, 0);
  EXPECT_NE(lora::test::readText(tmp / "merged.safetensors"), "earlier");

  writeText(tmp / "pattern.json", "earlier");
  expectError("recommend --budget 4 " + a + " --write-pattern " + q(tmp / "pattern.json"),
              "expected --write-pattern to be a new file, got the existing");
  ASSERT_EQ(
      runCli("recommend --force --budget 4 " + a + " --write-pattern " + q(tmp / "pattern.json"))
          .status,
      0);
  EXPECT_NE(lora::test::readText(tmp / "pattern.json"), "earlier");

  writeText(tmp / "chart.svg", "earlier");
  expectError("capacity --out 8 --in 8 --plot " + q(tmp / "chart.svg"),
              "expected --plot to be a new file, got the existing");
  expectError("inspect " + a + " --plot " + q(tmp / "chart.svg"),
              "expected --plot to be a new file, got the existing");
  EXPECT_EQ(lora::test::readText(tmp / "chart.svg"), "earlier");
}

TEST(CliUsage, ThreadsFlagAndEnvironment) {
  ScratchDir tmp("threads");
  // An adapter large enough for the products to be split across threads.
  lora::PeftAdapterWriter w(lora::AdapterConfig::parse(
      R"({"peft_type": "LORA", "r": 32, "lora_alpha": 32, "target_modules": ["q"]})", "t"));
  w.add("layers.0.q", lora::test::gaussian<float>(32, 384, 1, 0.1),
        lora::test::gaussian<float>(512, 32, 2, 0.1), 32);
  w.write(tmp / "a");
  const std::string a = q(tmp / "a");
  // --threads before or after the subcommand's name; the answers do not depend on it.
  ASSERT_EQ(runCli("--threads 1 resize --rank 8 " + a + " " + q(tmp / "one")).status, 0);
  ASSERT_EQ(runCli("resize --threads 2 --rank 8 " + a + " " + q(tmp / "two")).status, 0);
  const auto one = lora::SafeTensorsReader::open(tmp / "one" / "adapter_model.safetensors");
  const auto two = lora::SafeTensorsReader::open(tmp / "two" / "adapter_model.safetensors");
  ASSERT_EQ(one.names(), two.names());
  for (const std::string& name : one.names()) {
    const Eigen::MatrixXf x = one.matrix<float>(name), y = two.matrix<float>(name);
    ASSERT_EQ(x.rows(), y.rows());
    ASSERT_EQ(x.cols(), y.cols());
    EXPECT_LE((x - y).norm(), 1e-5 * y.norm()) << name;
  }
  // LORA_NUM_THREADS sets the default; a bad value is one error line unless --threads is given.
  EXPECT_EQ(runCli("inspect " + a, "LORA_NUM_THREADS=2").status, 0);
  const CliResult bad = runCli("inspect " + a, "LORA_NUM_THREADS=many");
  EXPECT_EQ(bad.status, 1);
  ASSERT_EQ(bad.errLines().size(), 1u) << bad.err;
  EXPECT_EQ(bad.errLines()[0],
            "lora: error: LORA_NUM_THREADS: expected an integer from 1 to 65536, got 'many' (or "
            "pass --threads)");
  EXPECT_TRUE(bad.out.empty());
  EXPECT_EQ(runCli("inspect --threads 1 " + a, "LORA_NUM_THREADS=many").status, 0);
  // A thread count must be positive, before the subcommand's name too.
  expectError("--threads 0 inspect " + a, "expected --threads >= 1, got 0");
  expectError("--threads -3 inspect " + a, "expected --threads >= 1, got -3");
  expectError("inspect --threads x " + a, "threads", std::nullopt, 2);
}

}  // namespace
