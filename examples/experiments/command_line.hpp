#pragma once
// The command-line options both experiment programs share (CLI11), and what they imply.

#include <cstdint>
#include <numeric>
#include <string>

#include <CLI/CLI.hpp>

#include "mlp.hpp"
#include "studies.hpp"

namespace lora::experiments {

/// What the shared options set.
struct CommonCommandLine {
  int seeds = 3;
  int pretrainSteps = 1000;
  std::string out;
  AdaptOptions adapt;
  StudyOptions study;

  /// Adds --seeds, --steps, --pretrain-steps, --lr, --only, --out and --quiet.
  void addTo(CLI::App& app) {
    app.add_option("--seeds", seeds, "seeds per strategy (1..N)")->check(CLI::PositiveNumber);
    app.add_option("--steps", adapt.steps, "adaptation steps per run")->check(CLI::PositiveNumber);
    app.add_option("--pretrain-steps", pretrainSteps, "pretraining steps")
        ->check(CLI::PositiveNumber);
    app.add_option("--lr", study.lr, "AdamW learning rate of the LoRA strategies");
    app.add_option("--only", study.only, "studies to run: comparison, rslora, pissa")
        ->delimiter(',')
        ->check(CLI::IsMember({"comparison", "rslora", "pissa"}));
    app.add_option("--out", out, "folder for report.txt, report.json and the charts ('' : none)");
    app.add_flag("--quiet", adapt.quiet, "no progress bars");
  }
  /// After parsing: seeds 1..N and the output folder go into the study options.
  void finish() {
    study.seeds.resize(static_cast<std::size_t>(seeds));
    std::iota(study.seeds.begin(), study.seeds.end(), std::uint64_t{1});
    study.out = out;
  }
};

}  // namespace lora::experiments
