// `lora inspect DIR --plot FILE`: the chart of every module's spectrum of s·B·A (gnuplot SVG), the
// CSV it falls back to (its σ values against `inspect --json`), the 12-module limit, bad plot
// files, and the progress bar forced on with LORA_PROGRESS=1. Adapters are discovered from the
// PEFT fixtures (LORA_PEFT_FIXTURES), or written here.

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "lora/io/adapter_config.hpp"
#include "lora/io/peft_writer.hpp"
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

constexpr const char* kSpectrumPanel = "singular values of s·B·A";

struct CsvRow {
  std::string panel, series;
  double x = 0, y = 0;
};

// Rows of `panel,series,x,y` with quoted panel and series (no quotes inside).
std::vector<CsvRow> readCsv(const fs::path& file) {
  std::istringstream in(lora::test::readText(file));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "panel,series,x,y");
  std::vector<CsvRow> rows;
  while (std::getline(in, line)) {
    CsvRow row;
    std::size_t pos = 0;
    for (std::string* field : {&row.panel, &row.series}) {
      EXPECT_EQ(line[pos], '"') << line;
      const std::size_t end = line.find('"', pos + 1);
      *field = line.substr(pos + 1, end - pos - 1);
      pos = end + 2;  // past the quote and the comma
    }
    const std::size_t comma = line.find(',', pos);
    row.x = std::stod(line.substr(pos, comma - pos));
    row.y = std::stod(line.substr(comma + 1));
    rows.push_back(row);
  }
  return rows;
}

// The modules the chart shows: s·B·A not zero, at most the 12 with the largest σ1.
std::vector<std::string> drawnModules(const Json& j) {
  std::vector<const Json*> nonzero;
  for (const Json& m : j["modules"])
    if (m["sigma1"].get<double>() > 0) nonzero.push_back(&m);
  std::stable_sort(nonzero.begin(), nonzero.end(), [](const Json* a, const Json* b) {
    return (*a)["sigma1"].get<double>() > (*b)["sigma1"].get<double>();
  });
  if (nonzero.size() > 12) nonzero.resize(12);
  std::vector<std::string> names;
  for (const Json* m : nonzero) names.push_back((*m)["name"].get<std::string>());
  return names;
}

Json inspectJson(const fs::path& dir) {
  const CliResult r = runCli("inspect --json " + q(dir));
  EXPECT_EQ(r.status, 0) << r.err;
  return Json::parse(r.out);
}

bool haveGnuplot() {
  return std::system("gnuplot --version >/dev/null 2>&1") == 0;
}

TEST(CliInspectPlot, SvgNamesEveryModule) {
  if (!haveGnuplot()) GTEST_SKIP() << "gnuplot is not installed";
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty()) << lora::test::fixtureDir();
  ScratchDir tmp("inspect_plot_svg");
  for (const fs::path& dir : variants) {
    SCOPED_TRACE(dir.filename().string());
    const Json j = inspectJson(dir);
    const fs::path svg = tmp / (dir.filename().string() + ".svg");
    const CliResult r = runCli("inspect -q " + q(dir) + " --plot " + q(svg));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("total: "), std::string::npos) << r.out;  // the table as without --plot
    EXPECT_NE(r.err.find("wrote " + svg.string()), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(svg.string() + ".csv"));
    const std::string text = lora::test::readText(svg);
    EXPECT_NE(text.find("<svg"), std::string::npos);
    EXPECT_NE(text.find("singular values of s·B·A"), std::string::npos);
    EXPECT_NE(text.find("cumulative energy"), std::string::npos);
    EXPECT_NE(text.find("90 % energy rank"), std::string::npos);
    const auto names = drawnModules(j);
    ASSERT_FALSE(names.empty());
    for (const std::string& name : names) EXPECT_NE(text.find(name), std::string::npos) << name;
  }
}

// Without gnuplot, FILE.csv holds every drawn module's spectrum: its first value is inspect's
// sigma1, and the energy-rank markers sit on the curve at inspect's e90/e95/e99.
TEST(CliInspectPlot, CsvWithoutGnuplotMatchesInspectJson) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty()) << lora::test::fixtureDir();
  ScratchDir tmp("inspect_plot_csv");
  for (const char* gnuplot : {"false", "/nonexistent/gnuplot"}) {
    ::setenv("LORA_GNUPLOT", gnuplot, 1);
    for (const fs::path& dir : variants) {
      SCOPED_TRACE(dir.filename().string() + ", LORA_GNUPLOT=" + gnuplot);
      const fs::path png = tmp / (dir.filename().string() + ".png");
      // --force: the second LORA_GNUPLOT round replaces the first round's data files.
      const CliResult r = runCli("inspect --json -q --force " + q(dir) + " --plot " + q(png));
      ASSERT_EQ(r.status, 0) << r.err;
      EXPECT_NE(r.err.find("could not draw"), std::string::npos) << r.err;
      EXPECT_FALSE(fs::exists(png));
      const Json j = Json::parse(r.out);  // stdout is the JSON alone
      EXPECT_EQ(j, inspectJson(dir));
      const auto rows = readCsv(png.string() + ".csv");
      std::map<std::string, std::vector<CsvRow>> spectrum, marks;
      for (const CsvRow& row : rows) {
        if (!row.panel.starts_with(kSpectrumPanel)) continue;
        (row.series.ends_with("% energy rank") ? marks : spectrum)[row.series].push_back(row);
      }
      const auto names = drawnModules(j);
      EXPECT_EQ(spectrum.size(), names.size());
      std::vector<const Json*> drawn;  // in module order, as the markers are
      for (const Json& m : j["modules"])
        if (std::find(names.begin(), names.end(), m["name"]) != names.end()) drawn.push_back(&m);
      for (std::size_t i = 0; i < drawn.size(); ++i) {
        const Json& m = *drawn[i];
        const std::string name = m["name"];
        SCOPED_TRACE(name);
        const auto& curve = spectrum[name];
        ASSERT_FALSE(curve.empty());
        EXPECT_EQ(curve.front().x, 1.0);
        EXPECT_DOUBLE_EQ(curve.front().y, m["sigma1"].get<double>());
        EXPECT_LE(curve.size(), static_cast<std::size_t>(m["rank"].get<long long>()));
        for (std::size_t k = 1; k < curve.size(); ++k) {
          EXPECT_EQ(curve[k].x, static_cast<double>(k + 1));
          EXPECT_LE(curve[k].y, curve[k - 1].y);
        }
        for (const auto& [series, key] : {std::pair{"90 % energy rank", "energy_rank_90"},
                                          std::pair{"95 % energy rank", "energy_rank_95"},
                                          std::pair{"99 % energy rank", "energy_rank_99"}}) {
          ASSERT_EQ(marks[series].size(), drawn.size()) << series;
          const CsvRow& mark = marks[series][i];
          EXPECT_EQ(mark.x, m[key].get<double>()) << series;
          EXPECT_EQ(mark.y, curve.at(static_cast<std::size_t>(mark.x) - 1).y) << series;
        }
      }
    }
    ::unsetenv("LORA_GNUPLOT");
  }
}

// 14 modules with s·B·A ≠ 0 and one with B = 0: the 12 with the largest σ1 are drawn, and the
// title says so.
TEST(CliInspectPlot, AtMostTwelveModulesTheLargestSigma1) {
  ScratchDir tmp("inspect_plot_many");
  const fs::path dir = tmp / "adapter";
  writeAdapter(dir, R"({"peft_type": "LORA", "r": 3, "lora_alpha": 3, "target_modules": ["p"]})",
               lora::DType::F32, [](lora::PeftAdapterWriter& w) {
                 const Eigen::MatrixXf A = lora::test::gaussian<float>(3, 5, 1);
                 const Eigen::MatrixXf B = lora::test::gaussian<float>(4, 3, 2);
                 for (int k = 0; k < 14; ++k)  // module k: (k + 1)·B·A, so σ1 grows with k
                   w.add(fmt::format("layers.{:02}.p", k), A,
                         (static_cast<float>(k + 1) * B).eval(), 3.0);
                 w.add("layers.99.p", lora::test::gaussian<float>(3, 5, 99),
                       Eigen::MatrixXf::Zero(4, 3), 3.0);
               });
  const Json j = inspectJson(dir);
  ASSERT_EQ(j["modules"].size(), 15u);
  ::setenv("LORA_GNUPLOT", "false", 1);
  const fs::path svg = tmp / "many.svg";
  const CliResult r = runCli("inspect -q " + q(dir) + " --plot " + q(svg));
  ::unsetenv("LORA_GNUPLOT");
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::string> series, panels;
  for (const CsvRow& row : readCsv(svg.string() + ".csv")) {
    if (std::find(panels.begin(), panels.end(), row.panel) == panels.end())
      panels.push_back(row.panel);
    if (row.panel.starts_with(kSpectrumPanel) && row.series.starts_with("layers.") &&
        std::find(series.begin(), series.end(), row.series) == series.end())
      series.push_back(row.series);
  }
  const std::vector<std::string> expected = drawnModules(j);
  ASSERT_EQ(expected.size(), 12u);
  std::vector<std::string> sorted = expected;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(series, sorted);  // drawn in module order
  std::vector<std::string> largest;
  for (int k = 2; k < 14; ++k) largest.push_back(fmt::format("layers.{:02}.p", k));
  EXPECT_EQ(series, largest);
  ASSERT_EQ(panels.size(), 2u);
  EXPECT_EQ(panels[0],
            "singular values of s·B·A (the 12 of 14 modules with the largest σ1; 1 with s·B·A = 0 "
            "left out)");
}

TEST(CliInspectPlot, BadPlotFileIsOneLineAndNoOutput) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty()) << lora::test::fixtureDir();
  ScratchDir tmp("inspect_plot_bad");
  for (const std::string& args :
       {"inspect " + q(variants.front()) + " --plot " + q(tmp / "x.pdf"),
        "inspect --json " + q(variants.front()) + " --plot " + q(tmp / "x"),
        "inspect " + q(tmp / "missing") + " --plot " + q(tmp / "x.pdf")}) {
    SCOPED_TRACE(args);
    const CliResult r = runCli(args);
    expectOneErrorLine(r);
    EXPECT_NE(r.err.find(".png or .svg"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  EXPECT_TRUE(fs::is_empty(tmp.path()));
  // A folder that does not exist: one error line, nothing on stdout.
  const CliResult r =
      runCli("inspect " + q(variants.front()) + " --plot " + q(tmp / "no" / "such" / "x.svg"));
  expectOneErrorLine(r);
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(CliInspectPlot, ProgressBarWithLoraProgress1) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty()) << lora::test::fixtureDir();
  const fs::path dir = variants.front();
  const std::size_t modules = inspectJson(dir)["modules"].size();
  ::setenv("LORA_PROGRESS", "1", 1);
  const CliResult shown = runCli("inspect --json " + q(dir));
  const CliResult quiet = runCli("inspect --json -q " + q(dir));
  ::setenv("LORA_PROGRESS", "0", 1);
  const CliResult off = runCli("inspect --json " + q(dir));
  ::unsetenv("LORA_PROGRESS");
  ASSERT_EQ(shown.status, 0) << shown.err;
  EXPECT_NE(shown.err.find("inspect ["), std::string::npos) << shown.err;
  EXPECT_NE(shown.err.find(fmt::format("{0}/{0}", modules)), std::string::npos) << shown.err;
  EXPECT_EQ(Json::parse(shown.out)["modules"].size(), modules);
  EXPECT_TRUE(quiet.err.empty()) << quiet.err;
  EXPECT_TRUE(off.err.empty()) << off.err;
}

}  // namespace
