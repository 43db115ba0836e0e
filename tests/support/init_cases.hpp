#pragma once
// Test support: one "case" per initializer for the shared initializer suite.
//
// A case says how to build the policy for a layer shape and what the policy promises:
//   needsWeight  - throws without the base weight in the request
//   subtracts    - asks for W -= s·B·A (the model output at step 0 is unchanged)
//   zeroDelta    - B·A = 0 exactly at init (output unchanged without touching W)
//   random       - the factors depend on the seed
//   evenRank     - needs an even rank

#include <memory>

#include <Eigen/Core>

#include "lora/init/init.hpp"

namespace lora::test {

struct CaseFlags {
  bool needsWeight = false;
  bool subtracts = false;
  bool zeroDelta = false;
  bool random = true;
  bool evenRank = false;
};

struct PeftDefaultCase {
  static init::PeftDefault make(Eigen::Index, Eigen::Index) { return {}; }
  static constexpr CaseFlags flags{.zeroDelta = true};
};
struct GaussianCase {
  static init::Gaussian make(Eigen::Index, Eigen::Index) { return {}; }
  static constexpr CaseFlags flags{.zeroDelta = true};
};
struct XavierLoraCase {
  static init::XavierLora make(Eigen::Index, Eigen::Index) { return {}; }
  static constexpr CaseFlags flags{};
};
struct KaimingLoraCase {
  static init::KaimingLora make(Eigen::Index, Eigen::Index) { return {}; }
  static constexpr CaseFlags flags{};
};
struct OrthogonalCase {
  static init::Orthogonal make(Eigen::Index, Eigen::Index) { return {.gain = 1.5}; }
  static constexpr CaseFlags flags{};
};
struct LayerAdaptiveCase {
  static init::LayerAdaptive make(Eigen::Index, Eigen::Index) {
    return {.depth = 3, .totalLayers = 12, .baseStd = 0.05};
  }
  static constexpr CaseFlags flags{};
};
struct StatisticsAdaptiveCase {
  static init::StatisticsAdaptive make(Eigen::Index, Eigen::Index) { return {.strength = 0.5}; }
  static constexpr CaseFlags flags{.needsWeight = true};
};
struct SvdBasedCase {
  static init::SvdBased make(Eigen::Index out, Eigen::Index in) {
    Eigen::MatrixXd T(out, in);
    lora::Rng rng(99);
    lora::fillNormal(T, rng, 0.0, 0.3);
    return {.target = std::make_shared<const Eigen::MatrixXd>(std::move(T)), .noiseScale = 0.01};
  }
  static constexpr CaseFlags flags{};
};
struct SubtractDeltaXavierCase {
  static init::SubtractDelta<init::XavierLora> make(Eigen::Index, Eigen::Index) { return {}; }
  static constexpr CaseFlags flags{.subtracts = true};
};

}  // namespace lora::test
