#pragma once
// The initializers that init_analyzer and init_training compare, in table order: the one place to
// add new ones. W is the base weight (out x in), X the layer's input activations (N x in; EVA's
// PCA reads them), G the full-weight gradient ∂L/∂W at W (LoRA-GA reads it), rank the LoRA rank.
#include <memory>
#include <vector>

#include <Eigen/Core>

#include "lora/analysis/initialization_analyzer.hpp"
#include "lora/init/init.hpp"
#include "lora/linalg/weight_statistics.hpp"

namespace lora::examples {

template <typename Scalar, typename DerivedX>
std::vector<analysis::NamedInitializer<Scalar>> initCatalog(const Eigen::MatrixXd& W,
                                                            const Eigen::MatrixBase<DerivedX>& X,
                                                            const Eigen::MatrixXd& G,
                                                            Eigen::Index rank) {
  using namespace lora::init;
  using XScalar = typename DerivedX::Scalar;
  const auto stats = std::make_shared<const linalg::WeightStatistics>(linalg::weightStatistics(W));
  const LayerAdaptive middle{.depth = 6, .totalLayers = 12};  // the article's example layer
  const StatisticsAdaptive statistics{.statistics = stats};
  const SvdBased svd{.target = std::make_shared<const Eigen::MatrixXd>(W)};
  EvaCollector<XScalar> activations(X.cols(), evaMaxComponents(rank, 2.0));  // PEFT's rho = 2
  activations.update(X);
  const LoraGa loraGa{.gradient = std::make_shared<const Eigen::MatrixXd>(G)};
  return {
      // B·A = 0: the model's output is unchanged, W is kept.
      {"peft_default", PeftDefault{}},
      {"gaussian", Gaussian{}},
      {"peft_orthogonal", PeftOrthogonal{}},
      {"eva(X)", Eva::fromCollector(activations)},
      // The article's inits: B ≠ 0, the output moves at step 0.
      {"xavier_lora", XavierLora{}},
      {"kaiming_lora", KaimingLora{}},
      {"orthogonal", Orthogonal{}},
      {"layer_adaptive(6/12)", middle},
      {"statistics_adaptive", statistics},
      {"svd_based(W)", svd},
      // From W or a gradient; they subtract s·B·A from W themselves.
      {"pissa", Pissa{}},
      {"pissa_niter_4", PissaNiter<4>{}},
      {"milora", Milora{}},
      {"olora", Olora{}},
      {"lora_ga(G)", loraGa},
      // The article's inits again, with W replaced by W − s·B·A so the output is kept.
      {"xavier_lora+subtract", SubtractDelta{XavierLora{}}},
      {"kaiming_lora+subtract", SubtractDelta{KaimingLora{}}},
      {"orthogonal+subtract", SubtractDelta{Orthogonal{}}},
      {"layer_adaptive(6/12)+subtract", SubtractDelta{middle}},
      {"statistics_adaptive+subtract", SubtractDelta{statistics}},
      {"svd_based(W)+subtract", SubtractDelta{svd}},
  };
}

}  // namespace lora::examples
