// `lora inspect DIR`: per module of a PEFT adapter, its shape, rank, alpha, scaling and the
// spectrum of s·B·A (computed from the factors): σ_1, energy ranks, entropy effective rank; with
// --plot, a chart of the spectra and their cumulative energy.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/io/plot.hpp"
#include "lora/linalg/spectrum.hpp"
#include "outputs.hpp"

namespace lora::cli {
namespace {

namespace fs = std::filesystem;

struct InspectArgs {
  std::string dir;
  std::string plot;
  bool force = false;
  CommonOptions common;
};

struct ModuleStats {
  double sigma1 = 0;
  Eigen::Index energy90 = 0, energy95 = 0, energy99 = 0;
  double entropyRank = 0;
  double frobenius = 0;
};

constexpr std::size_t kMaxPlotted = 12;

// Two panels: σ_i against i for each module (log y), with each module's 90/95/99 % energy ranks
// marked on its curve; and the cumulative energy share against k, with the 0.90/0.95/0.99 lines.
// Modules whose s·B·A is zero have nothing to draw; beyond kMaxPlotted modules, those with the
// largest σ_1 are drawn.
std::vector<io::Panel> spectrumPanels(const PeftAdapterFile& file,
                                      const std::vector<Eigen::VectorXd>& spectra,
                                      const std::vector<ModuleStats>& stats) {
  const auto& modules = file.modules();
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < modules.size(); ++i)
    if (stats[i].sigma1 > 0) order.push_back(i);
  const std::size_t nonzero = order.size();
  if (order.size() > kMaxPlotted) {
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return stats[a].sigma1 > stats[b].sigma1;
    });
    order.resize(kMaxPlotted);
  }
  std::sort(order.begin(), order.end());  // module order: the same colour in both panels

  std::vector<std::string> notes;
  if (nonzero > kMaxPlotted)
    notes.push_back(fmt::format("the {} of {} modules with the largest σ1", kMaxPlotted, nonzero));
  if (nonzero < modules.size())
    notes.push_back(fmt::format("{} with s·B·A = 0 left out", modules.size() - nonzero));
  // One note a line: the plot area is narrow (the key is beside it).
  const std::string which = notes.empty() ? "" : fmt::format("\n({})", fmt::join(notes, ";\n"));
  io::Panel sigma{
      "singular values of s·B·A" + which, "index i", "singular value σ_i", false, true, {},
      io::KeyPosition::OutsideRight};
  io::Panel energy{"cumulative energy of the spectra", "k", "Σ_{i≤k} σ_i² / Σ σ²", false, false, {},
                   io::KeyPosition::BottomRight};
  const double levels[3] = {0.90, 0.95, 0.99};
  io::Series marks[3], energyMarks[3];
  Eigen::Index longest = 1;
  for (std::size_t i : order) {
    const Eigen::VectorXd& s = spectra[i];
    io::Series curve{modules[i].name, {}, {}, io::SeriesStyle::LinesPoints};
    io::Series share{modules[i].name, {}, {}, io::SeriesStyle::Lines, false};
    const double total = s.squaredNorm();
    double running = 0;
    for (Eigen::Index k = 0; k < s.size(); ++k) {
      running += s(k) * s(k);
      curve.x.push_back(static_cast<double>(k + 1));
      curve.y.push_back(s(k));
      share.x.push_back(static_cast<double>(k + 1));
      share.y.push_back(running / total);
    }
    longest = std::max(longest, s.size());
    const ModuleStats& st = stats[i];
    const Eigen::Index ranks[3] = {st.energy90, st.energy95, st.energy99};
    for (int l = 0; l < 3; ++l) {
      const Eigen::Index k = std::clamp<Eigen::Index>(ranks[l], 1, s.size());
      marks[l].x.push_back(static_cast<double>(k));
      marks[l].y.push_back(s(k - 1));
      energyMarks[l].x.push_back(static_cast<double>(k));
      energyMarks[l].y.push_back(share.y[static_cast<std::size_t>(k - 1)]);
    }
    sigma.series.push_back(std::move(curve));
    energy.series.push_back(std::move(share));
  }
  if (order.empty()) return {sigma, energy};  // nothing to mark: both panels say "no data"
  for (int l = 0; l < 3; ++l) {
    const int percent = static_cast<int>(levels[l] * 100 + 0.5);
    marks[l].title = fmt::format("{} % energy rank", percent);
    marks[l].style = io::SeriesStyle::Points;
    sigma.series.push_back(marks[l]);
    energy.series.push_back(io::Series{fmt::format("{} %", percent),
                                       {1.0, static_cast<double>(longest)},
                                       {levels[l], levels[l]},
                                       io::SeriesStyle::Reference});
  }
  for (int l = 0; l < 3; ++l) {
    energyMarks[l].title = marks[l].title;
    energyMarks[l].style = io::SeriesStyle::Points;
    energyMarks[l].inKey = false;
    energy.series.push_back(energyMarks[l]);
  }
  return {sigma, energy};
}

void printTable(const InspectArgs& a, const PeftAdapterFile& file,
                const std::vector<ModuleStats>& stats, Eigen::Index totalParams,
                Eigen::Index totalRank) {
  const auto& modules = file.modules();
  const AdapterConfig& cfg = file.config();

  if (file.isKohya()) {
    fmt::print("adapter {} (kohya LoRA): {} module{}, {} factors, scaling alpha / r\n", a.dir,
               modules.size(), modules.size() == 1 ? "" : "s", file.dtypeLabel());
  } else if (file.isGguf()) {
    fmt::print(
        "adapter {} (GGUF, {}): {} module{}, {} factors, alpha / r as llama.cpp applies it\n",
        a.dir, file.ggufArchitecture()->name, modules.size(), modules.size() == 1 ? "" : "s",
        file.dtypeLabel());
  } else {
    fmt::print(
        "adapter {}: {} module{}, {} factors, use_rslora {}, use_dora {}, init_lora_weights {}\n",
        a.dir, modules.size(), modules.size() == 1 ? "" : "s", file.dtypeLabel(), cfg.useRslora,
        cfg.useDora, cfg.initLoraWeights);
  }
  std::vector<std::string> header = {"module", "out", "in",  "rank", "alpha",    "scaling",
                                     "sigma1", "e90", "e95", "e99",  "eff.rank", "params"};
  if (file.isKohya()) header.insert(header.begin() + 1, "kind");
  Table table(std::move(header));
  for (std::size_t i = 0; i < modules.size(); ++i) {
    const auto& m = modules[i];
    const ModuleStats& s = stats[i];
    std::vector<std::string> row = {m.name,
                                    std::to_string(m.out),
                                    std::to_string(m.in),
                                    std::to_string(m.rank),
                                    num(m.alpha),
                                    num(file.scaling(m)),
                                    num(s.sigma1),
                                    std::to_string(s.energy90),
                                    std::to_string(s.energy95),
                                    std::to_string(s.energy99),
                                    fmt::format("{:.2f}", s.entropyRank),
                                    std::to_string(file.parameterCount(m))};
    if (file.isKohya()) {
      // A conv module's in is channels·kh·kw (the columns of its delta), shown as such.
      row.insert(row.begin() + 1, m.kernelH > 0 ? fmt::format("conv {}x{}", m.kernelH, m.kernelW)
                                                : std::string("linear"));
      if (m.kernelH > 0)
        row[3] = fmt::format("{}·{}·{}", m.in / (m.kernelH * m.kernelW), m.kernelH, m.kernelW);
    }
    table.add(std::move(row));
  }
  table.print(stdout);
  fmt::print("total: {} module{}, rank sum {}, {} parameters, {} bytes on disk\n", modules.size(),
             modules.size() == 1 ? "" : "s", totalRank, totalParams, file.fileBytes());
  fmt::print(
      "e90/e95/e99: smallest rank keeping 90/95/99% of the energy Σσ² of s·B·A; "
      "eff.rank: entropy effective rank\n");
}

void run(const CLI::App* cmd, const InspectArgs& a) {
  if (!a.plot.empty()) {
    io::requirePlotFile(a.plot);
    // The chart, or its data (FILE.csv) where gnuplot is missing: either may be written.
    checkOutputFile("inspect", "--plot", a.plot, adapterInputs(a.dir), a.force);
    checkOutputFile("inspect", "--plot's data file", a.plot + ".csv", adapterInputs(a.dir),
                    a.force);
  }
  const unsigned threads = threadCount(cmd, a.common);
  const PeftAdapterFile file =
      isKohyaFile(a.dir) ? PeftAdapterFile::openKohya(a.dir) : PeftAdapterFile::open(a.dir);
  const auto& modules = file.modules();
  std::vector<ModuleStats> stats(modules.size());
  std::vector<Eigen::VectorXd> spectra(a.plot.empty() ? 0 : modules.size());
  {
    io::Progress progress("inspect", modules.size(), a.common.quiet);
    parallelFor(
        modules.size(), threads,
        [&](std::size_t i) {
          const Eigen::VectorXd sigma = moduleSpectrum(file, modules[i]);
          ModuleStats& s = stats[i];
          s.sigma1 = sigma(0);
          s.energy90 = linalg::energyRank(sigma, 0.90);
          s.energy95 = linalg::energyRank(sigma, 0.95);
          s.energy99 = linalg::energyRank(sigma, 0.99);
          s.entropyRank = linalg::entropyEffectiveRank(sigma);
          s.frobenius = sigma.norm();
          if (!spectra.empty()) spectra[i] = sigma;
        },
        &progress);
  }

  const AdapterConfig& cfg = file.config();
  Eigen::Index totalParams = 0, totalRank = 0;
  for (const auto& m : modules) {
    totalParams += file.parameterCount(m);
    totalRank += m.rank;
  }

  if (!a.plot.empty()) {  // before stdout, so that a failure leaves stdout empty
    const auto written = io::plotOrCsv(spectrumPanels(file, spectra, stats), a.plot);
    fmt::print(stderr, "wrote {}\n", written.string());
  }

  if (a.common.json) {
    nlohmann::ordered_json j;
    j["adapter"] = a.dir;
    j["format"] = file.isKohya() ? "kohya" : file.isGguf() ? "gguf" : "peft";
    if (file.isGguf()) j["arch"] = std::string(file.ggufArchitecture()->name);
    j["dtype"] = std::string(file.dtypeLabel());
    if (!file.isKohya()) {
      j["use_rslora"] = cfg.useRslora;
      j["use_dora"] = cfg.useDora;
      j["init_lora_weights"] = cfg.initLoraWeights;
    }
    j["modules"] = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < modules.size(); ++i) {
      const auto& m = modules[i];
      const ModuleStats& s = stats[i];
      nlohmann::ordered_json e;
      e["name"] = m.name;
      if (file.isKohya()) {
        e["kind"] = m.kernelH > 0 ? "conv" : "linear";
        if (m.kernelH > 0) {
          e["kernel"] = {m.kernelH, m.kernelW};
          e["channels_in"] = m.in / (m.kernelH * m.kernelW);
        }
        e["has_alpha"] = !file.kohya()->modules[i].keyAlpha.empty();
      }
      e["out"] = m.out;
      e["in"] = m.in;
      e["rank"] = m.rank;
      e["alpha"] = m.alpha;
      e["scaling"] = file.scaling(m);
      e["sigma1"] = s.sigma1;
      e["frobenius"] = s.frobenius;
      e["energy_rank_90"] = s.energy90;
      e["energy_rank_95"] = s.energy95;
      e["energy_rank_99"] = s.energy99;
      e["entropy_effective_rank"] = s.entropyRank;
      e["params"] = file.parameterCount(m);
      j["modules"].push_back(std::move(e));
    }
    j["totals"] = {{"modules", modules.size()},
                   {"rank", totalRank},
                   {"params", totalParams},
                   {"file_bytes", file.fileBytes()}};
    fmt::print("{}\n", j.dump(2));
  } else {
    printTable(a, file, stats, totalParams, totalRank);
  }
}

}  // namespace

void addInspect(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand(
      "inspect",
      "Per module of a PEFT adapter (or GGUF adapter, or kohya Stable Diffusion LoRA): shape, "
      "rank, alpha, scaling, and the spectrum of s·B·A (σ1, energy ranks at 0.9/0.95/0.99, "
      "entropy effective rank), computed from the factors.");
  cmd->add_option("DIR", args->dir,
                  "PEFT adapter folder, GGUF adapter file or kohya LoRA file (.safetensors)")
      ->required();
  addForceFlag(cmd, args->force);
  cmd->add_option("--plot", args->plot,
                  "also draw the spectra σ_i of s·B·A and their cumulative energy, with the "
                  "90/95/99% energy ranks marked, into FILE (.png or .svg) with gnuplot (at most "
                  "12 modules: those with the largest σ1); without gnuplot, the data goes to "
                  "FILE.csv");
  addCommonOptions(cmd, args->common, true);
  cmd->callback([cmd, args] { run(cmd, *args); });
}

}  // namespace lora::cli
