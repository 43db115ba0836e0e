#include "lora/train/adamw.hpp"

#include <cmath>

#include "lora/error.hpp"

namespace lora::train {

void AdamW::validate() const {
  constexpr const char* where = "AdamW::validate";
  if (!(std::isfinite(lr) && lr >= 0))
    detail::fail(where, "expected a finite learning rate >= 0, got {}", lr);
  if (!(beta1 >= 0 && beta1 < 1)) detail::fail(where, "expected beta1 in [0, 1), got {}", beta1);
  if (!(beta2 >= 0 && beta2 < 1)) detail::fail(where, "expected beta2 in [0, 1), got {}", beta2);
  if (!(std::isfinite(eps) && eps >= 0))
    detail::fail(where, "expected a finite eps >= 0, got {}", eps);
  if (!(std::isfinite(weightDecay) && weightDecay >= 0))
    detail::fail(where, "expected a finite weight decay >= 0, got {}", weightDecay);
}

}  // namespace lora::train
