// `lora inspect DIR`: per module of a PEFT adapter, its shape, rank, alpha, scaling and the
// spectrum of s·B·A (computed from the factors): σ_1, energy ranks, entropy effective rank.

#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/linalg/spectrum.hpp"

namespace lora::cli {
namespace {

struct InspectArgs {
  std::string dir;
  CommonOptions common;
};

struct ModuleStats {
  double sigma1 = 0;
  Eigen::Index energy90 = 0, energy95 = 0, energy99 = 0;
  double entropyRank = 0;
  double frobenius = 0;
};

void run(const CLI::App* cmd, const InspectArgs& a) {
  const unsigned threads = threadCount(cmd, a.common);
  const PeftAdapterFile file = PeftAdapterFile::open(a.dir);
  const auto& modules = file.modules();
  std::vector<ModuleStats> stats(modules.size());
  {
    Progress progress("inspect", modules.size(), a.common.quiet);
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
        },
        &progress);
  }

  const AdapterConfig& cfg = file.config();
  Eigen::Index totalParams = 0, totalRank = 0;
  for (const auto& m : modules) {
    totalParams += file.parameterCount(m);
    totalRank += m.rank;
  }

  if (a.common.json) {
    nlohmann::ordered_json j;
    j["adapter"] = a.dir;
    j["dtype"] = std::string(dtypeName(file.dtype()));
    j["use_rslora"] = cfg.useRslora;
    j["use_dora"] = cfg.useDora;
    j["init_lora_weights"] = cfg.initLoraWeights;
    j["modules"] = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < modules.size(); ++i) {
      const auto& m = modules[i];
      const ModuleStats& s = stats[i];
      nlohmann::ordered_json e;
      e["name"] = m.name;
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
    return;
  }

  fmt::print(
      "adapter {}: {} module{}, {} factors, use_rslora {}, use_dora {}, init_lora_weights {}\n",
      a.dir, modules.size(), modules.size() == 1 ? "" : "s", dtypeName(file.dtype()), cfg.useRslora,
      cfg.useDora, cfg.initLoraWeights);
  Table table({"module", "out", "in", "rank", "alpha", "scaling", "sigma1", "e90", "e95", "e99",
               "eff.rank", "params"});
  for (std::size_t i = 0; i < modules.size(); ++i) {
    const auto& m = modules[i];
    const ModuleStats& s = stats[i];
    table.add({m.name, std::to_string(m.out), std::to_string(m.in), std::to_string(m.rank),
               num(m.alpha), num(file.scaling(m)), num(s.sigma1), std::to_string(s.energy90),
               std::to_string(s.energy95), std::to_string(s.energy99),
               fmt::format("{:.2f}", s.entropyRank), std::to_string(file.parameterCount(m))});
  }
  table.print(stdout);
  fmt::print("total: {} module{}, rank sum {}, {} parameters, {} bytes on disk\n", modules.size(),
             modules.size() == 1 ? "" : "s", totalRank, totalParams, file.fileBytes());
  fmt::print(
      "e90/e95/e99: smallest rank keeping 90/95/99% of the energy Σσ² of s·B·A; "
      "eff.rank: entropy effective rank\n");
}

}  // namespace

void addInspect(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand(
      "inspect",
      "Per module of a PEFT adapter: shape, rank, alpha, scaling, and the spectrum of s·B·A "
      "(σ1, energy ranks at 0.9/0.95/0.99, entropy effective rank), computed from the factors.");
  cmd->add_option("DIR", args->dir, "PEFT adapter folder")->required();
  addCommonOptions(cmd, args->common, true);
  cmd->callback([cmd, args] { run(cmd, *args); });
}

}  // namespace lora::cli
