#pragma once
/// \file peft_default.hpp
/// \brief PEFT's default LoRA initialization.

#include <cmath>

#include "lora/init/initializer.hpp"

namespace lora::init {

/// \brief PEFT's default: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0,
/// so a fresh layer leaves the base model unchanged.
///
/// Source: PEFT `LoraLayer.reset_lora_parameters` (`init_lora_weights=True`), which calls
/// `nn.init.kaiming_uniform_(A, a=math.sqrt(5))`: gain sqrt(2 / (1 + a²)) = sqrt(1/3), bound
/// gain·sqrt(3 / fan_in) = 1/sqrt(in). Changes no base weight; costs r·in random draws.
///
/// \code
/// lora::Layer<float> layer(4096, 4096, {.rank = 16, .alpha = 32, .seed = 7},
/// lora::init::PeftDefault{}); \endcode
struct PeftDefault {
  static std::string name() { return "peft_default"; }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const {
    Factors<Scalar> f;
    f.A.resize(request.rank, request.inFeatures);
    const double bound = 1.0 / std::sqrt(static_cast<double>(request.inFeatures));
    fillUniform(f.A, rng, -bound, bound);
    f.B.setZero(request.outFeatures, request.rank);
    return f;
  }
};

}  // namespace lora::init
