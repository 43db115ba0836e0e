// lora/analysis/rank_capacity.hpp and `lora capacity`: the article's section 1.1 table, its JSON,
// the plot through gnuplot and the CSV it falls back to, and bad input.
#include <cstdlib>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/analysis/rank_capacity.hpp"
#include "support/cli.hpp"
#include "support/errors.hpp"

namespace {

using Eigen::Index;
using lora::test::runCli;
using lora::test::ScratchDir;

TEST(RankCapacity, MatchesTheArticlesFormulas) {
  // BERT-base's 768 x 768 and the article's ranks, plus a wide shape.
  const std::vector<Index> ranks{1, 8, 256, 384, 1000};
  const auto cap = lora::analysis::rankCapacity(768, 768, ranks);
  EXPECT_EQ(cap.fullParameters, 589824);
  ASSERT_EQ(cap.rows.size(), ranks.size());
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    const Index r = ranks[i];
    EXPECT_EQ(cap.rows[i].rank, r);
    EXPECT_EQ(cap.rows[i].parameters, r * 1536);
    EXPECT_DOUBLE_EQ(cap.rows[i].compressionRatio, 589824.0 / static_cast<double>(r * 1536));
    EXPECT_EQ(cap.rows[i].capacity, std::min<Index>(r, 768));
  }
  EXPECT_DOUBLE_EQ(cap.rows[2].compressionRatio, 1.5);  // r = 256
  EXPECT_DOUBLE_EQ(cap.rows[3].compressionRatio, 1.0);  // r = out·in / (out + in)
  const auto wide = lora::analysis::rankCapacity(4096, 11008, std::vector<Index>{64, 5000});
  EXPECT_EQ(wide.rows[0].parameters, 64 * (4096 + 11008));
  EXPECT_EQ(wide.rows[1].capacity, 4096);
}

TEST(RankCapacity, RejectsBadInput) {
  using lora::test::errorOf;
  const std::vector<Index> ok{4};
  EXPECT_CONTAINS(errorOf([&] { lora::analysis::rankCapacity(0, 8, ok); }),
                  "rankCapacity(): expected out, in >= 1, got 0 x 8");
  EXPECT_CONTAINS(errorOf([&] { lora::analysis::rankCapacity(8, 8, std::vector<Index>{}); }),
                  "expected at least one rank");
  EXPECT_CONTAINS(errorOf([&] {
                    lora::analysis::rankCapacity(8, 8, std::vector<Index>{2, 0});
                  }),
                  "expected ranks >= 1, got 0");
  EXPECT_CONTAINS(
      errorOf([&] { lora::analysis::rankCapacity(Index(1) << 40, Index(1) << 40, ok); }),
      "fits in 63 bits");
}

TEST(CliCapacity, TableAndJson) {
  const auto table = runCli("capacity --out 768 --in 768 --ranks 1,8,1000");
  ASSERT_EQ(table.status, 0) << table.err;
  EXPECT_NE(table.out.find("589824"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("384.0x"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("note: r = 1000 is above min(out, in) = 768"), std::string::npos)
      << table.out;

  const auto json = runCli("capacity --out 4096 --in 11008 --ranks 16,64 --json");
  ASSERT_EQ(json.status, 0) << json.err;
  const auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["out"], 4096);
  EXPECT_EQ(j["in"], 11008);
  ASSERT_EQ(j["ranks"].size(), 2u);
  EXPECT_EQ(j["ranks"][1]["parameters"], 64 * (4096 + 11008));
  EXPECT_DOUBLE_EQ(j["ranks"][0]["compression_ratio"].get<double>(),
                   4096.0 * 11008.0 / (16.0 * (4096 + 11008)));
  EXPECT_EQ(j["ranks"][1]["capacity"], 64);

  const auto defaults = runCli("capacity --out 768 --in 768 --json");
  ASSERT_EQ(defaults.status, 0) << defaults.err;
  EXPECT_EQ(nlohmann::json::parse(defaults.out)["ranks"].size(), 9u);  // the article's 1..256
}

TEST(CliCapacity, PlotsWithGnuplotOrWritesCsv) {
  ScratchDir dir("capacity");
  const std::string svg = (dir / "cap.svg").string();
  const bool haveGnuplot = std::system("gnuplot --version >/dev/null 2>&1") == 0;
  if (haveGnuplot) {
    const auto r = runCli("capacity --out 768 --in 768 --plot " + lora::test::shellQuote(svg));
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string text = lora::test::readText(svg);
    EXPECT_NE(text.find("<svg"), std::string::npos);
    EXPECT_NE(text.find("compression ratio"), std::string::npos);
  }
  // Without gnuplot: one line on stderr, the data as CSV, exit 0, and no image.
  ::setenv("LORA_GNUPLOT", "/nonexistent/gnuplot", 1);
  const std::string png = (dir / "none.png").string();
  const auto r =
      runCli("capacity --out 64 --in 32 --ranks 1,2 --plot " + lora::test::shellQuote(png));
  ::unsetenv("LORA_GNUPLOT");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("could not draw"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(png));
  const std::string csv = lora::test::readText(png + ".csv");
  EXPECT_EQ(csv.rfind("panel,series,x,y\n", 0), 0u) << csv;
  EXPECT_NE(csv.find(",2,192\n"), std::string::npos) << csv;  // r = 2: 2·(64 + 32) parameters
}

TEST(CliCapacity, BadInputIsOneLineAndExitOne) {
  for (const std::string args : {"capacity --out 0 --in 8", "capacity --out 8 --in 8 --ranks 4,0",
                                 "capacity --out 8 --in 8 --plot x.pdf"}) {
    const auto r = runCli(args);
    EXPECT_EQ(r.status, 1) << args;
    EXPECT_EQ(r.errLines().size(), 1u) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  const auto usage = runCli("capacity --out 8");
  EXPECT_EQ(usage.status, 2);
  EXPECT_EQ(usage.errLines().size(), 1u) << usage.err;
}

}  // namespace
