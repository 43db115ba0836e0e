#include "lora/rank/adalora_schedule.hpp"

#include <cmath>

#include "lora/error.hpp"

namespace lora::rank {

void AdaLoraSchedule::validate() const {
  constexpr const char* where = "AdaLoraSchedule::validate";
  if (initRank < 1 || targetRank < 1)
    detail::fail(where, "expected initRank and targetRank >= 1, got {} and {}", initRank,
                 targetRank);
  if (tinit < 0 || tfinal < 0)
    detail::fail(where, "expected tinit and tfinal >= 0, got {} and {}", tinit, tfinal);
  if (deltaT < 1) detail::fail(where, "expected deltaT >= 1, got {}", deltaT);
  if (modules < 1) detail::fail(where, "expected modules >= 1, got {}", modules);
  if (totalStep - tfinal - tinit <= 0)
    detail::fail(where,
                 "expected totalStep > tinit + tfinal (a budgeting phase), got totalStep {} with "
                 "tinit {} and tfinal {}",
                 totalStep, tinit, tfinal);
}

AdaLoraSchedule::Step AdaLoraSchedule::at(Index step) const {
  validate();
  if (step < 0) detail::fail("AdaLoraSchedule::at", "expected a step >= 0, got {}", step);
  const Index b0 = initialBudget(), bT = targetBudget();
  if (step <= tinit) return {b0, false};
  if (step > totalStep - tfinal) return {bT, true};
  const double progress =
      static_cast<double>(step - tinit) / static_cast<double>(totalStep - tfinal - tinit);
  const double coefficient = 1.0 - progress;
  const double budget =
      static_cast<double>(b0 - bT) * std::pow(coefficient, 3) + static_cast<double>(bT);
  return {static_cast<Index>(budget), step % deltaT == 0};  // int(): truncation, as in Python
}

}  // namespace lora::rank
