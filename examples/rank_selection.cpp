// How well do the rank rules choose? Two measurements, printed as markdown
// (docs/rank_selection.md). `rank_selection --quick` runs a shrunken version (the test suite runs
// it as a smoke test).
//
// (a) Planted-rank recovery. Deltas Δ = U diag(σ) V^T + noise (96 x 96, σ linear from 1 to 0.5,
//     rank k in 1..32, noise Gaussian scaled to a signal-to-noise ratio ‖signal‖_F / ‖noise‖_F),
//     and gradient streams G = dY^T X with dY = X T^T + noise for a planted rank-k T. Each
//     spectrum rule picks a rank; we report the exact-hit rate and the mean absolute error.
// (b) Dynamic rank. A task whose true rank is 8, trained with SGD from rank 2 with each selector
//     active (the layer is resized whenever a selector asks), against fixed ranks 2 and 8: final
//     loss, rank over time, parameter-steps.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "lora/layer.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/householder_qr.hpp"
#include "lora/linalg/spectrum.hpp"
#include "lora/rank/article_gradient.hpp"
#include "lora/rank/full_gradient_selector.hpp"
#include "lora/rank/gradient_signal.hpp"
#include "lora/rank/loss_plateau.hpp"
#include "lora/rank/slope_plateau.hpp"
#include "lora/rank/svd_energy_selector.hpp"

namespace {

// The sizes of the measurement; --quick shrinks them to a smoke run (the test suite runs it).
struct Sizes {
  int trials = 8;    // planted-rank recovery: draws per (source, k, SNR)
  int steps = 1500;  // dynamic rank: SGD steps per run
  int seeds = 3;     // dynamic rank: runs per selector
};
Sizes sizes;

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;
using Index = Eigen::Index;

Mat gaussian(Index rows, Index cols, lora::Rng& rng, double stddev = 1.0) {
  Mat m(rows, cols);
  lora::fillNormal(m, rng, 0.0, stddev);
  return m;
}
Mat orthonormal(Index rows, Index cols, lora::Rng& rng) {
  return lora::linalg::ThinQR<Mat::Scalar>(gaussian(rows, cols, rng)).matrixQ();
}
Mat planted(Index out, Index in, Index k, lora::Rng& rng) {
  const Vec sigma = Vec::LinSpaced(k, 1.0, 0.5);
  return orthonormal(out, k, rng) * sigma.asDiagonal() * orthonormal(in, k, rng).transpose();
}

struct Rule {
  std::string name;
  std::function<Index(const Vec&)> pick;
};
std::vector<Rule> rules() {
  using namespace lora::linalg;
  return {
      {"threshold 1% (article effective rank)",
       [](const Vec& s) { return thresholdRank(s, 0.01); }},
      {"cumulative σ 90% (article rank_90)", [](const Vec& s) { return cumulativeRank(s, 0.9); }},
      {"energy 90% (PEFT convert_to_lora)", [](const Vec& s) { return energyRank(s, 0.9); }},
      {"energy 95% (article gradient rules)", [](const Vec& s) { return energyRank(s, 0.95); }},
      {"kohya sv_ratio 10", [](const Vec& s) { return kohyaSvRatio(s, 10.0); }},
      {"kohya sv_fro 0.9", [](const Vec& s) { return kohyaSvFro(s, 0.9); }},
      {"knee", [](const Vec& s) { return kneeRank(s); }},
      {"entropy effective rank (rounded)",
       [](const Vec& s) { return Index(std::lround(entropyEffectiveRank(s))); }},
      {"stable rank (rounded)", [](const Vec& s) { return Index(std::lround(stableRank(s))); }},
  };
}

struct Score {
  int hits = 0, trials = 0;
  double absError = 0;
  void add(Index chosen, Index truth) {
    hits += chosen == truth;
    ++trials;
    absError += std::abs(double(chosen - truth));
  }
  std::string str() const {
    return fmt::format("{:.0f}% / {:.1f}", 100.0 * hits / trials, absError / trials);
  }
};

void plantedRecovery() {
  const std::vector<Index> ranks = {1, 2, 4, 8, 16, 32};
  const std::vector<double> snrs = {100, 10, 3, 1};
  const int trials = sizes.trials;
  constexpr Index dim = 96, batch = 256;
  const auto all = rules();
  for (const char* source : {"delta", "gradient"}) {
    std::map<std::string, std::vector<Score>> table;  // rule -> per SNR
    for (const auto& r : all) table[r.name].resize(snrs.size());
    for (std::size_t j = 0; j < snrs.size(); ++j) {
      for (Index k : ranks) {
        for (int t = 0; t < trials; ++t) {
          lora::Rng rng(1000 * k + 17 * t + static_cast<std::uint64_t>(j));
          Vec sigma;
          if (std::string(source) == "delta") {
            const Mat signal = planted(dim, dim, k, rng);
            const Mat noise = gaussian(dim, dim, rng);
            const Mat D = signal + noise * (signal.norm() / noise.norm() / snrs[j]);
            sigma = lora::linalg::singularValues(D);
          } else {  // G = dY^T X for dY = X T^T + noise, the noise at the given SNR on dY
            const Mat T = planted(dim, dim, k, rng);
            const Mat X = gaussian(batch, dim, rng);
            const Mat clean = X * T.transpose();
            const Mat noise = gaussian(batch, dim, rng);
            const Mat dY = clean + noise * (clean.norm() / noise.norm() / snrs[j]);
            sigma = lora::rank::gradientSpectrum(X, dY);
          }
          for (const auto& r : all) table[r.name][j].add(r.pick(sigma), k);
        }
      }
    }
    fmt::print(
        "\n#### Planted {} (96 x 96, k in {{1, 2, 4, 8, 16, 32}}, {} trials each): exact-hit rate "
        "/ mean |error|\n\n",
        source, trials);
    fmt::print("| rule |");
    for (double s : snrs) fmt::print(" SNR {} |", s);
    fmt::print("\n| --- |");
    for (std::size_t j = 0; j < snrs.size(); ++j) fmt::print(" --- |");
    fmt::print("\n");
    for (const auto& r : all) {
      fmt::print("| {} |", r.name);
      for (const auto& s : table[r.name]) fmt::print(" {} |", s.str());
      fmt::print("\n");
    }
  }
}

// ---- (b) dynamic rank -------------------------------------------------------------------------

struct Task {
  Index out = 64, in = 64, batch = 256;
  Mat W, target;  // frozen base and the planted rank-8 delta
  Mat Xtest, Ytest;
  double noise = 0.1;
  Task() {
    lora::Rng rng(7);
    W = gaussian(out, in, rng, 1.0 / std::sqrt(double(in)));
    target = planted(out, in, 8, rng) * 2.0;
    Xtest = gaussian(1024, in, rng);
    Ytest = Xtest * (W + target).transpose();
  }
  void batchAt(lora::Rng& rng, Mat& X, Mat& Y) const {
    X = gaussian(batch, in, rng);
    Y = X * (W + target).transpose() + gaussian(batch, out, rng, noise);
  }
};

// Which selector runs, as one callable per step: (layer, X, dY, loss) -> requested rank or 0.
using Step = std::function<Index(const lora::Layer<double>&, const Mat&, const Mat&, double)>;

template <typename S, typename Observe>
Step adapt(S selector, Observe observe) {
  auto s = std::make_shared<S>(std::move(selector));
  return [s, observe](const lora::Layer<double>& layer, const Mat& X, const Mat& dY,
                      double loss) -> Index {
    s->setRank(layer.rank());
    const lora::rank::Decision d = observe(*s, layer, X, dY, loss);
    return d.adjust ? d.newRank : 0;
  };
}

struct Config {
  std::string name;
  Index startRank;
  std::function<Step()> make;  // empty: fixed rank
};

std::vector<Config> configs() {
  using namespace lora::rank;
  constexpr Index maxRank = 32;
  return {
      {"fixed rank 2", 2, {}},
      {"fixed rank 8", 8, {}},
      {"article loss plateau (patience 10)", 2,
       [] {
         return adapt(ArticleLossPlateau(
                          {.initialRank = 2, .minRank = 1, .maxRank = maxRank, .patience = 10}),
                      [](auto& s, auto&, auto&, auto&, double loss) { return s.observe(loss); });
       }},
      {"slope plateau (window 20)", 2,
       [] {
         return adapt(
             SlopePlateau({.initialRank = 2, .minRank = 1, .maxRank = maxRank, .window = 20}),
             [](auto& s, auto&, auto&, auto&, double loss) { return s.observe(loss); });
       }},
      {"article gradient-based (freq 50)", 2,
       [] {
         return adapt(ArticleGradientBased(
                          {.initialRank = 2, .maxRank = maxRank, .adjustmentFrequency = 50}),
                      [](auto& s, auto&, const Mat& X, const Mat& dY, double) {
                        return s.observe(gradientSpectrum(X, dY));
                      });
       }},
      {"article gradient-informed (interval 50)", 2,
       [] {
         return adapt(ArticleGradientInformed({.initialRank = 2, .adjustmentInterval = 50}),
                      [](auto& s, const lora::Layer<double>& layer, auto&, auto&, double) {
                        return s.observe(FactorGradients{layer.gradA(), layer.gradB()});
                      });
       }},
      {"full gradient (interval 10)", 2,
       [] {
         return adapt(
             FullGradientSelector({.initialRank = 2, .maxRank = maxRank, .interval = 10}),
             [](auto& s, const lora::Layer<double>& layer, const Mat& X, const Mat& dY, double) {
               return s.observe(gradientSignal(X, dY, layer.B(), layer.A()));
             });
       }},
      {"SVD energy 90% (interval 50)", 2,
       [] {
         auto count = std::make_shared<int>(0);
         return adapt(SvdEnergySelector({.initialRank = 2, .maxRank = maxRank, .energy = 0.9}),
                      [count](auto& s, const lora::Layer<double>& layer, auto&, auto&, double) {
                        if (++*count % 50 != 0)
                          return lora::rank::Decision{false, "wait", layer.rank()};
                        return s.observe(layer.spectrum());
                      });
       }},
  };
}

std::vector<double> g_curveRank2, g_curveRank8;  // seed-0 loss curves of the fixed-rank runs

void dynamicRank() {
  const Task task;
  const int steps = sizes.steps, seeds = sizes.seeds;
  constexpr double lr = 0.02;
  const std::vector<int> marks = {0, 250, 500, 1000, 1500};
  fmt::print("\n#### Dynamic rank: true rank 8, start at rank 2, SGD lr {}, {} steps, {} seeds\n\n",
             lr, steps, seeds);
  fmt::print(
      "| selector | final test MSE (mean ± std) | rank at step 0 / 250 / 500 / 1000 / 1500 (seed "
      "0) | final ranks | parameter-steps (M) |\n");
  fmt::print("| --- | --- | --- | --- | --- |\n");
  for (const Config& c : configs()) {
    std::vector<double> finals;
    std::string trajectory, finalRanks;
    double paramSteps = 0;
    for (int seed = 0; seed < seeds; ++seed) {
      Mat W = task.W;
      lora::Layer<double> layer(
          W, {.rank = c.startRank, .alpha = double(c.startRank), .seed = std::uint64_t(seed)});
      Step step = c.make ? c.make() : Step{};
      lora::Rng data(100 + seed);
      Mat X, Y;
      for (int t = 0; t <= steps; ++t) {
        if (seed == 0 && std::find(marks.begin(), marks.end(), t) != marks.end())
          trajectory += fmt::format("{}{}", trajectory.empty() ? "" : " / ", layer.rank());
        if (t == steps) break;
        task.batchAt(data, X, Y);
        const Mat pred = layer.forward(X);
        const Mat diff = pred - Y;
        const double loss = 0.5 * diff.squaredNorm() / double(X.rows());
        if (seed == 0 && c.name == "fixed rank 2") g_curveRank2.push_back(loss);
        if (seed == 0 && c.name == "fixed rank 8") g_curveRank8.push_back(loss);
        const Mat dY = diff / double(X.rows());
        layer.backward(X, dY, lora::GradMode::Overwrite);
        paramSteps += double(layer.rank() * (task.in + task.out));
        if (step) {
          const Index want = step(layer, X, dY, loss);
          if (want > 0 && want != layer.rank()) {
            layer.resize(want);
            layer.backward(X, dY,
                           lora::GradMode::Overwrite);  // the step below uses the new factors
          }
        }
        layer.updateFactors(-lr * layer.gradA(), -lr * layer.gradB());
      }
      const Mat err = layer.forward(task.Xtest) - task.Ytest;
      finals.push_back(err.squaredNorm() / double(err.size()));
      finalRanks += fmt::format("{}{}", finalRanks.empty() ? "" : ", ", layer.rank());
    }
    double mean = 0, var = 0;
    for (double f : finals) mean += f / seeds;
    for (double f : finals) var += (f - mean) * (f - mean) / (seeds - 1);
    fmt::print("| {} | {:.4g} ± {:.2g} | {} | {} | {:.2f} |\n", c.name, mean, std::sqrt(var),
               trajectory, finalRanks, paramSteps / seeds / 1e6);
  }
}

// (c) The two loss-plateau rules replayed, without resizing, over real training curves: the
// fixed-rank-2 run (stuck at what rank 2 can fit: growth is needed) and the fixed-rank-8 run
// (at its noise floor: growth cannot help).
template <typename S>
std::string replayCurve(S s, const std::vector<double>& losses) {
  int adjustments = 0;
  long first = -1;
  std::map<std::string, int> reasons;
  for (std::size_t t = 0; t < losses.size(); ++t) {
    const lora::rank::Decision d = s.observe(losses[t]);
    ++reasons[d.reason];
    if (d.adjust) {
      if (first < 0) first = long(t);
      ++adjustments;
      s.setRank(d.newRank);
    }
  }
  std::string top;
  for (const auto& [reason, n] : reasons)
    top += fmt::format("{}{} {}", top.empty() ? "" : ", ", reason, n);
  return fmt::format("{} | {} | {} | {}", adjustments,
                     first < 0 ? std::string("never") : std::to_string(first), s.currentRank(),
                     top);
}

void replayCurves() {
  using namespace lora::rank;
  fmt::print(
      "\n#### Loss-plateau rules replayed over the seed-0 training curves above (rank applied to "
      "the rule only)\n\n");
  fmt::print(
      "| curve | rule | adjustments | first at step | final rank | decisions |\n| --- | --- | --- "
      "| --- | --- | --- |\n");
  for (const auto& [curve, losses] : {std::pair{"fixed rank 2 (needs more rank)", &g_curveRank2},
                                      std::pair{"fixed rank 8 (noise floor)", &g_curveRank8}}) {
    fmt::print("| {} | article (patience 10) | {} |\n", curve,
               replayCurve(ArticleLossPlateau(
                               {.initialRank = 2, .minRank = 1, .maxRank = 32, .patience = 10}),
                           *losses));
    fmt::print(
        "| {} | slope (window 20) | {} |\n", curve,
        replayCurve(SlopePlateau({.initialRank = 2, .minRank = 1, .maxRank = 32, .window = 20}),
                    *losses));
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--quick") {
      sizes = Sizes{.trials = 1, .steps = 150, .seeds = 2};
    } else {
      fmt::print(stderr, "usage: rank_selection [--quick]\n");
      return 2;
    }
  }
  fmt::print("### Rank selection, measured (examples/rank_selection.cpp)\n");
  plantedRecovery();
  dynamicRank();
  replayCurves();
  return 0;
}
