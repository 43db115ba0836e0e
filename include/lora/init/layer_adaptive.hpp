#pragma once
/// \file layer_adaptive.hpp
/// \brief The article's depth-dependent LoRA initialization.

#include <cmath>
#include <string>

#include "lora/init/initializer.hpp"

namespace lora::init {

/// \brief layer_adaptive: with ρ = depth / totalLayers, std = baseStd·(1 − 0.5ρ),
/// A ~ N(0, std²), B ~ N(0, (std·(0.1 + 0.05ρ))²): deeper layers start smaller.
///
/// Source: the article's `AdvancedLoRAInitializer.layer_adaptive_init` (depth counts from 0).
/// B ≠ 0: s·B·A ≠ 0 at step 0 (wrap in SubtractDelta to keep the output). Costs r·(in + out)
/// random draws.
struct LayerAdaptive {
  Eigen::Index depth = 0;        ///< this layer's depth, 0 <= depth <= totalLayers
  Eigen::Index totalLayers = 1;  ///< number of layers, >= 1
  double baseStd = 0.02;

  static std::string name() { return "layer_adaptive"; }

  double depthRatio() const {
    return static_cast<double>(depth) / static_cast<double>(totalLayers);
  }
  double stdA() const { return baseStd * (1.0 - 0.5 * depthRatio()); }
  double stdB() const { return stdA() * (0.1 + 0.05 * depthRatio()); }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const {
    constexpr const char* where = "LayerAdaptive::initialize";
    if (totalLayers < 1) detail::fail(where, "expected totalLayers >= 1, got {}", totalLayers);
    if (depth < 0 || depth > totalLayers)
      detail::fail(where, "expected 0 <= depth <= totalLayers = {}, got {}", totalLayers, depth);
    if (!(std::isfinite(baseStd) && baseStd > 0.0))
      detail::fail(where, "expected a positive finite baseStd, got {}", baseStd);
    Factors<Scalar> f;
    f.A.resize(request.rank, request.inFeatures);
    f.B.resize(request.outFeatures, request.rank);
    fillNormal(f.A, rng, 0.0, stdA());
    fillNormal(f.B, rng, 0.0, stdB());
    return f;
  }
};

}  // namespace lora::init
