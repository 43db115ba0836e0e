#pragma once
/// \file experiment_json.hpp
/// \brief The experiment runner's results as JSON (lora/analysis/experiment.hpp): a Strategy, a
/// Spread and a whole ExperimentReport. Compiled in liblorapp (src/analysis/experiment_json.cpp);
/// only the callers that write JSON include this header and nlohmann/json.
///
/// \code
/// const nlohmann::json j = lora::analysis::toJson(report);
/// std::ofstream("report.json") << j.dump(1);
/// \endcode

#include <nlohmann/json.hpp>

#include "lora/analysis/experiment.hpp"

namespace lora::analysis {

/// The strategy as JSON (the keys are the field names).
nlohmann::json toJson(const Strategy& s);

/// A spread as {"mean", "std", "min", "max", "n"}.
nlohmann::json toJson(const Spread& s);

/// \brief The whole report as JSON: the ranking with every spread, and every run with its
/// curves (train loss per step, held-out loss and accuracy per evaluation, ranks over time).
nlohmann::json toJson(const ExperimentReport& report);

}  // namespace lora::analysis
