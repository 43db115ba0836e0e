#pragma once
/// \file gaussian.hpp
/// \brief PEFT's gaussian LoRA initialization.

#include "lora/init/initializer.hpp"

namespace lora::init {

/// \brief PEFT's `init_lora_weights="gaussian"`: A ~ N(0, (1/r)²), B = 0.
///
/// Source: PEFT `LoraLayer.reset_lora_parameters`, `nn.init.normal_(A, std=1 / r)`.
/// Changes no base weight; costs r·in random draws.
struct Gaussian {
  static std::string name() { return "gaussian"; }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const {
    Factors<Scalar> f;
    f.A.resize(request.rank, request.inFeatures);
    fillNormal(f.A, rng, 0.0, 1.0 / static_cast<double>(request.rank));
    f.B.setZero(request.outFeatures, request.rank);
    return f;
  }
};

}  // namespace lora::init
