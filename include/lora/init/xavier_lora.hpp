#pragma once
/// \file xavier_lora.hpp
/// \brief The article's Xavier-style LoRA initialization.

#include <cmath>
#include <string>

#include "lora/init/initializer.hpp"

namespace lora::init {

/// \brief xavier_lora: std = sqrt(2 / (in + out)) · gain, A ~ N(0, std²), B ~ N(0, (0.1·std)²).
///
/// Source: the article's `AdvancedLoRAInitializer.xavier_lora_init` (its `scaling` argument is
/// \p gain here, not the LoRA scaling s). B ≠ 0, so s·B·A ≠ 0 and the model's output moves at step
/// 0; wrap it in SubtractDelta to keep it. Changes no base weight by itself; costs r·(in + out)
/// random draws.
struct XavierLora {
  double gain = 1.0;  ///< the article's `scaling` multiplier of the Xavier std

  static std::string name() { return "xavier_lora"; }

  /// The std of A for an out x in layer.
  double stdA(Eigen::Index out, Eigen::Index in) const {
    return std::sqrt(2.0 / static_cast<double>(in + out)) * gain;
  }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const {
    if (!(std::isfinite(gain) && gain > 0.0))
      detail::fail("XavierLora::initialize", "expected a positive finite gain, got {}", gain);
    const double std = stdA(request.outFeatures, request.inFeatures);
    Factors<Scalar> f;
    f.A.resize(request.rank, request.inFeatures);
    f.B.resize(request.outFeatures, request.rank);
    fillNormal(f.A, rng, 0.0, std);
    fillNormal(f.B, rng, 0.0, 0.1 * std);
    return f;
  }
};

}  // namespace lora::init
