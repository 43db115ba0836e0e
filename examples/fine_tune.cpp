// A LoRA fine-tune with the training toolkit: the rank manager recommends initial ranks and
// adjusts them from the metrics, the monitor records every step, AdamW (with global-norm clipping
// and LoRA+) trains, and a mid-training shrink carries Adam's moments into the new basis. Prints
// the monitor's report and suggestions at the end.
//
//   build/bin/fine_tune [--config lora_rank_config.json] [--out fine_tune_out] [--steps 1600]
//                       [--seed 1] [--write-config]
//   build/bin/fine_tune --resize-study [--seeds 5]      (the measurement in docs/training.md)
//
// The task: a frozen random network x -> head(output(relu(intermediate(x)))) (a BERT feed-forward
// block, 64 -> 256 -> 64, and a 10-class head) and a teacher that differs from it by a rank-6
// delta on intermediate.dense and a rank-4 delta on output.dense. Labels are the teacher's argmax
// with 5% of them flipped at random (16384 training and 1024 held-out examples). LoRA adapts the
// two dense layers of the student. Every 20 steps the rank manager sees the loss and accuracy on
// the whole training set (training metrics, as in the article), and at mid-training
// intermediate.dense is shrunk to the rank that keeps 90% of its delta's energy.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "lora/layer.hpp"
#include "lora/linalg/householder_qr.hpp"
#include "lora/linalg/spectrum.hpp"
#include "lora/linalg/statistics.hpp"
#include "lora/random.hpp"
#include "lora/rank/rank_config.hpp"
#include "lora/train/train.hpp"

namespace {

namespace fs = std::filesystem;
using Mat = Eigen::MatrixXf;
using Vec = Eigen::VectorXf;
using Index = Eigen::Index;
using lora::train::AdamW;
using lora::train::Optimizer;
using lora::train::Sgd;

constexpr Index kIn = 64, kHidden = 256, kClasses = 10;
const std::string kInter = "encoder.layer.0.intermediate.dense";
const std::string kOut = "encoder.layer.0.output.dense";

Mat gaussian(Index rows, Index cols, lora::Rng& rng, double stddev) {
  Mat m(rows, cols);
  lora::fillNormal(m, rng, 0.0, stddev);
  return m;
}
Mat planted(Index out, Index in, Index k, double scale, lora::Rng& rng) {
  const Mat U = lora::linalg::ThinQR<Mat::Scalar>(gaussian(out, k, rng, 1.0)).matrixQ();
  const Mat V = lora::linalg::ThinQR<Mat::Scalar>(gaussian(in, k, rng, 1.0)).matrixQ();
  const Vec sigma = Vec::LinSpaced(k, static_cast<float>(scale), static_cast<float>(scale / 3));
  return U * sigma.asDiagonal() * V.transpose();
}

// The frozen network, the data, and the teacher's labels.
struct Task {
  Mat W1, W2, Wh;  // intermediate (256 x 64), output (64 x 256), head (10 x 64)
  Vec b1, b2, bh;
  Mat Xtrain, Xtest;
  std::vector<int> ytrain, ytest;

  explicit Task(std::uint64_t seed) {
    lora::Rng rng(seed);
    W1 = gaussian(kHidden, kIn, rng, 1.0 / std::sqrt(double(kIn)));
    W2 = gaussian(kIn, kHidden, rng, 1.0 / std::sqrt(double(kHidden)));
    Wh = gaussian(kClasses, kIn, rng, 1.0 / std::sqrt(double(kIn)));
    b1 = gaussian(kHidden, 1, rng, 0.1);
    b2 = Vec::Zero(kIn);
    bh = Vec::Zero(kClasses);
    const Mat T1 = W1 + planted(kHidden, kIn, 6, 2.0, rng);
    const Mat T2 = W2 + planted(kIn, kHidden, 4, 2.0, rng);
    const auto label = [&](const Mat& X, std::vector<int>& y) {
      const Mat H = ((X * T1.transpose()).rowwise() + b1.transpose()).cwiseMax(0.0f);
      const Mat Z = ((H * T2.transpose()).rowwise() + b2.transpose()) * Wh.transpose();
      y.resize(static_cast<std::size_t>(X.rows()));
      for (Index i = 0; i < X.rows(); ++i) {
        Index c = 0;
        Z.row(i).maxCoeff(&c);
        if (rng.uniform01() < 0.05) c = static_cast<Index>(rng() % kClasses);
        y[static_cast<std::size_t>(i)] = static_cast<int>(c);
      }
    };
    Xtrain = gaussian(16384, kIn, rng, 1.0);
    Xtest = gaussian(1024, kIn, rng, 1.0);
    label(Xtrain, ytrain);
    label(Xtest, ytest);
  }
};

// The student: the frozen network with LoRA on the two dense layers. Not movable once built: the
// optimizer and the monitor keep pointers to its layers.
struct Student {
  Task& task;
  lora::Layer<float> inter, out;

  Student(Task& t, Index rankInter, Index rankOut, std::uint64_t seed)
      : task(t),
        inter(kHidden, kIn, {.rank = rankInter, .alpha = 2.0 * rankInter, .seed = seed}),
        out(kIn, kHidden, {.rank = rankOut, .alpha = 2.0 * rankOut, .seed = seed + 1}) {
    inter.bindBase(t.W1, t.b1);
    out.bindBase(t.W2, t.b2);
  }
  Student(const Student&) = delete;
  Student& operator=(const Student&) = delete;

  lora::Layer<float>& layer(const std::string& name) { return name == kInter ? inter : out; }

  struct Result {
    double loss = 0, accuracy = 0;
  };
  // Cross-entropy and accuracy on (X, y); with backward, the gradients of the mean loss.
  Result run(const Mat& X, const std::vector<int>& y, bool backward) {
    const Mat pre = inter.forward(X);
    const Mat H = pre.cwiseMax(0.0f);
    const Mat H2 = out.forward(H);
    const Mat Z = (H2 * task.Wh.transpose()).rowwise() + task.bh.transpose();
    const Index n = X.rows();
    Mat P(n, kClasses);
    Result r;
    for (Index i = 0; i < n; ++i) {
      const float m = Z.row(i).maxCoeff();
      const Eigen::RowVectorXf e = (Z.row(i).array() - m).exp().matrix();
      const float sum = e.sum();
      P.row(i) = e / sum;
      const int yi = y[static_cast<std::size_t>(i)];
      r.loss -= std::log(static_cast<double>(P(i, yi)));
      Index c = 0;
      Z.row(i).maxCoeff(&c);
      r.accuracy += c == yi ? 1.0 : 0.0;
    }
    r.loss /= static_cast<double>(n);
    r.accuracy /= static_cast<double>(n);
    if (backward) {
      Mat dZ = P;
      for (Index i = 0; i < n; ++i) dZ(i, y[static_cast<std::size_t>(i)]) -= 1.0f;
      dZ /= static_cast<float>(n);
      const Mat dH2 = dZ * task.Wh;
      Mat dH;
      out.backward(H, dH2, dH, lora::GradMode::Overwrite);
      const Mat dPre = dH.cwiseProduct((pre.array() > 0.0f).cast<float>().matrix());
      inter.backward(X, dPre, lora::GradMode::Overwrite);
    }
    return r;
  }
};

// Minibatch `step` of the training set (the same batches for every run with the same seed).
void batch(const Task& t, int step, std::uint64_t seed, Mat& X, std::vector<int>& y) {
  lora::Rng rng(seed * 1000003ULL + static_cast<std::uint64_t>(step));
  const Index n = 128;
  X.resize(n, kIn);
  y.resize(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const auto k = static_cast<Index>(rng() % static_cast<std::uint64_t>(t.Xtrain.rows()));
    X.row(i) = t.Xtrain.row(k);
    y[static_cast<std::size_t>(i)] = t.ytrain[static_cast<std::size_t>(k)];
  }
}

std::string argValue(int argc, char** argv, const std::string& flag, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == flag) return argv[i + 1];
  return fallback;
}
bool hasFlag(int argc, char** argv, const std::string& flag) {
  for (int i = 1; i < argc; ++i)
    if (argv[i] == flag) return true;
  return false;
}

// ---- the fine-tune ------------------------------------------------------------------------------

int fineTune(int argc, char** argv) {
  const fs::path configPath = argValue(argc, argv, "--config", "lora_rank_config.json");
  const fs::path outDir = argValue(argc, argv, "--out", "fine_tune_out");
  const int steps = std::stoi(argValue(argc, argv, "--steps", "1600"));
  const auto seed = static_cast<std::uint64_t>(std::stoull(argValue(argc, argv, "--seed", "1")));
  fs::create_directories(outDir);

  // The rank manager: the config file (the article's defaults when it is missing), a decision log.
  lora::train::RankManager manager(lora::rank::RankManagerConfig::load(configPath),
                                   outDir / "lora_rank_log.txt");
  if (hasFlag(argc, argv, "--write-config")) {
    manager.saveConfig(configPath);
    fmt::print("wrote the configuration to {}\n", configPath.string());
  }
  const auto recs = manager.recommendInitialRanks(
      {{kInter, {kIn, kHidden}}, {kOut, {kHidden, kIn}}}, lora::train::TaskComplexity::Medium,
      lora::train::ResourceConstraints{.memoryGb = 8, .computeBudget = 0.5});
  fmt::print("Recommended initial ranks:\n");
  for (const auto& r : recs)
    fmt::print("  {}: rank {}, initialization {}\n    reasoning: {}\n", r.layer, r.rank,
               r.initialization, r.reasoning);

  Task task(seed);
  Student student(task, recs[0].rank, recs[1].rank, seed);
  Optimizer<float, AdamW> opt(AdamW{.lr = 2e-3, .weightDecay = 0.01},
                              {.maxGradNorm = 1.0, .loraPlusRatio = 4.0});
  opt.add(student.inter, kInter);
  opt.add(student.out, kOut);
  lora::train::Monitor monitor;
  monitor.watch(kInter, student.inter);
  monitor.watch(kOut, student.out);

  Mat X;
  std::vector<int> y;
  const int shrinkAt = steps / 2;
  for (int step = 0; step < steps; ++step) {
    if (step == shrinkAt) {  // the scheduled mid-training shrink, state carried
      const Index k = lora::linalg::energyRank(student.inter.spectrum(), 0.9);
      if (k < student.inter.rank()) {
        const double before = student.run(task.Xtrain, task.ytrain, false).loss;
        const auto report = opt.resize(student.inter, k);
        const double after = student.run(task.Xtrain, task.ytrain, false).loss;
        fmt::print(
            "step {}: shrank {} from rank {} to {} (90% energy rank; kept {:.2f}% of the "
            "energy); training loss {:.4f} -> {:.4f}\n",
            step, kInter, report.oldRank, report.newRank, 100 * report.retainedEnergy, before,
            after);
      }
    }
    batch(task, step, seed, X, y);
    const auto r = student.run(X, y, true);
    monitor.collect(step, r.loss, r.accuracy, opt.learningRate());
    opt.step(r.loss);
    if ((step + 1) % 20 == 0) {  // the manager watches the training metrics every 20 steps
      const auto eval = student.run(task.Xtrain, task.ytrain, false);
      const auto d =
          manager.monitorAndAdjust({.loss = eval.loss,
                                    .accuracy = eval.accuracy,
                                    .trainingTime = monitor.history().back().elapsed},
                                   {{kInter, student.inter.rank()}, {kOut, student.out.rank()}});
      for (const auto& a : d.adjustments) {
        opt.resize(student.layer(a.layer), a.newRank);
        fmt::print("step {}: rank manager ({}): {} {} -> {} ({})\n", step, d.status, a.layer,
                   a.oldRank, a.newRank, a.reason);
      }
    }
  }
  const auto test = student.run(task.Xtest, task.ytest, false);
  fmt::print("{}", monitor.report(100).toString());
  fmt::print("\nHeld-out: loss {:.4f}, accuracy {:.2f}%\n", test.loss, 100 * test.accuracy);
  fmt::print("\nSuggestions:\n");
  for (const auto& s : monitor.suggestions()) fmt::print("- [{}] {}\n", s.code, s.message);
  monitor.writeCsv(outDir / "history.csv");
  monitor.writeJson(outDir / "history.json");
  fmt::print("\nWrote {}, {} and the decision log {}\n", (outDir / "history.csv").string(),
             (outDir / "history.json").string(), manager.logPath().string());
  return 0;
}

// ---- the resize study (docs/training.md) --------------------------------------------------------

enum class Variant { NoResize, CarryBound, CarryDiagonal, Reset };
const char* name(Variant v) {
  switch (v) {
    case Variant::NoResize:
      return "no resize";
    case Variant::CarryBound:
      return "carried, bound";
    case Variant::CarryDiagonal:
      return "carried, diagonal";
    case Variant::Reset:
      return "reset";
  }
  return "";
}

constexpr int kBefore = 500;                         // steps at rank 16 before the resize
const std::vector<int> kAfter = {0, 1, 5, 20, 100};  // loss measured this many steps after

struct Curve {
  double before = 0;       // loss just before the resize
  std::vector<double> at;  // loss kAfter steps after it (0: right after, before any step)
  double rise = 0;         // max over steps 1..20 of (loss − loss right after the resize)
};

// The training objective, on the first 4096 training examples.
double objective(Student& s, const Task& t) {
  static thread_local std::vector<int> y;
  y.assign(t.ytrain.begin(), t.ytrain.begin() + 4096);
  return s.run(t.Xtrain.topRows(4096), y, false).loss;
}

// target == 16: keepDirections(0..15), the SVD basis with nothing dropped (a pure change of basis).
template <typename Rule>
Curve runStudy(const Rule& rule, Index target, Variant v, std::uint64_t seed) {
  Task task(seed);
  Student student(task, 16, 8, seed);
  const auto second = v == Variant::CarryDiagonal ? lora::train::SecondMomentCarry::Diagonal
                                                  : lora::train::SecondMomentCarry::Bound;
  Optimizer<float, Rule> opt(rule, {.maxGradNorm = 1.0, .secondMoments = second});
  opt.add(student.inter);
  opt.add(student.out);
  Mat X;
  std::vector<int> y;
  Curve c;
  const int total = kBefore + kAfter.back();
  for (int step = 0; step <= total; ++step) {
    if (step == kBefore) {
      c.before = objective(student, task);
      if (v != Variant::NoResize) {
        if (target == student.inter.rank()) {
          std::vector<Index> all(static_cast<std::size_t>(target));
          for (Index i = 0; i < target; ++i) all[static_cast<std::size_t>(i)] = i;
          opt.keepDirections(student.inter, all);
        } else {
          opt.resize(student.inter, target);
        }
        if (v == Variant::Reset) opt.resetState(student.inter);
      }
    }
    if (step >= kBefore) {
      const int after = step - kBefore;
      const bool listed = std::find(kAfter.begin(), kAfter.end(), after) != kAfter.end();
      if (after <= 20 || listed) {
        const double loss = objective(student, task);
        if (listed) c.at.push_back(loss);
        if (after >= 1 && after <= 20) c.rise = std::max(c.rise, loss - c.at[0]);
      }
    }
    if (step == total) break;
    batch(task, step, seed, X, y);
    const auto r = student.run(X, y, true);
    opt.step(r.loss);
  }
  return c;
}

std::string meanStd(const std::vector<double>& v) {
  return fmt::format("{:.4f} ± {:.4f}", lora::linalg::mean(v), lora::linalg::populationStd(v));
}

template <typename Rule>
void studyTable(const std::string& title, const Rule& rule, int seeds, bool secondMoments) {
  fmt::print("\n#### {}\n\n", title);
  fmt::print(
      "| resize | optimizer state | right after | +5 steps | +20 | +100 | +20 minus no "
      "resize (paired) | +100 minus no resize (paired) | worst rise, steps 1-20 |\n");
  fmt::print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  std::vector<Curve> baseline;
  for (int s = 0; s < seeds; ++s)
    baseline.push_back(runStudy(rule, 16, Variant::NoResize, static_cast<std::uint64_t>(s + 1)));
  std::vector<Variant> variants = {Variant::CarryBound, Variant::Reset};
  if (secondMoments) variants.insert(variants.begin() + 1, Variant::CarryDiagonal);
  std::vector<std::pair<Index, Variant>> rows = {{16, Variant::NoResize}};
  for (Index target : {16, 8, 4})
    for (Variant v : variants) rows.emplace_back(target, v);
  std::vector<double> before;
  for (const auto& c : baseline) before.push_back(c.before);
  for (const auto& [target, v] : rows) {
    std::vector<std::vector<double>> at(kAfter.size());
    std::vector<double> rise, d20, d100;
    for (int s = 0; s < seeds; ++s) {
      const Curve c = v == Variant::NoResize
                          ? baseline[static_cast<std::size_t>(s)]
                          : runStudy(rule, target, v, static_cast<std::uint64_t>(s + 1));
      rise.push_back(c.rise);
      for (std::size_t i = 0; i < kAfter.size(); ++i) at[i].push_back(c.at[i]);
      d20.push_back(c.at[3] - baseline[static_cast<std::size_t>(s)].at[3]);
      d100.push_back(c.at[4] - baseline[static_cast<std::size_t>(s)].at[4]);
    }
    const std::string what = v == Variant::NoResize ? "none (rank 16)"
                             : target == 16         ? "16 → 16, new basis"
                                                    : fmt::format("16 → {}", target);
    fmt::print("| {} | {} | {} | {} | {} | {} | {:+.4f} ± {:.4f} | {:+.4f} ± {:.4f} | {} |\n", what,
               name(v), meanStd(at[0]), meanStd(at[2]), meanStd(at[3]), meanStd(at[4]),
               lora::linalg::mean(d20), lora::linalg::populationStd(d20), lora::linalg::mean(d100),
               lora::linalg::populationStd(d100), meanStd(rise));
  }
  fmt::print("\nLoss before the resize (all rows): {}\n", meanStd(before));
}

int resizeStudy(int argc, char** argv) {
  const int seeds = std::stoi(argValue(argc, argv, "--seeds", "5"));
  fmt::print(
      "Training loss (cross-entropy over the first 4096 training examples) around a resize "
      "of {} after {} steps at rank 16 (output.dense stays at rank 8; global-norm clipping "
      "at 1.0). Mean ± std over {} seeds.\n",
      kInter, kBefore, seeds);
  studyTable("AdamW, lr 2e-3, weight decay 0.01", AdamW{.lr = 2e-3, .weightDecay = 0.01}, seeds,
             true);
  studyTable("AdamW, lr 1e-2, weight decay 0.01", AdamW{.lr = 1e-2, .weightDecay = 0.01}, seeds,
             true);
  studyTable("SGD, lr 0.05, momentum 0.9", Sgd{.lr = 0.05, .momentum = 0.9}, seeds, false);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (hasFlag(argc, argv, "--resize-study")) return resizeStudy(argc, argv);
    return fineTune(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fine_tune: error: %s\n", e.what());
    return 1;
  }
}
