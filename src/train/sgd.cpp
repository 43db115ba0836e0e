#include "lora/train/sgd.hpp"

#include <cmath>

#include "lora/error.hpp"

namespace lora::train {

void Sgd::validate() const {
  constexpr const char* where = "Sgd::validate";
  if (!(std::isfinite(lr) && lr >= 0))
    detail::fail(where, "expected a finite learning rate >= 0, got {}", lr);
  if (!(std::isfinite(momentum) && momentum >= 0))
    detail::fail(where, "expected a finite momentum >= 0, got {}", momentum);
  if (!std::isfinite(dampening))
    detail::fail(where, "expected a finite dampening, got {}", dampening);
  if (!(std::isfinite(weightDecay) && weightDecay >= 0))
    detail::fail(where, "expected a finite weight decay >= 0, got {}", weightDecay);
  if (nesterov && (momentum <= 0 || dampening != 0))
    detail::fail(where,
                 "expected momentum > 0 and zero dampening with Nesterov, got momentum {} and "
                 "dampening {}",
                 momentum, dampening);
}

}  // namespace lora::train
