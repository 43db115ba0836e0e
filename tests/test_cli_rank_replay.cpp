// readLossLog and `lora rank-replay`, run as a user runs them: the binary, its stdout and exit code.

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/io/loss_log.hpp"
#include "support/errors.hpp"

namespace {

namespace fs = std::filesystem;
using lora::test::errorOf;

std::vector<lora::LossEntry> parse(const std::string& text) {
  std::istringstream in(text);
  return lora::readLossLog(in, "log.txt");
}

TEST(ReadLossLog, PlainAndCsvForms) {
  const auto plain = parse("2.5\n\n# comment\n  2.25 \n1e-1\n");
  ASSERT_EQ(plain.size(), 3u);
  EXPECT_EQ(plain[2].step, 2);
  EXPECT_DOUBLE_EQ(plain[2].loss, 0.1);
  const auto csv = parse("step,loss\n10,2.5\n20, 2.0\n");
  ASSERT_EQ(csv.size(), 2u);
  EXPECT_EQ(csv[1].step, 20);
  EXPECT_DOUBLE_EQ(csv[1].loss, 2.0);
  EXPECT_TRUE(parse("").empty());
}

TEST(ReadLossLog, MalformedLinesAreNamed) {
  EXPECT_CONTAINS(errorOf([] { parse("2.5\n1.2.3\n"); }),
                  "readLossLog(): log.txt:2: expected a number or step,loss, got '1.2.3'");
  EXPECT_CONTAINS(errorOf([] { parse("2.5\nnan\n"); }), "log.txt:2: expected a finite loss, got 'nan'");
  EXPECT_CONTAINS(errorOf([] { parse("1,2.5\n2.4\n"); }), "log.txt:2: expected step,loss like the lines before");
  EXPECT_CONTAINS(errorOf([] { parse("5,2.5\n5,2.4\n"); }), "log.txt:2: expected a step above 5, got 5");
  EXPECT_CONTAINS(errorOf([] { parse("x,2.5\n"); }), "log.txt:1:");
}

struct CliRun {
  int status;
  std::string out;
};
CliRun run(const std::string& args) {
  const std::string cmd = std::string(LORA_CLI) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), p)) out += buf.data();
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::vector<nlohmann::json> lines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line));
  return v;
}

fs::path writeTemp(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / ("lora_cli_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(p) << text;
  return p;
}

TEST(RankReplay, ArticleExampleAsTheArticlesCode) {
  const fs::path f = writeTemp("article.txt",
                               "2.5\n2.3\n2.1\n2.0\n1.95\n1.94\n1.94\n1.93\n1.93\n1.93\n1.94\n1.92\n1.95\n"
                               "1.91\n1.96\n1.90\n1.97\n1.89\n");
  const CliRun r = run("rank-replay --losses " + f.string() + " --initial-rank 8 --min-rank 2 --max-rank 32 --patience 5");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto v = lines(r.out);
  ASSERT_EQ(v.size(), 18u);
  EXPECT_EQ(v[0], nlohmann::json::parse(R"({"step": 0, "loss": 2.5, "adjust": false, "reason": "loss_improved", "rank": 8})"));
  EXPECT_EQ(v[12]["reason"], "no_clear_signal");
  for (const auto& j : v) EXPECT_FALSE(j["adjust"].get<bool>());
  // the slope rule on the same log grows the rank in the flat part
  const CliRun s = run("rank-replay --rule slope --window 5 --losses " + f.string());
  ASSERT_EQ(s.status, 0) << s.out;
  int adjustments = 0;
  for (const auto& j : lines(s.out)) adjustments += j["adjust"].get<bool>();
  EXPECT_GE(adjustments, 1);
  fs::remove(f);
}

TEST(RankReplay, AdjustmentsAreAppliedAndCsvStepsKept) {
  std::string csv = "step,loss\n0,0.5\n";
  long long step = 10;
  for (int i = 0; i < 7; ++i)
    for (const char* l : {"1.0", "1.3", "1.0"}) csv += std::to_string(step++ * 10) + "," + l + "\n";
  const fs::path f = writeTemp("osc.csv", csv);
  const CliRun r = run("rank-replay --losses " + f.string() + " --patience 5 --max-rank 32");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto v = lines(r.out);
  ASSERT_EQ(v.size(), 22u);
  EXPECT_EQ(v[1]["step"], 100);
  EXPECT_EQ(v[5], nlohmann::json::parse(R"({"step": 140, "loss": 1.3, "adjust": true, "reason": "oscillating_decrease_rank", "rank": 6})"));
  EXPECT_EQ(v[6]["rank"], 6);
  EXPECT_EQ(v.back()["rank"], 2);
  fs::remove(f);
}

TEST(RankReplay, BadInputIsOneLineAndNonZero) {
  const fs::path f = writeTemp("bad.txt", "2.5\noops\n");
  const CliRun bad = run("rank-replay --losses " + f.string());
  EXPECT_NE(bad.status, 0);
  EXPECT_EQ(bad.out, "lora: error: readLossLog(): " + f.string() + ":2: expected a number or step,loss, got 'oops'\n");
  fs::remove(f);
  const CliRun missing = run("rank-replay --losses /nonexistent/losses.txt");
  EXPECT_NE(missing.status, 0);
  EXPECT_EQ(std::count(missing.out.begin(), missing.out.end(), '\n'), 1) << missing.out;
  EXPECT_NE(missing.out.find("expected a readable loss file"), std::string::npos);
  const CliRun noArgs = run("rank-replay");
  EXPECT_NE(noArgs.status, 0);
  EXPECT_EQ(std::count(noArgs.out.begin(), noArgs.out.end(), '\n'), 1) << noArgs.out;
  const CliRun badRule = run("rank-replay --losses - --rule magic < /dev/null");
  EXPECT_NE(badRule.status, 0);
  const CliRun badRank = run("rank-replay --losses - --min-rank 9 --max-rank 4 < /dev/null");
  EXPECT_NE(badRank.status, 0);
  EXPECT_NE(badRank.out.find("expected 1 <= minRank <= maxRank"), std::string::npos) << badRank.out;
}

TEST(RankReplay, ReadsStdin) {
  const CliRun p = run("rank-replay --losses - --patience 1 --initial-rank 4 < /dev/null");
  EXPECT_EQ(p.status, 0);
  EXPECT_TRUE(p.out.empty());
  const CliRun q = run("rank-replay --losses - --initial-rank 4 --patience 3 --max-rank 8 < " +
                    writeTemp("flat.txt", "1\n1\n1\n1\n").string());
  ASSERT_EQ(q.status, 0) << q.out;
  const auto v = lines(q.out);
  ASSERT_EQ(v.size(), 4u);
  // 1, then three non-improvements: trend of [1,1,1] is a plateau with variance 0 -> 4·1.5 = 6
  EXPECT_EQ(v[3], nlohmann::json::parse(R"({"step": 3, "loss": 1.0, "adjust": true, "reason": "plateau_increase_rank", "rank": 6})"));
}

}  // namespace
