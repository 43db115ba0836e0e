// `lora rank-replay`: runs a loss-plateau rank rule over a logged loss curve, applying each
// adjustment as the article's example loop does, and prints one JSON object per step.

#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "lora/error.hpp"
#include "lora/io/loss_log.hpp"
#include "lora/rank/loss_plateau.hpp"
#include "lora/rank/slope_plateau.hpp"

namespace lora::cli {
namespace {

struct ReplayArgs {
  std::string losses;
  std::string rule = "article";
  rank::ArticleLossPlateauOptions article;
  rank::SlopePlateauOptions slope;
};

std::vector<LossEntry> readLosses(const std::string& path) {
  if (path == "-") return readLossLog(std::cin, "<stdin>");
  std::ifstream in(path);
  if (!in) detail::fail("rank-replay", "expected a readable loss file, got '{}'", path);
  return readLossLog(in, path);
}

template <typename Rule>
void replay(Rule rule, const std::vector<LossEntry>& losses) {
  for (const LossEntry& e : losses) {
    const rank::Decision d = rule.observe(e.loss);
    if (d.adjust) rule.setRank(d.newRank);
    nlohmann::ordered_json j;
    j["step"] = e.step;
    j["loss"] = e.loss;
    j["adjust"] = d.adjust;
    j["reason"] = d.reason;
    j["rank"] = rule.currentRank();
    fmt::print("{}\n", j.dump());
  }
}

void run(const ReplayArgs& a) {
  const std::vector<LossEntry> losses = readLosses(a.losses);
  if (a.rule == "article") {
    replay(rank::ArticleLossPlateau(a.article), losses);
  } else {
    rank::SlopePlateauOptions o = a.slope;
    o.initialRank = a.article.initialRank;
    o.minRank = a.article.minRank;
    o.maxRank = a.article.maxRank;
    o.increaseFactor = a.article.increaseFactor;
    replay(rank::SlopePlateau(o), losses);
  }
}

}  // namespace

void addRankReplay(CLI::App& app) {
  auto args = std::make_shared<ReplayArgs>();
  CLI::App* cmd = app.add_subcommand(
      "rank-replay",
      "Replay a loss log through a loss-plateau rank rule; one JSON object per step.");
  cmd->add_option("--losses", args->losses,
                  "loss log: one loss per line or step,loss CSV; - for stdin")
      ->required();
  cmd->add_option("--rule", args->rule,
                  "article: the article's LossBasedRankAdjuster (section 3.2), faithful; slope: "
                  "the least-squares slope plateau detector")
      ->check(CLI::IsMember({"article", "slope"}))
      ->capture_default_str();
  auto& o = args->article;
  cmd->add_option("--initial-rank", o.initialRank, "rank at the start")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--min-rank", o.minRank, "lowest rank")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--max-rank", o.maxRank, "highest rank")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--patience", o.patience, "article: steps without improvement before deciding")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--improvement-threshold", o.improvementThreshold,
                  "article: a loss improves when below best − threshold")
      ->capture_default_str();
  cmd->add_option("--history-length", o.historyLength, "article: losses kept")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--increase-factor", o.increaseFactor, "rank growth factor on a plateau")
      ->capture_default_str();
  cmd->add_option("--decrease-factor", o.decreaseFactor,
                  "article: rank shrink factor on oscillation")
      ->capture_default_str();
  auto& s = args->slope;
  cmd->add_option("--window", s.window, "slope: losses per fit (>= 4), also the cool-down")
      ->capture_default_str();
  cmd->add_option("--min-relative-improvement", s.minRelativeImprovement,
                  "slope: improvement over a window, relative to the loss, that still counts")
      ->capture_default_str();
  cmd->add_option("--t-critical", s.tCritical, "slope: confidence multiplier on the slope's error")
      ->capture_default_str();
  cmd->callback([args] { run(*args); });
}

}  // namespace lora::cli
