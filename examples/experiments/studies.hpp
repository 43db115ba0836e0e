#pragma once
// The three studies both experiment programs run on their task (digits_experiment,
// charlm_experiment), with their text, JSON and charts:
// - comparison: the article's five strategies (section 4.1) plus PiSSA, OLoRA, rsLoRA at high
//   rank and full fine-tuning, ranked as the article's report does;
// - rslora: ranks x {alpha/r, alpha/sqrt(r)} at a fixed alpha and learning rate (Kalajdzievski,
//   "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA", 2023: with alpha/r higher
//   ranks learn no better; with alpha/sqrt(r) they do);
// - pissa: PiSSA against PEFT's default init at the same rank (Meng, Wang & Zhang, "PiSSA:
//   Principal Singular Values and Singular Vectors Adaptation of Large Language Models", 2024:
//   the loss falls faster early on).

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lora/analysis/experiment.hpp"
#include "mlp.hpp"

namespace lora::experiments {

struct StudyOptions {
  std::string task;  ///< names the task in reports
  std::vector<std::uint64_t> seeds{1, 2, 3};
  double lr = 2e-3;      ///< AdamW learning rate of every LoRA strategy
  double fullLr = 1e-3;  ///< full fine-tuning's learning rate
  double alpha = 16;     ///< lora_alpha of every strategy
  std::vector<Index> rsloraRanks{4, 16, 64};
  Index pissaRank = 16;
  std::vector<std::string> only;  ///< studies to run: comparison, rslora, pissa (empty: all)
  analysis::ReportOptions report;
  std::filesystem::path out;  ///< report.txt, report.json and the charts go here ("" : nowhere)
};

/// The comparison's strategies, in the article's order, then PiSSA, OLoRA, rsLoRA, full FT.
std::vector<analysis::Strategy> comparisonStrategies(const StudyOptions& options);

/// Runs the chosen studies on \p task, printing each study's text on stdout as it finishes;
/// writes report.txt, report.json and PNG charts to options.out. Returns the JSON.
nlohmann::json runStudies(AdaptationTask& task, const StudyOptions& options,
                          const nlohmann::json& header, const std::string& headerText);

/// Mean over seeds of the training loss of \p strategy, per step.
std::vector<double> meanTrainLoss(const analysis::ExperimentReport& report,
                                  const std::string& strategy);

/// Mean of the training losses of steps [from, to) over the runs of \p strategy, with the
/// standard deviation of the per-run means.
analysis::Spread windowLoss(const analysis::ExperimentReport& report, const std::string& strategy,
                            std::size_t from, std::size_t to);

}  // namespace lora::experiments
