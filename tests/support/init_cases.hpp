#pragma once
// Test support: one "case" per initializer for the shared initializer suite.
//
// A case says how to build the policy for a layer shape and what the policy promises:
//   needsWeight  - throws without the base weight in the request
//   subtracts    - asks for W -= s·B·A (the model output at step 0 is unchanged)
//   zeroDelta    - B·A = 0 exactly at init (output unchanged without touching W)
//   random       - the factors depend on the seed
//   evenRank     - needs an even rank
//   halfRank     - needs 2·rank <= min(out, in)

#include <memory>

#include <Eigen/Core>

#include "lora/init/init.hpp"
#include "lora/linalg/detail/orthogonal.hpp"

namespace lora::test {

struct CaseFlags {
  bool needsWeight = false;
  bool subtracts = false;
  bool zeroDelta = false;
  bool random = true;
  bool evenRank = false;
  bool halfRank = false;
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

// PEFT and the literature. The SVD-based ones are deterministic: their partial SVDs of these
// small weights take the dense path, which does not use the generator.
struct PissaCase {
  static init::Pissa make(Eigen::Index, Eigen::Index) { return {}; }
  static constexpr CaseFlags flags{.needsWeight = true, .subtracts = true, .random = false};
};
struct PissaNiter4Case {
  static init::PissaNiter<4> make(Eigen::Index, Eigen::Index) { return {}; }
  static constexpr CaseFlags flags{.needsWeight = true, .subtracts = true};
};
struct MiloraCase {
  static init::Milora make(Eigen::Index, Eigen::Index) { return {}; }
  static constexpr CaseFlags flags{.needsWeight = true, .subtracts = true, .random = false};
};
struct OloraCase {
  static init::Olora make(Eigen::Index, Eigen::Index) { return {}; }
  static constexpr CaseFlags flags{.needsWeight = true, .subtracts = true, .random = false};
};
struct PeftOrthogonalCase {
  static init::PeftOrthogonal make(Eigen::Index, Eigen::Index) { return {}; }
  static constexpr CaseFlags flags{.zeroDelta = true, .evenRank = true};
};
struct LoraGaCase {
  static init::LoraGa make(Eigen::Index out, Eigen::Index in) {
    Eigen::MatrixXd G(out, in);
    lora::Rng rng(77);
    lora::fillNormal(G, rng, 0.0, 1.0);
    return {.gradient = std::make_shared<const Eigen::MatrixXd>(std::move(G))};
  }
  static constexpr CaseFlags flags{
      .needsWeight = true, .subtracts = true, .random = false, .halfRank = true};
};
struct EvaCase {
  // in components (all of them) with decreasing singular values: every rank up to in works.
  static init::Eva make(Eigen::Index, Eigen::Index in) {
    lora::Rng rng(55);
    const Eigen::MatrixXd V = lora::detail::orthogonalMatrix<double>(in, in, 1.0, rng);
    const Eigen::VectorXd S = Eigen::VectorXd::LinSpaced(in, static_cast<double>(in), 1.0);
    return init::Eva(V, S);
  }
  static constexpr CaseFlags flags{.zeroDelta = true, .random = false};
};

}  // namespace lora::test
