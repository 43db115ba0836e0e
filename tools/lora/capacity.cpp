// `lora capacity`: what each rank buys on an out x in layer (the article's section 1.1).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "lora/analysis/rank_capacity.hpp"
#include "lora/io/plot.hpp"
#include "outputs.hpp"

namespace lora::cli {
namespace {

struct CapacityArgs {
  Eigen::Index out = 0, in = 0;
  std::vector<Eigen::Index> ranks{1, 2, 4, 8, 16, 32, 64, 128, 256};  // the article's list
  bool json = false;
  std::string plot;
  bool force = false;
};

void run(const CapacityArgs& a) {
  if (!a.plot.empty()) {
    io::requirePlotFile(a.plot);
    checkOutputFile("capacity", "--plot", a.plot, {}, a.force);
    checkOutputFile("capacity", "--plot's data file", a.plot + ".csv", {}, a.force);
  }
  const analysis::RankCapacity cap = analysis::rankCapacity(a.out, a.in, a.ranks);
  if (a.json) {
    nlohmann::ordered_json j;
    j["out"] = cap.out;
    j["in"] = cap.in;
    j["full_parameters"] = cap.fullParameters;
    j["ranks"] = nlohmann::ordered_json::array();
    for (const auto& r : cap.rows)
      j["ranks"].push_back({{"rank", r.rank},
                            {"parameters", r.parameters},
                            {"compression_ratio", r.compressionRatio},
                            {"capacity", r.capacity}});
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("layer {} x {} (out x in): {} parameters when trained in full\n", cap.out, cap.in,
               cap.fullParameters);
    Table table({"rank", "parameters", "compression", "capacity"});
    std::vector<std::string> notes;
    for (const auto& r : cap.rows) {
      if (r.capacity < r.rank)
        notes.push_back(
            fmt::format("r = {} is above min(out, in) = {}: it adds parameters, not "
                        "capacity",
                        r.rank, r.capacity));
      else if (r.compressionRatio < 1.0)
        notes.push_back(fmt::format("r = {} stores more numbers than the full matrix", r.rank));
      table.add({std::to_string(r.rank), std::to_string(r.parameters),
                 fmt::format("{:.1f}x", r.compressionRatio), std::to_string(r.capacity)});
    }
    table.print(stdout);
    for (const std::string& note : notes) fmt::print("note: {}\n", note);
    fmt::print(
        "parameters r·(out + in); compression out·in / (r·(out + in)); capacity "
        "min(r, out, in), the most singular values s·B·A can have\n");
  }
  if (!a.plot.empty()) {
    io::Series params{"r·(out + in)", {}, {}}, ratio{"out·in / (r·(out + in))", {}, {}},
        capacity{"min(r, out, in)", {}, {}};
    for (const auto& r : cap.rows) {
      const double x = static_cast<double>(r.rank);
      params.x.push_back(x);
      params.y.push_back(static_cast<double>(r.parameters));
      ratio.x.push_back(x);
      ratio.y.push_back(r.compressionRatio);
      capacity.x.push_back(x);
      capacity.y.push_back(static_cast<double>(r.capacity));
    }
    const std::string shape = fmt::format("{} x {}", cap.out, cap.in);
    const auto written = io::plotOrCsv(
        {io::Panel{"LoRA parameters, " + shape, "rank r", "parameters", true, true, {params}},
         io::Panel{"compression ratio, " + shape,
                   "rank r",
                   "full / LoRA parameters",
                   true,
                   true,
                   {ratio}},
         io::Panel{"capacity, " + shape, "rank r", "max singular values", true, false, {capacity}}},
        a.plot);
    fmt::print(stderr, "wrote {}\n", written.string());
  }
}

}  // namespace

void addCapacity(CLI::App& app) {
  auto args = std::make_shared<CapacityArgs>();
  CLI::App* cmd = app.add_subcommand(
      "capacity",
      "What each LoRA rank buys on an out x in layer: parameters r·(out + in), compression "
      "out·in / (r·(out + in)) and capacity min(r, out, in) (the article's section 1.1).");
  cmd->add_option("--out", args->out, "output features of the layer")->required();
  cmd->add_option("--in", args->in, "input features of the layer")->required();
  cmd->add_option("--ranks", args->ranks, "ranks to tabulate (default 1,2,4,...,256)")
      ->delimiter(',');
  cmd->add_flag("--json", args->json, "JSON on stdout instead of a table");
  addForceFlag(cmd, args->force);
  cmd->add_option("--plot", args->plot,
                  "also draw the three curves into FILE (.png or .svg) with gnuplot; without "
                  "gnuplot, the data goes to FILE.csv");
  cmd->callback([args] { run(*args); });
}

}  // namespace lora::cli
