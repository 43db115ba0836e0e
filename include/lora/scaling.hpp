#pragma once
/// \file scaling.hpp
/// \brief How a LoRA layer's scaling s follows from alpha and the rank r.

#include <cmath>
#include <string_view>

#include "lora/detail/eigen.hpp"

namespace lora {

/// \brief The scaling rule of a LoRA layer.
///
/// - Standard: s = alpha / r (Hu et al., "LoRA", 2021; PEFT's default).
/// - RsLora:   s = alpha / sqrt(r) (Kalajdzievski, "A Rank Stabilization Scaling Factor for
///   Fine-Tuning with LoRA", 2023; PEFT's `use_rslora`).
enum class ScalingMode { Standard, RsLora };

/// s for \p alpha at rank \p rank under \p mode (rank > 0).
inline double scalingFor(double alpha, Eigen::Index rank, ScalingMode mode) noexcept {
  const double r = static_cast<double>(rank);
  return mode == ScalingMode::RsLora ? alpha / std::sqrt(r) : alpha / r;
}

/// The alpha that gives scaling \p s at rank \p rank under \p mode (inverse of scalingFor).
inline double alphaFor(double s, Eigen::Index rank, ScalingMode mode) noexcept {
  const double r = static_cast<double>(rank);
  return mode == ScalingMode::RsLora ? s * std::sqrt(r) : s * r;
}

inline std::string_view toString(ScalingMode mode) noexcept {
  return mode == ScalingMode::RsLora ? "rslora" : "standard";
}

}  // namespace lora
