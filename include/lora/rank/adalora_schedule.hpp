#pragma once
/// \file adalora_schedule.hpp
/// \brief AdaLoRA's cubic budget schedule, exactly as PEFT computes it.

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"  // lora::Error, which these throw

namespace lora::rank {

/// \brief The total rank budget over training (Zhang et al., "AdaLoRA", ICLR 2023; PEFT
/// `RankAllocator.budget_schedule`).
///
/// With b0 = initRank · modules and bT = targetRank · modules:
/// - step <= tinit: budget b0, no masking (warm-up);
/// - step > totalStep - tfinal: budget bT, masking every step (final fine-tuning);
/// - otherwise budget = int((b0 - bT) · (1 - (step - tinit) / (totalStep - tfinal - tinit))³ + bT),
///   masking when step % deltaT == 0.
///
/// \code
/// lora::rank::AdaLoraSchedule s{.initRank = 12, .targetRank = 4, .tinit = 10, .tfinal = 20,
///                               .deltaT = 5, .totalStep = 100, .modules = 3};
/// auto [budget, mask] = s.at(15);   // 31, true
/// \endcode
struct AdaLoraSchedule {
  using Index = Eigen::Index;

  Index initRank = 12;   ///< init_r, >= 1
  Index targetRank = 8;  ///< target_r, >= 1
  Index tinit = 0;       ///< warm-up steps, >= 0
  Index tfinal = 0;      ///< final steps at the target budget, >= 0
  Index deltaT = 1;      ///< steps between two maskings, >= 1
  Index totalStep = 1;   ///< total_step, > tinit + tfinal
  Index modules = 1;     ///< number of adapted modules, >= 1

  /// The budget at a step and whether PEFT masks (prunes) at that step.
  struct Step {
    Index budget = 0;
    bool mask = false;
  };

  Index initialBudget() const noexcept { return initRank * modules; }
  Index targetBudget() const noexcept { return targetRank * modules; }

  /// Throws lora::Error when a field is out of range (PEFT raises for total_step <= tinit +
  /// tfinal).
  void validate() const;

  /// The schedule at \p step (>= 0).
  Step at(Index step) const;
};

}  // namespace lora::rank
