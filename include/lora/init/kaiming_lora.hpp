#pragma once
/// \file kaiming_lora.hpp
/// \brief The article's Kaiming-style LoRA initialization.

#include <cmath>
#include <string>

#include "lora/init/initializer.hpp"

namespace lora::init {

/// Which fan torch's kaiming_normal_ divides by: fan_in = columns, fan_out = rows of the matrix.
enum class FanMode { FanIn, FanOut };

/// \brief kaiming_lora: A ~ kaiming_normal(mode, relu), B ~ kaiming_normal(mode, relu) · 0.1.
///
/// torch.nn.init.kaiming_normal_ draws N(0, std²) with std = gain / sqrt(fan), gain = sqrt(2) for
/// ReLU (He et al., "Delving Deep into Rectifiers", 2015). With mode fan_in A (r x in) has
/// std sqrt(2/in) and B (out x r) std 0.1·sqrt(2/r); with fan_out, sqrt(2/r) and 0.1·sqrt(2/out).
/// Source: the article's `AdvancedLoRAInitializer.kaiming_lora_init`. B ≠ 0: s·B·A ≠ 0 at step 0
/// (wrap in SubtractDelta to keep the output). Costs r·(in + out) random draws.
struct KaimingLora {
  FanMode mode = FanMode::FanIn;
  double gain = std::sqrt(2.0);  ///< torch's calculate_gain("relu")

  static std::string name() { return "kaiming_lora"; }

  double stdA(Eigen::Index rank, Eigen::Index in) const {
    return gain / std::sqrt(static_cast<double>(mode == FanMode::FanIn ? in : rank));
  }
  double stdB(Eigen::Index out, Eigen::Index rank) const {
    return 0.1 * gain / std::sqrt(static_cast<double>(mode == FanMode::FanIn ? rank : out));
  }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const {
    if (!(std::isfinite(gain) && gain > 0.0))
      detail::fail("KaimingLora::initialize", "expected a positive finite gain, got {}", gain);
    Factors<Scalar> f;
    f.A.resize(request.rank, request.inFeatures);
    f.B.resize(request.outFeatures, request.rank);
    fillNormal(f.A, rng, 0.0, stdA(request.rank, request.inFeatures));
    fillNormal(f.B, rng, 0.0, stdB(request.outFeatures, request.rank));
    return f;
  }
};

}  // namespace lora::init
