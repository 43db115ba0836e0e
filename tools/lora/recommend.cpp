// `lora recommend DIR --budget N`: per-module ranks that share a total rank budget, from each
// module's spectrum of s·B·A (computed from the factors). Importance: the original article's
// effective rank · ln(1 + σ_1) (rank::articleImportance), or the energy Σσ² = ||s·B·A||_F²;
// allocation: rank::allocateExact (sums to the budget, each rank in [min, max]) or
// rank::allocateArticle (the article's rule, faithful, may miss the budget).

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "lora/error.hpp"
#include "lora/io/adapter_config.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/io/peft_writer.hpp"
#include "lora/rank/budget.hpp"
#include "outputs.hpp"

namespace lora::cli {
namespace {

constexpr const char* kWhereRecommend = "recommend";
using Index = Eigen::Index;

struct RecommendArgs {
  std::string dir, rule = "exact", importance = "article", writePattern;
  long long budget = 0;
  int minRank = 1, maxRank = 0;
  bool force = false;
  CommonOptions common;
};

/// {"r": R, "rank_pattern": {...}}: PEFT's LoraConfig(**json) and `lora resize --rank-pattern`
/// both resolve every module of \p modules to its rank.
std::string patternJson(const std::vector<ModuleRankAlpha>& modules) {
  AdapterConfig c;
  assignPatterns(c, modules);
  nlohmann::ordered_json j;
  j["r"] = c.r;
  j["rank_pattern"] = nlohmann::ordered_json::object();
  for (const auto& [key, rank] : c.rankPattern) j["rank_pattern"][key] = rank;
  const std::string text = j.dump(2) + "\n";
  nlohmann::ordered_json check = j;
  check["peft_type"] = "LORA";
  const AdapterConfig parsed = AdapterConfig::parse(check.dump(), "rank pattern");
  for (const ModuleRankAlpha& m : modules) {
    if (parsed.rankFor(m.module) != m.rank)
      detail::fail(kWhereRecommend, "expected the rank pattern to give '{}' rank {}, got {}",
                   m.module, m.rank, parsed.rankFor(m.module));
  }
  return text;
}

void run(const CLI::App* cmd, const RecommendArgs& a) {
  const unsigned threads = threadCount(cmd, a.common);
  if (a.budget < 1) detail::fail(kWhereRecommend, "expected --budget >= 1, got {}", a.budget);
  if (!a.writePattern.empty())
    checkOutputFile(kWhereRecommend, "--write-pattern", a.writePattern, adapterInputs(a.dir),
                    a.force);
  if (a.minRank < 1) detail::fail(kWhereRecommend, "expected --min-rank >= 1, got {}", a.minRank);
  if (cmd->count("--max-rank") && a.maxRank < 1)
    detail::fail(kWhereRecommend, "expected --max-rank >= 1, got {}", a.maxRank);
  refuseKohyaFile(kWhereRecommend, a.dir);
  const PeftAdapterFile file = PeftAdapterFile::open(a.dir);
  const auto& modules = file.modules();

  std::vector<Eigen::VectorXd> spectra(modules.size());
  std::vector<double> importance(modules.size());
  {
    io::Progress progress("recommend", modules.size(), a.common.quiet);
    parallelFor(
        modules.size(), threads,
        [&](std::size_t i) {
          spectra[i] = moduleSpectrum(file, modules[i]);
          importance[i] = a.importance == "energy" ? spectra[i].squaredNorm()
                                                   : rank::articleImportance(spectra[i]);
        },
        &progress);
  }
  Index currentMax = 1, currentTotal = 0;
  for (const auto& m : modules) {
    currentMax = std::max(currentMax, m.rank);
    currentTotal += m.rank;
  }
  const Index minRank = a.minRank;
  const Index maxRank = cmd->count("--max-rank") ? Index{a.maxRank} : std::max(currentMax, minRank);
  if (maxRank < minRank)
    detail::fail(kWhereRecommend, "expected --min-rank <= --max-rank, got {} and {}", minRank,
                 maxRank);

  std::vector<Index> ranks;
  if (a.rule == "exact") {
    ranks = rank::allocateExact(importance, a.budget, minRank, maxRank);
  } else {
    ranks = rank::allocateArticle(importance, a.budget);
    for (Index& r : ranks) r = std::clamp(r, minRank, maxRank);
  }
  Index total = 0;
  for (Index r : ranks) total += r;

  std::vector<ModuleRankAlpha> chosen;
  for (std::size_t i = 0; i < modules.size(); ++i)
    chosen.push_back({modules[i].name, static_cast<int>(ranks[i]), 1.0});
  if (!a.writePattern.empty()) writeFileAtomic(a.writePattern, patternJson(chosen));

  if (a.common.json) {
    nlohmann::ordered_json j;
    j["adapter"] = a.dir;
    j["rule"] = a.rule;
    j["importance"] = a.importance;
    j["budget"] = a.budget;
    j["min_rank"] = minRank;
    j["max_rank"] = maxRank;
    j["modules"] = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < modules.size(); ++i) {
      nlohmann::ordered_json e;
      e["name"] = modules[i].name;
      e["out"] = modules[i].out;
      e["in"] = modules[i].in;
      e["rank"] = modules[i].rank;
      e["importance"] = importance[i];
      e["sigma1"] = spectra[i](0);
      e["recommended_rank"] = ranks[i];
      e["energy_kept"] = energyShare(spectra[i], ranks[i]);
      e["fro_kept"] = std::sqrt(energyShare(spectra[i], ranks[i]));
      j["modules"].push_back(std::move(e));
    }
    j["total_rank"] = total;
    j["current_total_rank"] = currentTotal;
    if (!a.writePattern.empty()) j["pattern_file"] = a.writePattern;
    fmt::print("{}\n", j.dump(2));
    return;
  }
  Table table({"module", "out", "in", "rank", "importance", "recommended", "fro kept"});
  for (std::size_t i = 0; i < modules.size(); ++i) {
    table.add({modules[i].name, std::to_string(modules[i].out), std::to_string(modules[i].in),
               std::to_string(modules[i].rank), num(importance[i]), std::to_string(ranks[i]),
               fmt::format("{:.2f}%", 100.0 * std::sqrt(energyShare(spectra[i], ranks[i])))});
  }
  table.print(stdout);
  fmt::print(
      "rule {}, importance {}: total rank {} for a budget of {} (now {}), ranks in [{}, {}]\n",
      a.rule, a.importance, total, a.budget, currentTotal, minRank, maxRank);
  fmt::print(
      "fro kept: share of the Frobenius norm of s·B·A that resizing to the recommended "
      "rank keeps\n");
  if (!a.writePattern.empty()) {
    fmt::print("rank pattern written to {} (use: lora resize {} OUT --rank-pattern {})\n",
               a.writePattern, a.dir, a.writePattern);
  }
}

}  // namespace

void addRecommend(CLI::App& app) {
  auto args = std::make_shared<RecommendArgs>();
  CLI::App* cmd = app.add_subcommand(
      "recommend",
      "Per-module ranks that share a total rank budget, from each module's spectrum of s·B·A; "
      "prints a table and can write a rank_pattern for `lora resize --rank-pattern` or PEFT.");
  cmd->add_option("DIR", args->dir, "PEFT adapter folder")->required();
  cmd->add_option("--budget", args->budget, "total rank over all modules")->required();
  cmd->add_option("--min-rank", args->minRank, "lowest rank per module (default 1)");
  cmd->add_option("--max-rank", args->maxRank,
                  "highest rank per module (default: the adapter's largest rank)");
  cmd->add_option("--rule", args->rule,
                  "exact: ranks sum to the budget, each in [min, max] (rank::allocateExact); "
                  "article: the original article's allocation, faithful (may miss the budget)")
      ->check(CLI::IsMember({"exact", "article"}))
      ->capture_default_str();
  cmd->add_option("--importance", args->importance,
                  "article: effective rank (σ_i > 1% σ_1) · ln(1 + σ_1); energy: Σσ² = "
                  "||s·B·A||_F²")
      ->check(CLI::IsMember({"article", "energy"}))
      ->capture_default_str();
  addForceFlag(cmd, args->force);
  cmd->add_option("--write-pattern", args->writePattern,
                  "write {\"r\": R, \"rank_pattern\": {...}} to this file (atomically)");
  addCommonOptions(cmd, args->common, true);
  cmd->callback([cmd, args] { run(cmd, *args); });
}

}  // namespace lora::cli
