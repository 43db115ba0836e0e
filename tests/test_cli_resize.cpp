// `lora resize` and `lora recommend` on the PEFT fixture adapters, run as a user runs them, checked
// against dense SVDs and the rank rules and allocators applied here; and the peak memory of resize.
// Variants, modules, shapes and ranks are discovered from the files (LORA_PEFT_FIXTURES).

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/linalg/dense_svd.hpp"
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

// The rank each rule picks for a spectrum, as resize documents it.
Eigen::Index ruleRank(const std::string& rule, double t, const Eigen::VectorXd& sigma) {
  if (rule == "--rank") return static_cast<Eigen::Index>(t);
  if (rule == "--energy") return lora::linalg::energyRank(sigma, t);
  if (rule == "--sv-ratio") return lora::linalg::kohyaSvRatio(sigma, t);
  if (rule == "--sv-cumulative") return lora::linalg::kohyaSvCumulative(sigma, t);
  if (rule == "--sv-fro") return lora::linalg::kohyaSvFro(sigma, t);
  return lora::linalg::kneeRank(sigma);
}

TEST(CliResize, EveryRuleOnEveryVariantGivesTheTruncatedSvd) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty());
  const std::vector<std::pair<std::string, double>> rules = {
      {"--rank", 3}, {"--energy", 0.9}, {"--sv-ratio", 4}, {"--sv-cumulative", 0.8}, {"--sv-fro", 0.9}, {"--knee", 0}};
  // --rank and --energy on every variant; each of the other rules on some variant, in turn
  // (every CLI run is a process start, slow under ASan).
  std::size_t turn = 0;
  for (const fs::path& dir : variants) {
    if (mutatesBase(AdapterConfig::load(dir))) continue;  // resize refuses those (tested below)
    const auto in = PeftAdapterFile::open(dir);
    for (std::size_t ri = 0; ri < rules.size(); ++ri) {
      const auto& [rule, t] = rules[ri];
      if (ri >= 2 && ri != 2 + turn % (rules.size() - 2)) continue;
      SCOPED_TRACE(dir.filename().string() + " " + rule);
      ScratchDir tmp("resize");
      const std::string flag = rule == "--knee" ? rule : rule + " " + fmt::format("{}", t);
      const CliResult r = runCli("resize --json " + flag + " " + q(dir) + " " + q(tmp / "out"));
      ASSERT_EQ(r.status, 0) << r.err;
      const Json j = Json::parse(r.out);
      const auto out = PeftAdapterFile::open(tmp / "out");  // ranks agree with the config's rule
      ASSERT_EQ(out.modules().size(), in.modules().size());
      long long paramsAfter = 0;
      for (std::size_t i = 0; i < in.modules().size(); ++i) {
        const auto& m = in.modules()[i];
        const auto& m2 = out.modules()[i];
        SCOPED_TRACE(m.name);
        const Eigen::MatrixXd delta = denseDelta(in, m);
        const Eigen::Index n = std::min({m.rank, m.out, m.in});
        const auto svd = lora::linalg::denseSVD(delta, Eigen::ComputeThinU | Eigen::ComputeThinV);
        const Eigen::VectorXd sigma = svd.S.head(n);
        const Eigen::Index k = std::clamp<Eigen::Index>(ruleRank(rule, t, sigma), 1, n);
        EXPECT_EQ(j["modules"][i]["new_rank"], k);
        EXPECT_EQ(m2.rank, k);
        EXPECT_EQ(m2.name, m.name);
        EXPECT_NEAR(out.scaling(m2), in.scaling(m), 1e-12 * in.scaling(m));  // scaling kept
        const Eigen::MatrixXd best = svd.U.leftCols(k) * sigma.head(k).asDiagonal() *
                                     svd.V.leftCols(k).transpose();
        EXPECT_LE((denseDelta(out, m2) - best).norm(), 1e-5 * delta.norm() + 1e-12);
        EXPECT_NEAR(j["modules"][i]["retained_energy"].get<double>(),
                    sigma.head(k).squaredNorm() / sigma.squaredNorm(), 1e-9);
        if (in.isDora()) {
          EXPECT_TRUE(out.magnitude<double>(m2) == in.magnitude<double>(m));
        }
        paramsAfter += out.parameterCount(m2);
      }
      EXPECT_EQ(j["summary"]["params_after"], paramsAfter);
    }
    ++turn;
  }
  EXPECT_GE(turn, 1u);
}

TEST(CliResize, ClampsKeepsUnchangedModulesAndIgnoresThreads) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty());
  bool threadsChecked = false;
  for (const fs::path& dir : variants) {
    if (mutatesBase(AdapterConfig::load(dir))) {
      SCOPED_TRACE(dir.filename().string());
      ScratchDir tmp("resize_pissa");
      expectOneErrorLine(runCli("resize --rank 2 " + q(dir) + " " + q(tmp / "out")));
      EXPECT_FALSE(fs::exists(tmp / "out"));
      continue;
    }
    SCOPED_TRACE(dir.filename().string());
    ScratchDir tmp("resize_clamp");
    const auto in = PeftAdapterFile::open(dir);
    // --min-rank / --max-rank bound every rank (and no rank exceeds the spectrum's length).
    ASSERT_EQ(runCli("resize --energy 0.99 --min-rank 2 --max-rank 3 " + q(dir) + " " + q(tmp / "a")).status, 0);
    const auto a = PeftAdapterFile::open(tmp / "a");
    for (std::size_t i = 0; i < a.modules().size(); ++i) {
      const auto& m = in.modules()[i];
      EXPECT_GE(a.modules()[i].rank, std::min<Eigen::Index>(2, std::min({m.rank, m.in, m.out})));
      EXPECT_LE(a.modules()[i].rank, 3);
    }
    // A rank at or above every module's rank changes nothing: same tensors, ranks and alphas.
    ASSERT_EQ(runCli("resize --rank 100000 " + q(dir) + " " + q(tmp / "same")).status, 0);
    const auto same = PeftAdapterFile::open(tmp / "same");
    for (std::size_t i = 0; i < same.modules().size(); ++i) {
      const auto& m = in.modules()[i];
      if (m.rank > std::min(m.in, m.out)) continue;
      EXPECT_EQ(same.modules()[i].rank, m.rank);
      EXPECT_EQ(same.modules()[i].alpha, m.alpha);
      EXPECT_TRUE(same.A<float>(same.modules()[i]) == in.A<float>(m));
      EXPECT_TRUE(same.B<float>(same.modules()[i]) == in.B<float>(m));
    }
    if (threadsChecked) continue;
    threadsChecked = true;
    // The number of threads changes neither the report nor the files (on one variant).
    const CliResult one = runCli("resize --sv-fro 0.9 --threads 1 " + q(dir) + " " + q(tmp / "t1"));
    const CliResult many = runCli("resize --sv-fro 0.9 --threads 4 " + q(dir) + " " + q(tmp / "t4"));
    ASSERT_EQ(one.status, 0);
    ASSERT_EQ(many.status, 0);
    const auto strip = [](std::string s) { return s.substr(0, s.rfind("written to")); };
    EXPECT_EQ(strip(one.out), strip(many.out));
    for (const char* f : {"adapter_model.safetensors", "adapter_config.json"}) {
      EXPECT_EQ(lora::test::readText(tmp / "t1" / f), lora::test::readText(tmp / "t4" / f)) << f;
    }
  }
}

TEST(CliRecommend, BudgetsFollowTheAllocatorsAndThePatternDrivesResize) {
  const auto variants = variantDirs();
  ASSERT_FALSE(variants.empty());
  bool checkedArticle = false;
  for (const fs::path& dir : variants) {
    if (mutatesBase(AdapterConfig::load(dir))) continue;
    SCOPED_TRACE(dir.filename().string());
    const auto in = PeftAdapterFile::open(dir);
    std::vector<double> article, energy;
    std::vector<Eigen::VectorXd> spectra;
    Eigen::Index current = 0, maxRank = 1;
    for (const auto& m : in.modules()) {
      spectra.push_back(denseSpectrum(denseDelta(in, m), std::min({m.rank, m.out, m.in})));
      article.push_back(lora::rank::articleImportance(spectra.back()));
      energy.push_back(spectra.back().squaredNorm());
      current += m.rank;
      maxRank = std::max(maxRank, m.rank);
    }
    const auto layers = static_cast<Eigen::Index>(in.modules().size());
    const Eigen::Index budget = std::max(layers, current / 2);
    ScratchDir tmp("recommend");
    const fs::path pattern = tmp / "pattern.json";
    const CliResult r = runCli("recommend --json --budget " + std::to_string(budget) +
                               " --write-pattern " + q(pattern) + " " + q(dir));
    ASSERT_EQ(r.status, 0) << r.err;
    const Json j = Json::parse(r.out);
    const auto want = lora::rank::allocateExact(article, budget, 1, maxRank);
    EXPECT_EQ(j["total_rank"], budget);
    for (std::size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(j["modules"][i]["importance"].get<double>(), article[i], 1e-9 * article[i]);
      EXPECT_EQ(j["modules"][i]["recommended_rank"], want[i]);
    }
    // The pattern file resolves every module, in resize (and in PEFT's rule).
    ASSERT_EQ(runCli("resize " + q(dir) + " " + q(tmp / "out") + " --rank-pattern " + q(pattern)).status, 0);
    const auto out = PeftAdapterFile::open(tmp / "out");
    const Json p = Json::parse(lora::test::readText(pattern));
    nlohmann::json cfg = p;
    cfg["peft_type"] = "LORA";
    const AdapterConfig pc = AdapterConfig::parse(cfg.dump(), "pattern");
    for (std::size_t i = 0; i < want.size(); ++i) {
      const auto& m = in.modules()[i];
      EXPECT_EQ(pc.rankFor(m.name), want[i]);
      EXPECT_EQ(out.modules()[i].rank, std::min<Eigen::Index>(want[i], spectra[i].size()));
    }
    if (checkedArticle) continue;
    checkedArticle = true;
    // The article's rule and the energy importance, and the table (on one variant).
    const CliResult art = runCli("recommend --json --rule article --importance energy --budget " +
                                 std::to_string(budget) + " " + q(dir));
    ASSERT_EQ(art.status, 0) << art.err;
    const Json ja = Json::parse(art.out);
    const auto wantArticle = lora::rank::allocateArticle(energy, budget);
    for (std::size_t i = 0; i < wantArticle.size(); ++i) {
      EXPECT_EQ(ja["modules"][i]["recommended_rank"], std::clamp<Eigen::Index>(wantArticle[i], 1, maxRank));
    }
    const CliResult table = runCli("recommend --budget " + std::to_string(budget) + " " + q(dir));
    ASSERT_EQ(table.status, 0);
    EXPECT_NE(table.out.find("recommended"), std::string::npos);
  }
}

TEST(CliResize, PeakMemoryStaysWithinASmallMultipleOfTheAdapter) {
  if (kSanitized) {
    GTEST_SKIP() << "resident memory is not meaningful under AddressSanitizer";
  }
  ScratchDir tmp("memory");
  // A synthetic adapter of about 12 MiB (32 modules, 768 x 768, r = 64, F32), and a tiny one
  // whose peak is the process's own baseline.
  const std::string config = R"({"peft_type": "LORA", "r": 64, "lora_alpha": 64})";
  writeAdapter(tmp / "big", config, DType::F32, [](lora::PeftAdapterWriter& w) {
    for (int i = 0; i < 32; ++i)
      w.add(fmt::format("layers.{}.proj", i), lora::test::gaussian<float>(64, 768, 2 * i),
            lora::test::gaussian<float>(768, 64, 2 * i + 1), 64);
  });
  writeAdapter(tmp / "tiny", config, DType::F32, [](lora::PeftAdapterWriter& w) {
    w.add("layers.0.proj", lora::test::gaussian<float>(64, 64, 1), lora::test::gaussian<float>(64, 64, 2), 64);
  });
  const CliResult tiny = runCli("resize --json --rank 16 --threads 2 " + q(tmp / "tiny") + " " + q(tmp / "t"));
  const CliResult big = runCli("resize --json --rank 16 --threads 2 " + q(tmp / "big") + " " + q(tmp / "b"));
  ASSERT_EQ(tiny.status, 0) << tiny.err;
  ASSERT_EQ(big.status, 0) << big.err;
  const double baseline = Json::parse(tiny.out)["summary"]["peak_rss_bytes"].get<double>();
  const Json summary = Json::parse(big.out)["summary"];
  const double adapter = summary["bytes_before"].get<double>();
  const double growth = summary["peak_rss_bytes"].get<double>() - baseline;
  RecordProperty("adapter_bytes", std::to_string(adapter));
  RecordProperty("peak_growth_bytes", std::to_string(growth));
  EXPECT_LE(growth, 2.5 * adapter) << "baseline " << baseline << ", adapter " << adapter;
}

}  // namespace
