#include "studies.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "lora/analysis/experiment_json.hpp"
#include "lora/error.hpp"
#include "lora/io/atomic_file.hpp"
#include "lora/io/plot.hpp"
#include "lora/linalg/spectrum.hpp"

namespace lora::experiments {
namespace {

using analysis::ExperimentReport;
using analysis::RunRecord;
using analysis::Spread;
using analysis::Strategy;

bool wanted(const StudyOptions& o, const std::string& study) {
  return o.only.empty() || std::find(o.only.begin(), o.only.end(), study) != o.only.end();
}

Strategy lora(std::string name, Index rank, std::string init, const StudyOptions& o) {
  Strategy s;
  s.name = std::move(name);
  s.rank = rank;
  s.alpha = o.alpha;
  s.init = std::move(init);
  s.optimizer.lr = o.lr;
  return s;
}

// Moving average of v over `window` steps (shorter at the start).
std::vector<double> smooth(const std::vector<double>& v, std::size_t window) {
  std::vector<double> out(v.size());
  double sum = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    sum += v[i];
    if (i >= window) sum -= v[i - window];
    out[i] = sum / static_cast<double>(std::min(i + 1, window));
  }
  return out;
}

std::vector<double> steps(std::size_t n, std::size_t first = 1) {
  std::vector<double> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<double>(i + first);
  return x;
}

// Whether mean a is below mean b by more than twice the standard error of the difference.
// Needs two or more runs of each (no spread otherwise).
bool clearlyBelow(const Spread& a, const Spread& b) {
  if (a.count < 2 || b.count < 2) return false;
  const double se =
      std::sqrt(a.stddev * a.stddev / static_cast<double>(std::max<std::size_t>(a.count, 1)) +
                b.stddev * b.stddev / static_cast<double>(std::max<std::size_t>(b.count, 1)));
  return b.mean - a.mean > 2 * se;
}

void plotTo(const StudyOptions& o, const std::vector<io::Panel>& panels, const std::string& name) {
  if (o.out.empty()) return;
  io::plotOrCsv(panels, o.out / name);
}

std::string spreadOf(const Spread& s, double scale) {
  return fmt::format("{:.3f} ± {:.3f}", s.mean * scale, s.stddev * scale);
}

// ---- comparison ----------------------------------------------------------------------------

void comparisonCharts(const ExperimentReport& report, const AdaptationTask& task,
                      const StudyOptions& o) {
  const double scale = report.options.lossScale;
  io::Panel loss{"training loss (moving average of 20 steps, mean over seeds)",
                 "step",
                 report.options.lossName,
                 false,
                 true,
                 {}};
  io::Panel acc{"held-out accuracy (mean over seeds)", "step", "accuracy", false, false, {}};
  loss.key = io::KeyPosition::OutsideRight;
  io::Panel params{"parameters vs final accuracy",
                   "trainable parameters",
                   "final held-out accuracy",
                   true,
                   false,
                   {}};
  params.key = io::KeyPosition::OutsideRight;
  for (const auto& s : report.ranking) {
    std::vector<double> l = smooth(meanTrainLoss(report, s.strategy.name), 20);
    for (double& v : l) v *= scale;
    loss.series.push_back({s.strategy.name, steps(l.size()), l, io::SeriesStyle::Lines});
    auto [x, y] = analysis::meanCurve(report, s.strategy.name, &RunRecord::evalAccuracy);
    acc.series.push_back({s.strategy.name, x, y, io::SeriesStyle::Lines, false});
    params.series.push_back({s.strategy.name,
                             {s.parameters.mean},
                             {s.finalAccuracy.mean},
                             io::SeriesStyle::LinesPoints});
  }
  plotTo(o, {acc, loss}, "comparison_curves.png");
  plotTo(o, {params}, "params_vs_accuracy.png");

  // Ranks over time of the strategies with a selector: one panel per layer, a line per seed.
  std::vector<io::Panel> ranks;
  for (const RunRecord& r : report.runs) {
    const Strategy* s = nullptr;
    for (const auto& sum : report.ranking)
      if (sum.strategy.name == r.strategy) s = &sum.strategy;
    if (s == nullptr || s->selector == "none" || r.ranks.empty()) continue;
    for (std::size_t layer = 0; layer < r.ranks.front().ranks.size(); ++layer) {
      if (ranks.size() <= layer)
        ranks.push_back({fmt::format("{}: layer {} rank", r.strategy, layer),
                         "step",
                         "rank",
                         false,
                         false,
                         {},
                         io::KeyPosition::TopRight});
      io::Series line{fmt::format("seed {}", r.seed),
                      {},
                      {},
                      io::SeriesStyle::Lines,
                      layer + 1 == r.ranks.front().ranks.size()};
      for (std::size_t k = 0; k < r.ranks.size(); ++k) {
        const double rank = static_cast<double>(r.ranks[k].ranks[layer]);
        if (k > 0) {  // a step function
          line.x.push_back(static_cast<double>(r.ranks[k].step));
          line.y.push_back(line.y.back());
        }
        line.x.push_back(static_cast<double>(r.ranks[k].step));
        line.y.push_back(rank);
      }
      line.x.push_back(static_cast<double>(r.trainLoss.size()));
      line.y.push_back(line.y.back());
      ranks[layer].series.push_back(std::move(line));
    }
  }
  if (!ranks.empty()) plotTo(o, ranks, "rank_over_time.png");

  // Spectra of s·B·A at the end (first seed), per layer, with each 90% energy cut-off marked.
  std::vector<io::Panel> spectra;
  std::vector<io::Series> cuts;
  std::size_t layerCount = 0;
  for (const auto& [name, layers] : task.spectra())
    layerCount = std::max(layerCount, layers.size());
  for (std::size_t l = 0; l < layerCount; ++l) {
    spectra.push_back(
        {fmt::format("layer {}: σ of s·B·A, first seed", l),
         "i",
         "σ_i",
         false,
         true,
         {},
         l + 1 == layerCount ? io::KeyPosition::OutsideRight : io::KeyPosition::TopRight});
    cuts.push_back({"90% energy rank", {}, {}, io::SeriesStyle::Points, l + 1 == layerCount});
  }
  for (const auto& [name, layers] : task.spectra()) {
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const Eigen::VectorXd& sigma = layers[l];
      const bool drawn = sigma.size() > 0 && sigma(0) > 0;
      io::Series line{name,
                      drawn ? steps(static_cast<std::size_t>(sigma.size())) : std::vector<double>{},
                      drawn ? std::vector<double>(sigma.data(), sigma.data() + sigma.size())
                            : std::vector<double>{},
                      io::SeriesStyle::Lines, l + 1 == layers.size()};
      spectra[l].series.push_back(std::move(line));  // empty series keep the colours aligned
      if (!drawn) continue;
      const Index k = linalg::energyRank(sigma, 0.9);
      cuts[l].x.push_back(static_cast<double>(k));
      cuts[l].y.push_back(sigma(k - 1));
    }
  }
  for (std::size_t l = 0; l < spectra.size(); ++l) spectra[l].series.push_back(cuts[l]);
  if (!spectra.empty()) plotTo(o, spectra, "spectra.png");
}

std::string comparisonText(const ExperimentReport& report, const AdaptationTask& task) {
  std::string out = analysis::formatReport(report);
  out += "\nSummary table (mean ± std over seeds):\n\n";
  out += fmt::format(
      "| strategy | rank | params | final acc | best acc | final {} | converged at | s |\n",
      report.options.lossName);
  out += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& s : report.ranking)
    out += fmt::format(
        "| {} | {} | {:.0f} | {} | {} | {} | {:.0f} ({}/{}) | {:.2f} |\n", s.strategy.name,
        s.strategy.fullFineTune ? std::string("full") : fmt::format("{}", s.strategy.rank),
        s.parameters.mean, spreadOf(s.finalAccuracy, 1), spreadOf(s.bestAccuracy, 1),
        spreadOf(s.finalLoss, report.options.lossScale), s.convergenceStep.mean, s.convergedRuns,
        s.runs, s.wallSeconds.mean);
  const Metrics frozen = task.frozen();
  out += fmt::format("| frozen (no adaptation) | - | 0 | {:.3f} | - | {:.3f} | - | - |\n",
                     frozen.accuracy, frozen.loss * report.options.lossScale);
  return out;
}

// ---- rsLoRA ----------------------------------------------------------------------------------

std::string rsName(Index rank, ScalingMode mode) {
  return fmt::format("r{} {}", rank, mode == ScalingMode::RsLora ? "alpha/sqrt(r)" : "alpha/r");
}

std::string rsloraText(const ExperimentReport& report, const StudyOptions& o, std::size_t early) {
  const double scale = report.options.lossScale;
  const auto find = [&](const std::string& name) -> const analysis::StrategySummary& {
    for (const auto& s : report.ranking)
      if (s.strategy.name == name) return s;
    detail::fail("rsloraText", "expected strategy '{}' in the report", name);
  };
  std::string out = fmt::format(
      "rsLoRA study: alpha = {} fixed, AdamW lr {} for every rank; mean ± std over {} seeds\n\n",
      o.alpha, o.lr, o.seeds.size());
  out += fmt::format(
      "| rank | scaling | s | early train {} (steps 1-{}) | final held-out {} | final acc |\n",
      report.options.lossName, early, report.options.lossName);
  out += "| ---: | --- | ---: | ---: | ---: | ---: |\n";
  for (ScalingMode mode : {ScalingMode::Standard, ScalingMode::RsLora})
    for (Index r : o.rsloraRanks) {
      const auto& s = find(rsName(r, mode));
      out += fmt::format("| {} | {} | {:.3g} | {} | {} | {} |\n", r,
                         mode == ScalingMode::RsLora ? "alpha/sqrt(r)" : "alpha/r",
                         scalingFor(o.alpha, r, mode),
                         spreadOf(windowLoss(report, s.strategy.name, 0, early), scale),
                         spreadOf(s.finalLoss, scale), spreadOf(s.finalAccuracy, 1));
    }
  const Index lo = o.rsloraRanks.front(), hi = o.rsloraRanks.back();
  for (ScalingMode mode : {ScalingMode::Standard, ScalingMode::RsLora}) {
    const auto& a = find(rsName(lo, mode));
    const auto& b = find(rsName(hi, mode));
    const Spread ea = windowLoss(report, a.strategy.name, 0, early);
    const Spread eb = windowLoss(report, b.strategy.name, 0, early);
    out += fmt::format(
        "\n{}: rank {} vs rank {}: final {} {:.3f} vs {:.3f} ({}), early {} {:.3f} vs {:.3f} ({})",
        mode == ScalingMode::RsLora ? "alpha/sqrt(r)" : "alpha/r", hi, lo, report.options.lossName,
        b.finalLoss.mean * scale, a.finalLoss.mean * scale,
        clearlyBelow(b.finalLoss, a.finalLoss) ? "higher rank clearly better"
                                               : "higher rank not clearly better",
        report.options.lossName, eb.mean * scale, ea.mean * scale,
        clearlyBelow(eb, ea) ? "higher rank clearly faster" : "higher rank not clearly faster");
  }
  out +=
      "\n(\"clearly\": the means differ by more than twice the standard error of their "
      "difference)\n";
  return out;
}

void rsloraCharts(const ExperimentReport& report, const StudyOptions& o) {
  const double scale = report.options.lossScale;
  io::Panel final{"final held-out loss vs rank (alpha fixed)",
                  "rank",
                  report.options.lossName,
                  true,
                  false,
                  {}};
  io::Panel curves{"training loss (moving average of 20 steps)",
                   "step",
                   report.options.lossName,
                   false,
                   true,
                   {}};
  curves.key = io::KeyPosition::TopRight;
  for (ScalingMode mode : {ScalingMode::Standard, ScalingMode::RsLora}) {
    io::Series line{
        mode == ScalingMode::RsLora ? "alpha/sqrt(r) (rsLoRA)" : "alpha/r (standard)", {}, {}};
    for (Index r : o.rsloraRanks) {
      for (const auto& s : report.ranking)
        if (s.strategy.name == rsName(r, mode)) {
          line.x.push_back(static_cast<double>(r));
          line.y.push_back(s.finalLoss.mean * scale);
        }
      std::vector<double> l = smooth(meanTrainLoss(report, rsName(r, mode)), 20);
      for (double& v : l) v *= scale;
      curves.series.push_back({rsName(r, mode), steps(l.size()), l, io::SeriesStyle::Lines});
    }
    final.series.push_back(std::move(line));
  }
  plotTo(o, {final, curves}, "rslora.png");
}

// ---- PiSSA -------------------------------------------------------------------------------------

std::string pissaText(const ExperimentReport& report, const StudyOptions& o, std::size_t total) {
  const double scale = report.options.lossScale;
  const std::string def = fmt::format("r{} peft_default", o.pissaRank),
                    pissa = fmt::format("r{} pissa", o.pissaRank);
  std::string out = fmt::format(
      "PiSSA study: rank {}, alpha {}, AdamW lr {}; training {} averaged over step windows, mean ± "
      "std over {} seeds\n\n| steps | {} | {} | PiSSA clearly lower |\n| --- | ---: | ---: | --- "
      "|\n",
      o.pissaRank, o.alpha, o.lr, report.options.lossName, o.seeds.size(), def, pissa);
  std::vector<std::pair<std::size_t, std::size_t>> windows{
      {0, 10}, {10, 25}, {25, 50}, {50, 100}, {100, 200}};
  windows.emplace_back(total - std::min<std::size_t>(total, 50), total);
  for (auto [from, to] : windows) {
    if (to > total || from >= to) continue;
    const Spread a = windowLoss(report, def, from, to), b = windowLoss(report, pissa, from, to);
    out += fmt::format("| {}-{} | {} | {} | {} |\n", from + 1, to, spreadOf(a, scale),
                       spreadOf(b, scale),
                       o.seeds.size() < 2   ? "n/a (one seed)"
                       : clearlyBelow(b, a) ? "yes"
                                            : "no");
  }
  for (const auto& s : report.ranking)
    out += fmt::format("\n{}: final held-out {} {}, final accuracy {}", s.strategy.name,
                       report.options.lossName, spreadOf(s.finalLoss, scale),
                       spreadOf(s.finalAccuracy, 1));
  out += "\n";
  return out;
}

void pissaCharts(const ExperimentReport& report, const StudyOptions& o) {
  const double scale = report.options.lossScale;
  io::Panel early{"training loss, first 200 steps (mean over seeds)",
                  "step",
                  report.options.lossName,
                  false,
                  true,
                  {}};
  early.key = io::KeyPosition::TopRight;
  for (const auto& s : report.ranking) {
    std::vector<double> l = meanTrainLoss(report, s.strategy.name);
    l.resize(std::min<std::size_t>(l.size(), 200));
    for (double& v : l) v *= scale;
    early.series.push_back({s.strategy.name, steps(l.size()), l, io::SeriesStyle::Lines});
  }
  plotTo(o, {early}, "pissa.png");
}

}  // namespace

std::vector<double> meanTrainLoss(const ExperimentReport& report, const std::string& strategy) {
  std::vector<double> sum;
  std::size_t n = 0;
  for (const RunRecord& r : report.runs) {
    if (r.strategy != strategy) continue;
    if (sum.empty()) sum.assign(r.trainLoss.size(), 0.0);
    for (std::size_t i = 0; i < std::min(sum.size(), r.trainLoss.size()); ++i)
      sum[i] += r.trainLoss[i];
    ++n;
  }
  for (double& v : sum) v /= static_cast<double>(std::max<std::size_t>(n, 1));
  return sum;
}

Spread windowLoss(const ExperimentReport& report, const std::string& strategy, std::size_t from,
                  std::size_t to) {
  std::vector<double> means;
  for (const RunRecord& r : report.runs) {
    if (r.strategy != strategy) continue;
    const std::size_t end = std::min(to, r.trainLoss.size());
    if (from >= end) continue;
    double sum = 0;
    for (std::size_t i = from; i < end; ++i) sum += r.trainLoss[i];
    means.push_back(sum / static_cast<double>(end - from));
  }
  return Spread::of(means);
}

std::vector<Strategy> comparisonStrategies(const StudyOptions& o) {
  std::vector<Strategy> s{
      lora("article r4 default init", 4, "peft_default", o),
      lora("article r16 xavier", 16, "xavier", o),
      lora("article r32 kaiming", 32, "kaiming", o),
      lora("article r16 orthogonal", 16, "orthogonal", o),
      lora("article dynamic from r8", 8, "xavier", o),
      lora("r16 pissa", 16, "pissa", o),
      lora("r16 olora", 16, "olora", o),
      lora("r64 rslora", 64, "peft_default", o),
  };
  s[4].selector = "article_gradient";
  s[7].scaling = ScalingMode::RsLora;
  Strategy full;
  full.name = "full fine-tuning";
  full.fullFineTune = true;
  full.init = "-";
  full.optimizer.lr = o.fullLr;
  s.push_back(full);
  return s;
}

nlohmann::json runStudies(AdaptationTask& task, const StudyOptions& o, const nlohmann::json& header,
                          const std::string& headerText) {
  if (!o.out.empty()) std::filesystem::create_directories(o.out);
  nlohmann::json j = header;
  std::string text = headerText;
  fmt::print("{}\n", headerText);
  std::fflush(stdout);
  const auto emit = [&](const std::string& section) {
    fmt::print("{}\n", section);
    std::fflush(stdout);
    text += section + "\n";
  };
  const std::size_t total = static_cast<std::size_t>(task.options().steps);
  if (wanted(o, "comparison")) {
    const std::vector<Strategy> strategies = comparisonStrategies(o);
    const ExperimentReport r = analysis::runExperiment(o.task, strategies, o.seeds, task, o.report);
    emit(comparisonText(r, task));
    comparisonCharts(r, task, o);
    j["comparison"] = analysis::toJson(r);
  }
  if (wanted(o, "rslora")) {
    std::vector<Strategy> strategies;
    for (ScalingMode mode : {ScalingMode::Standard, ScalingMode::RsLora})
      for (Index r : o.rsloraRanks) {
        Strategy s = lora(rsName(r, mode), r, "peft_default", o);
        s.scaling = mode;
        strategies.push_back(s);
      }
    const ExperimentReport r =
        analysis::runExperiment(o.task + ", rsLoRA study", strategies, o.seeds, task, o.report);
    const std::size_t early = std::max<std::size_t>(total / 10, 1);
    emit(rsloraText(r, o, early));
    rsloraCharts(r, o);
    j["rslora"] = analysis::toJson(r);
    j["rslora"]["early_steps"] = early;
  }
  if (wanted(o, "pissa")) {
    const std::vector<Strategy> strategies{
        lora(fmt::format("r{} peft_default", o.pissaRank), o.pissaRank, "peft_default", o),
        lora(fmt::format("r{} pissa", o.pissaRank), o.pissaRank, "pissa", o)};
    const ExperimentReport r =
        analysis::runExperiment(o.task + ", PiSSA study", strategies, o.seeds, task, o.report);
    emit(pissaText(r, o, total));
    pissaCharts(r, o);
    j["pissa"] = analysis::toJson(r);
  }
  if (!o.out.empty()) {
    train::writeFileAtomically(o.out / "report.txt", text, "runStudies");
    train::writeFileAtomically(o.out / "report.json", j.dump(1), "runStudies");
    fmt::print(stderr, "wrote {}/report.txt, report.json and charts\n", o.out.string());
  }
  return j;
}

}  // namespace lora::experiments
