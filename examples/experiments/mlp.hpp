#pragma once
// The model of the strategy experiments: a small ReLU MLP classifier, pretrained on one domain in
// full, then adapted to another with LoRA on every linear layer (or fully fine-tuned, the
// ceiling). AdaptationTask is a lora::analysis::ExperimentTask: digits and the character model
// (digits.hpp, charlm.hpp) only bring their data.

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "lora/analysis/experiment.hpp"
#include "lora/init/initializer.hpp"
#include "lora/io/progress.hpp"

namespace lora::experiments {

using Mat = Eigen::MatrixXf;
using Vec = Eigen::VectorXf;
using Index = Eigen::Index;

/// Inputs (one sample per row) and class labels.
struct Dataset {
  Mat X;
  std::vector<int> y;
  Index size() const { return X.rows(); }
  /// The samples \p rows, in that order.
  Dataset subset(std::span<const Index> rows) const;
};

/// Linear -> ReLU -> ... -> Linear (logits). W[l] is out x in, as PyTorch's nn.Linear.
struct Network {
  std::vector<Mat> W;
  std::vector<Vec> b;
  /// PyTorch's nn.Linear initialisation (U(±1/sqrt(in)) for weights and biases); \p sizes is
  /// {inputs, hidden..., classes}.
  static Network random(std::span<const Index> sizes, std::uint64_t seed);
  Index parameterCount() const;
};

/// Mean cross-entropy (nats) and accuracy.
struct Metrics {
  double loss = 0, accuracy = 0;
};
Metrics evaluate(const Network& net, const Dataset& data);

/// Full training of a network (pretraining), AdamW on every weight and bias.
struct PretrainOptions {
  int steps = 2000;
  Index batch = 128;
  double lr = 2e-3;
  double weightDecay = 1e-4;
  std::uint64_t seed = 1;
  bool quiet = false;  ///< no progress bar
};
Network pretrain(std::span<const Index> sizes, const Dataset& train,
                 const PretrainOptions& options);

/// Settings shared by every run of an AdaptationTask.
struct AdaptOptions {
  int steps = 1000;
  Index batch = 64;
  int evalEvery = 50;  ///< evaluate on the held-out set every this many steps (and at 0, end)
  bool quiet = false;  ///< no progress bar
  std::string label = "adapt";
};

/// The initializer of a strategy's init key: peft_default, gaussian, xavier, kaiming,
/// orthogonal (the article's), peft_orthogonal, pissa, milora, olora. lora::Error otherwise.
init::AnyInitializer<float> initializerFor(const std::string& key);

/// \brief Adapts a pretrained network to (train, val) under a strategy: an ExperimentTask.
///
/// LoRA strategies put a lora::Layer on every linear layer, of rank min(r, out, in) (a rank above
/// that buys parameters and no capacity; the SVD inits refuse it), over a copy of the pretrained
/// weights and biases (PiSSA/OLoRA/MiLoRA change that copy), and train A and B with
/// train::Optimizer. Selector "article_gradient" gives every layer the article's gradient-based
/// rank selector (rank::ArticleGradientBased, fed the spectrum of each step's weight gradient)
/// and resizes through the optimizer, carrying its state. Full fine-tuning trains every weight.
class AdaptationTask {
 public:
  AdaptationTask(Network pretrained, Dataset train, Dataset val, AdaptOptions options);

  analysis::RunRecord run(const analysis::Strategy& strategy, std::uint64_t seed);

  /// The pretrained network on the held-out set, unadapted.
  Metrics frozen() const { return evaluate(m_pretrained, m_val); }
  const AdaptOptions& options() const { return m_options; }

  /// σ of every adapted layer's s·B·A at the end of the first run of each LoRA strategy.
  const std::map<std::string, std::vector<Eigen::VectorXd>>& spectra() const { return m_spectra; }

 private:
  analysis::RunRecord runLora(const analysis::Strategy& s, std::uint64_t seed);
  analysis::RunRecord runFull(const analysis::Strategy& s, std::uint64_t seed);

  Network m_pretrained;
  Dataset m_train, m_val;
  AdaptOptions m_options;
  std::map<std::string, std::vector<Eigen::VectorXd>> m_spectra;
};

}  // namespace lora::experiments
