// The measured effect of the LoRA initialization on training: the same regression task trained
// from every initializer LoRA++ has, several seeds each.
//
//   init_training [--seeds K] [--steps T] [--rank R] [--quick]
//
// The task: a frozen base W (256 x 256, synthetic, power-law spectrum σ_i ∝ i^(-1/2), ‖W‖_F² =
// 256), a planted rank-8 delta D = U·diag(1)·Vᵀ in random directions (neither W's top nor its
// bottom singular directions), N = 512 samples X ~ N(0, 1), Y = X·(W + D)ᵀ + noise (std 0.01).
// A rank-R LoRA layer (R = 8 by default; alpha = R, so s = 1) is trained full-batch with Adam
// (β = 0.9, 0.999, ε = 1e-8; written here, the library has no optimizer yet) on the mean squared
// error, in float. EVA reads X; LoRA-GA gets the full-batch gradient ∂MSE/∂W at W.
//
// Every layer is built on its own copy of W (`Layer(Wcopy, options, init)`), so an init wrapped in
// SubtractDelta (or any init that rewrites W) leaves the model's output at step 0 unchanged. The
// loss threshold is the same for every init: 1e-2 of the base model's loss L_base =
// mean((X·Wᵀ − Y)²), which is also the step-0 loss of every init that keeps the output.
//
// The learning rate is tuned per init over a grid, on 2 tuning seeds that are not reported: the
// rate with the fewest mean steps to the threshold (then the lowest final loss) is kept, and the
// reported seeds are trained with it. Each step evaluates the loss before the update; "steps to
// threshold" is the first step whose loss is at or below it (0 = already at step 0). The last
// column is the lowest loss any rank-r adapter can reach on the base weight the init left
// (reduced-rank regression, in double): a final loss at that value is a limit of the init's
// starting point, not of the optimizer.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <Eigen/Cholesky>

#include "lora/linalg/dense_svd.hpp"
#include "lora/analysis/markdown_table.hpp"
#include "lora/linalg/weight_statistics.hpp"
#include "lora/linalg/detail/orthogonal.hpp"
#include "lora/init/init.hpp"
#include "init_catalog.hpp"
#include "lora/layer.hpp"

namespace {

using Index = Eigen::Index;
using Scalar = float;
using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
using MatD = Eigen::MatrixXd;
using Init = lora::init::AnyInitializer<Scalar>;

constexpr Index kOut = 256, kIn = 256, kSamples = 512, kPlantedRank = 8;
constexpr double kNoise = 0.01, kPlantedSigma = 1.0, kThresholdFraction = 1e-2;
constexpr std::uint64_t kDataSeed = 2026;
const std::vector<double> kLearningRates{1e-3, 3e-3, 1e-2, 3e-2, 1e-1};
const std::vector<std::uint64_t> kTuningSeeds{1000, 1001};

using Named = lora::analysis::NamedInitializer<Scalar>;

/// The task every init is trained on.
struct Task {
  Mat W;                ///< frozen base weight, out x in
  Mat X;                ///< N x in
  Mat Y;                ///< N x out: X (W + D)^T + noise
  double baseLoss = 0;  ///< mean((X W^T - Y)^2)
};

/// A synthetic out x in "pretrained" weight: power-law spectrum σ_i ∝ i^(-1/2), ‖W‖_F² = out.
MatD syntheticWeight(Index out, Index in, lora::Rng& rng) {
  const Index k = std::min(out, in);
  const MatD U = lora::detail::orthogonalMatrix<double>(out, k, 1.0, rng);
  const MatD V = lora::detail::orthogonalMatrix<double>(in, k, 1.0, rng);
  Eigen::VectorXd sigma(k);
  for (Index i = 0; i < k; ++i) sigma(i) = 1.0 / std::sqrt(static_cast<double>(i + 1));
  sigma *= std::sqrt(static_cast<double>(out)) / sigma.norm();
  return U * sigma.asDiagonal() * V.transpose();
}

Task makeTask() {
  lora::Rng rng(kDataSeed);
  const MatD W = syntheticWeight(kOut, kIn, rng);
  const MatD U = lora::detail::orthogonalMatrix<double>(kOut, kPlantedRank, 1.0, rng);
  const MatD V = lora::detail::orthogonalMatrix<double>(kIn, kPlantedRank, 1.0, rng);
  const MatD D = kPlantedSigma * U * V.transpose();
  MatD X(kSamples, kIn), noise(kSamples, kOut);
  lora::fillNormal(X, rng, 0.0, 1.0);
  lora::fillNormal(noise, rng, 0.0, kNoise);
  Task t;
  t.W = W.cast<Scalar>();
  t.X = X.cast<Scalar>();
  t.Y = (X * (W + D).transpose() + noise).cast<Scalar>();
  const MatD E = t.X.cast<double>() * t.W.cast<double>().transpose() - t.Y.cast<double>();
  t.baseLoss = E.squaredNorm() / static_cast<double>(E.size());
  return t;
}

/// Every initializer to train from (examples/init_catalog.hpp). \p W is the base weight the
/// layers are built on, \p X the layer's inputs, \p G the full-weight gradient ∂MSE/∂W at W.
std::vector<Named> initializers(const Mat& W, const Mat& X, const MatD& G, Index rank) {
  return lora::examples::initCatalog<Scalar>(W.cast<double>(), X, G, rank);
}

/// Adam on the layer's two factors (Kingma & Ba, 2015, with bias correction).
class Adam {
 public:
  Adam(const lora::Layer<Scalar>& layer, double lr) : m_lr(lr) {
    m_mA.setZero(layer.A().rows(), layer.A().cols());
    m_vA = m_mA;
    m_mB.setZero(layer.B().rows(), layer.B().cols());
    m_vB = m_mB;
  }
  void step(lora::Layer<Scalar>& layer) {
    ++m_t;
    const double c1 = 1.0 - std::pow(kBeta1, m_t), c2 = 1.0 - std::pow(kBeta2, m_t);
    layer.updateFactors(update(layer.gradA(), m_mA, m_vA, c1, c2),
                        update(layer.gradB(), m_mB, m_vB, c1, c2));
  }

 private:
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
  Mat update(const Mat& g, Mat& m, Mat& v, double c1, double c2) const {
    m = Scalar(kBeta1) * m + Scalar(1 - kBeta1) * g;
    v = Scalar(kBeta2) * v + Scalar(1 - kBeta2) * g.cwiseAbs2();
    const Scalar stepSize = static_cast<Scalar>(m_lr / c1);
    const Scalar rootC2 = static_cast<Scalar>(std::sqrt(c2));
    return -stepSize * (m.array() / ((v.array().sqrt() / rootC2) + Scalar(kEps))).matrix();
  }
  double m_lr;
  int m_t = 0;
  Mat m_mA, m_vA, m_mB, m_vB;
};

struct Run {
  double initialLoss = 0;
  std::optional<int> stepsToThreshold;  ///< none: not reached within the budget
  double finalLoss = std::numeric_limits<double>::infinity();
  double rankOptimum = std::nan("");  ///< the lowest loss any rank-r adapter on W' can reach
  bool diverged = false;
};

/// The lowest training loss any adapter of rank <= \p rank can reach on top of the base \p W
/// (reduced-rank regression): with R = Y − X·Wᵀ and the least-squares fit R̂ = X·(XᵀX)⁻¹XᵀR,
/// min over rank-r M of ‖R − X·Mᵀ‖² = ‖R − R̂‖² + Σ_{i>r} σ_i(R̂)² (Eckart–Young on R̂). In
/// double; the training loss can go a little below it only through float rounding.
double rankOptimum(const Task& task, const Mat& W, Index rank) {
  const MatD X = task.X.cast<double>();
  const MatD R = task.Y.cast<double>() - X * W.cast<double>().transpose();
  const MatD fit = X * (X.transpose() * X).ldlt().solve(X.transpose() * R);
  const Eigen::VectorXd sigma = lora::linalg::singularValues(fit);
  const Index k = sigma.size();
  const double dropped = rank < k ? sigma.tail(k - rank).squaredNorm() : 0.0;
  return ((R - fit).squaredNorm() + dropped) / static_cast<double>(R.size());
}

double meanSquare(const Mat& E) {
  return E.cast<double>().squaredNorm() / static_cast<double>(E.size());
}

/// Trains one layer from \p init with seed \p seed and learning rate \p lr for \p steps steps.
/// The layer has rank \p rank and alpha = rank (s = 1).
/// With \p withOptimum, also the rank-r optimum on this run's base weight W'.
Run train(const Task& task, const Init& init, Index rank, std::uint64_t seed, double lr, int steps,
          double threshold, bool withOptimum = false) {
  Mat W = task.W;  // this run's copy: SubtractDelta inits rewrite it
  const lora::LayerOptions options{.rank = rank, .alpha = static_cast<double>(rank), .seed = seed};
  lora::Layer<Scalar> layer(W, options, init);
  // W is frozen, so the base part of the output is computed once: the layer then trains on the
  // residual R = Y − X·W'ᵀ with adapterForward (the same loss as forward() against Y).
  Mat R;
  R.noalias() = task.X * W.transpose();
  R = task.Y - R;
  Run run;
  run.initialLoss = meanSquare(layer.forward(task.X) - task.Y);
  if (withOptimum) run.rankOptimum = rankOptimum(task, W, rank);
  const double scale = 2.0 / static_cast<double>(task.Y.size());
  Adam adam(layer, lr);
  Mat E;
  try {
    for (int step = 0; step <= steps; ++step) {
      E = layer.adapterForward(task.X) - R;
      const double loss = meanSquare(E);
      if (!std::isfinite(loss)) {
        run.diverged = true;
        return run;
      }
      if (step == 0 && std::abs(loss - run.initialLoss) > 1e-3 * run.initialLoss + 1e-6)
        throw lora::Error(fmt::format("init_training: residual loss {} != forward loss {}", loss,
                                      run.initialLoss));
      if (!run.stepsToThreshold && loss <= threshold) run.stepsToThreshold = step;
      if (step == steps) {
        run.finalLoss = loss;
        break;
      }
      E *= static_cast<Scalar>(scale);  // dL/dY
      layer.backward(task.X, E, lora::GradMode::Overwrite);
      adam.step(layer);
    }
  } catch (const lora::Error& e) {
    if (std::string_view(e.what()).find("finite") == std::string_view::npos) throw;
    run.diverged = true;  // updateFactors/backward refused a non-finite value
    run.stepsToThreshold.reset();
  }
  return run;
}

struct Summary {
  double lr = 0;
  std::vector<Run> runs;
  Index reached() const {
    return std::count_if(runs.begin(), runs.end(),
                         [](const Run& r) { return r.stepsToThreshold.has_value(); });
  }
  /// Mean steps over the runs that reached the threshold (NaN if none).
  std::pair<double, double> steps() const {
    std::vector<double> v;
    for (const auto& r : runs)
      if (r.stepsToThreshold) v.push_back(*r.stepsToThreshold);
    return meanStd(v);
  }
  std::pair<double, double> finalLoss() const {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.finalLoss);
    return meanStd(v);
  }
  std::pair<double, double> optimum() const {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.rankOptimum);
    return meanStd(v);
  }
  std::pair<double, double> initialLoss() const {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.initialLoss);
    return meanStd(v);
  }
  /// Tuning score: mean steps with unreached runs counted as twice the budget; then final loss.
  std::pair<double, double> score(int budget) const {
    double steps = 0, logLoss = 0;
    for (const auto& r : runs) {
      steps += r.stepsToThreshold ? *r.stepsToThreshold : 2.0 * budget;
      logLoss += std::isfinite(r.finalLoss) ? std::log(r.finalLoss) : 1e300;
    }
    return {steps / static_cast<double>(runs.size()), logLoss / static_cast<double>(runs.size())};
  }
  static std::pair<double, double> meanStd(const std::vector<double>& v) {
    if (v.empty()) return {std::nan(""), std::nan("")};
    double m = 0;
    for (double x : v) m += x;
    m /= static_cast<double>(v.size());
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return {m, std::sqrt(s / static_cast<double>(v.size()))};
  }
};

std::string meanPm(std::pair<double, double> ms, std::string_view spec) {
  if (std::isnan(ms.first)) return "n/a";
  const std::string f = fmt::format("{{:{}}} ± {{:{}}}", spec, spec);
  return fmt::format(fmt::runtime(f), ms.first, ms.second);
}

}  // namespace

int main(int argc, char** argv) {
  int seeds = 5, steps = 400;
  Index rank = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--seeds" && i + 1 < argc)
      seeds = std::stoi(argv[++i]);
    else if (arg == "--steps" && i + 1 < argc)
      steps = std::stoi(argv[++i]);
    else if (arg == "--rank" && i + 1 < argc)
      rank = std::stol(argv[++i]);
    else if (arg == "--quick")
      seeds = 2, steps = 100;
    else {
      fmt::print(stderr, "usage: init_training [--seeds K] [--steps T] [--rank R] [--quick]\n");
      return 2;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const Task task = makeTask();
  const double threshold = kThresholdFraction * task.baseLoss;
  fmt::print("Task: W {} x {} (frozen), planted rank-{} delta (σ = {}), N = {}, noise std {}\n",
             kOut, kIn, kPlantedRank, kPlantedSigma, kSamples, kNoise);
  fmt::print("LoRA r = {}, alpha = {} (s = {}); Adam, full batch, {} steps; {} seeds per init\n",
             rank, rank, 1, steps, seeds);
  fmt::print("L_base = {:.4g} (noise floor {:.2g}); threshold = {} · L_base = {:.3g}\n",
             task.baseLoss, kNoise * kNoise, kThresholdFraction, threshold);
  fmt::print("learning rate tuned per init over {{{}}} on tuning seeds {{{}}}\n\n",
             fmt::join(kLearningRates, ", "), fmt::join(kTuningSeeds, ", "));

  lora::analysis::MarkdownTable tuning([&] {
    std::vector<std::string> h{"init"};
    for (double lr : kLearningRates) h.push_back(fmt::format("lr {}", lr));
    return h;
  }());
  lora::analysis::MarkdownTable results({"init", "lr", "step-0 loss / L_base", "steps to threshold",
                                         "reached", fmt::format("final loss ({} steps)", steps),
                                         fmt::format("rank-{} optimum", rank)});
  // G = ∂/∂W mean((X·Wᵀ − Y)²) = 2/(N·out) · (X·Wᵀ − Y)ᵀ·X, on the whole training set.
  const MatD Xd = task.X.cast<double>();
  const MatD E = Xd * task.W.cast<double>().transpose() - task.Y.cast<double>();
  const MatD G = (2.0 / static_cast<double>(E.size())) * E.transpose() * Xd;
  for (const Named& n : initializers(task.W, task.X, G, rank)) {
    // Tune: the grid on the tuning seeds.
    std::vector<std::string> tuneRow{n.name};
    Summary best;
    std::pair<double, double> bestScore{std::numeric_limits<double>::infinity(), 0};
    for (double lr : kLearningRates) {
      Summary s;
      s.lr = lr;
      for (std::uint64_t seed : kTuningSeeds)
        s.runs.push_back(train(task, n.initializer, rank, seed, lr, steps, threshold));
      const auto score = s.score(steps);
      if (score < bestScore) {
        bestScore = score;
        best = s;
      }
      const auto st = s.steps();
      tuneRow.push_back(s.reached() == 0
                            ? fmt::format("not reached, {:.2g}", s.finalLoss().first)
                            : fmt::format("{:.0f} ({}/{}), {:.2g}", st.first, s.reached(),
                                          s.runs.size(), s.finalLoss().first));
    }
    tuning.addRow(std::move(tuneRow));

    // Report: the chosen rate on the reported seeds 0..seeds-1.
    Summary rep;
    rep.lr = best.lr;
    for (int k = 0; k < seeds; ++k)
      rep.runs.push_back(train(task, n.initializer, rank, static_cast<std::uint64_t>(k), best.lr, steps,
                               threshold, /*withOptimum=*/true));
    const auto init0 = rep.initialLoss();
    const Index reached = rep.reached();
    results.addRow({n.name, fmt::format("{}", rep.lr),
                    meanPm({init0.first / task.baseLoss, init0.second / task.baseLoss}, ".3g"),
                    reached == 0 ? std::string("not reached") : meanPm(rep.steps(), ".0f"),
                    fmt::format("{}/{}", reached, rep.runs.size()), meanPm(rep.finalLoss(), ".3g"),
                    meanPm(rep.optimum(), ".3g")});
    fmt::print(stderr, "  {} done ({:.0f} s)\n", n.name,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  fmt::print(
      "Trained from each init (mean ± std over {} seeds at the tuned rate; steps over the "
      "seeds that reached the threshold):\n\n{}\n",
      seeds, results.format());
  fmt::print(
      "Tuning grid (mean steps to threshold (seeds reached), mean final loss; tuning "
      "seeds):\n\n{}\n",
      tuning.format());
  fmt::print("total time {:.0f} s\n",
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return 0;
}
