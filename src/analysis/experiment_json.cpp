#include "lora/analysis/experiment_json.hpp"

#include <string>

namespace lora::analysis {

nlohmann::json toJson(const Strategy& s) {
  return {{"name", s.name},
          {"rank", s.rank},
          {"alpha", s.alpha},
          {"scaling", std::string(toString(s.scaling))},
          {"init", s.init},
          {"selector", s.selector},
          {"max_rank", s.maxRank},
          {"full_fine_tune", s.fullFineTune},
          {"optimizer",
           {{"rule", s.optimizer.rule},
            {"lr", s.optimizer.lr},
            {"weight_decay", s.optimizer.weightDecay},
            {"momentum", s.optimizer.momentum},
            {"lora_plus_ratio", s.optimizer.loraPlusRatio},
            {"max_grad_norm", s.optimizer.maxGradNorm}}}};
}

nlohmann::json toJson(const Spread& s) {
  return {{"mean", s.mean}, {"std", s.stddev}, {"min", s.min}, {"max", s.max}, {"n", s.count}};
}

nlohmann::json toJson(const ExperimentReport& report) {
  nlohmann::json j;
  j["task"] = report.task;
  j["loss_name"] = report.options.lossName;
  j["loss_scale"] = report.options.lossScale;
  j["best_strategy"] = report.bestStrategy;
  j["most_efficient_strategy"] = report.mostEfficientStrategy;
  j["ranking"] = nlohmann::json::array();
  for (const StrategySummary& s : report.ranking)
    j["ranking"].push_back({{"strategy", toJson(s.strategy)},
                            {"final_accuracy", toJson(s.finalAccuracy)},
                            {"best_accuracy", toJson(s.bestAccuracy)},
                            {"final_loss", toJson(s.finalLoss)},
                            {"parameters", toJson(s.parameters)},
                            {"convergence_step", toJson(s.convergenceStep)},
                            {"wall_seconds", toJson(s.wallSeconds)},
                            {"converged_runs", s.convergedRuns},
                            {"runs", s.runs}});
  j["runs"] = nlohmann::json::array();
  for (const RunRecord& r : report.runs) {
    nlohmann::json ranks = nlohmann::json::array();
    for (const RankPoint& p : r.ranks) ranks.push_back({{"step", p.step}, {"ranks", p.ranks}});
    j["runs"].push_back({{"strategy", r.strategy},
                         {"seed", r.seed},
                         {"train_loss", r.trainLoss},
                         {"eval_steps", r.evalSteps},
                         {"eval_loss", r.evalLoss},
                         {"eval_accuracy", r.evalAccuracy},
                         {"ranks", ranks},
                         {"trainable_parameters", r.trainableParameters},
                         {"wall_seconds", r.wallSeconds},
                         {"convergence_step", r.convergenceStep}});
  }
  return j;
}

}  // namespace lora::analysis
