// lora/train optimizers: SGD and AdamW against element-by-element references of PyTorch's
// documented algorithms, global-norm clipping, LoRA+, all-or-nothing steps, and the state carried
// across a resize (bit-identical same-rank resize, carried moments = the new coordinates'
// gradients, grow semantics, second-moment rules, resizes behind the optimizer's back).
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lora/layer.hpp"
#include "lora/train/optimizer.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

using lora::test::errorOf;
using lora::test::gaussian;
using Mat = Eigen::MatrixXd;
using lora::train::AdamW;
using lora::train::Optimizer;
using lora::train::Sgd;

lora::Layer<double> makeLayer(Eigen::Index out, Eigen::Index in, Eigen::Index r,
                              std::uint64_t seed) {
  return lora::Layer<double>::fromFactors(gaussian<double>(r, in, seed, 0.3),
                                          gaussian<double>(out, r, seed + 1, 0.3), 2.0 * r);
}

// Gradients for step `step`: backward with a seeded batch (Overwrite).
void backwardAt(lora::Layer<double>& layer, int step, std::uint64_t seed = 100) {
  const Mat X = gaussian<double>(7, layer.inFeatures(), seed + 2 * step);
  const Mat dY = gaussian<double>(7, layer.outFeatures(), seed + 2 * step + 1);
  layer.backward(X, dY, lora::GradMode::Overwrite);
}

double relErr(const Mat& got, const Mat& want) {
  return (got - want).norm() / std::max(want.norm(), 1e-300);
}

// ---- references: PyTorch's documented algorithms, one element at a time ------------------------

struct SgdRef {
  Sgd h;
  Mat buf;
  int t = 0;
  void step(Mat& p, const Mat& grad, double lr) {
    ++t;
    if (buf.size() == 0) buf = Mat::Zero(p.rows(), p.cols());
    for (Eigen::Index i = 0; i < p.size(); ++i) {
      double g = grad(i);
      if (h.weightDecay != 0) g = g + h.weightDecay * p(i);
      if (h.momentum != 0) {
        buf(i) = t > 1 ? h.momentum * buf(i) + (1 - h.dampening) * g : g;
        g = h.nesterov ? g + h.momentum * buf(i) : buf(i);
      }
      p(i) = p(i) - lr * g;
    }
  }
};

struct AdamWRef {
  AdamW h;
  Mat m, v;
  int t = 0;
  void step(Mat& p, const Mat& grad, double lr) {
    ++t;
    if (m.size() == 0) m = v = Mat::Zero(p.rows(), p.cols());
    for (Eigen::Index i = 0; i < p.size(); ++i) {
      const double g = grad(i);
      p(i) = p(i) * (1 - lr * h.weightDecay);
      m(i) = h.beta1 * m(i) + (1 - h.beta1) * g;
      v(i) = h.beta2 * v(i) + (1 - h.beta2) * g * g;
      const double mhat = m(i) / (1 - std::pow(h.beta1, t));
      const double vhat = v(i) / (1 - std::pow(h.beta2, t));
      p(i) = p(i) - lr * mhat / (std::sqrt(vhat) + h.eps);
    }
  }
};

template <typename Rule, typename Ref>
void compareWithReference(const Rule& rule, double loraPlus, double maxNorm, int steps) {
  auto layer = makeLayer(9, 6, 3, 1);
  Optimizer<double, Rule> opt(rule, {.maxGradNorm = maxNorm, .loraPlusRatio = loraPlus});
  opt.add(layer, "l");
  Ref refA, refB;
  refA.h = refB.h = rule;
  Mat A = layer.A(), B = layer.B();
  for (int s = 0; s < steps; ++s) {
    backwardAt(layer, s);
    Mat gA = layer.gradA(), gB = layer.gradB();
    const double norm = std::sqrt(gA.squaredNorm() + gB.squaredNorm());
    if (maxNorm > 0) {
      const double c = std::min(1.0, maxNorm / (norm + 1e-6));
      gA *= c;
      gB *= c;
    }
    const auto report = opt.step();
    EXPECT_NEAR(report.gradNorm, norm, 1e-12 * norm);
    refA.step(A, gA, rule.lr);
    refB.step(B, gB, rule.lr * loraPlus);
    EXPECT_LE(relErr(layer.A(), A), 1e-13) << "step " << s;
    EXPECT_LE(relErr(layer.B(), B), 1e-13) << "step " << s;
  }
}

TEST(Sgd, PlainMatchesTheReference) {
  compareWithReference<Sgd, SgdRef>(Sgd{.lr = 0.1}, 1.0, 0.0, 5);
}
TEST(Sgd, MomentumDampeningAndWeightDecayMatchTheReference) {
  compareWithReference<Sgd, SgdRef>(
      Sgd{.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weightDecay = 0.01}, 1.0, 0.0, 6);
}
TEST(Sgd, NesterovMatchesTheReference) {
  compareWithReference<Sgd, SgdRef>(
      Sgd{.lr = 0.05, .momentum = 0.8, .weightDecay = 0.02, .nesterov = true}, 1.0, 0.0, 6);
}
TEST(AdamW, MatchesTheReference) {
  compareWithReference<AdamW, AdamWRef>(AdamW{.lr = 0.01, .weightDecay = 0.1}, 1.0, 0.0, 8);
}
TEST(AdamW, OtherBetasAndEpsMatchTheReference) {
  compareWithReference<AdamW, AdamWRef>(
      AdamW{.lr = 0.003, .beta1 = 0.5, .beta2 = 0.9, .eps = 1e-3, .weightDecay = 0}, 1.0, 0.0, 8);
}
TEST(Optimizer, LoraPlusGivesBItsRatioTimesTheLearningRate) {
  compareWithReference<Sgd, SgdRef>(Sgd{.lr = 0.01, .momentum = 0.5}, 16.0, 0.0, 4);
  compareWithReference<AdamW, AdamWRef>(AdamW{.lr = 0.01}, 16.0, 0.0, 4);
}
TEST(Optimizer, ClipsTheGlobalNormAsTorchClipGradNorm) {
  compareWithReference<Sgd, SgdRef>(Sgd{.lr = 0.1}, 1.0, 0.05, 4);  // always clipped
  compareWithReference<AdamW, AdamWRef>(AdamW{.lr = 0.01}, 4.0, 0.05, 4);
}

TEST(Optimizer, GlobalNormSpansAllLayersAndClipCoefficientIsReported) {
  auto a = makeLayer(5, 4, 2, 3), b = makeLayer(6, 5, 3, 5);
  backwardAt(a, 0);
  backwardAt(b, 1);
  const double norm = std::sqrt(a.gradA().squaredNorm() + a.gradB().squaredNorm() +
                                b.gradA().squaredNorm() + b.gradB().squaredNorm());
  const Mat A0 = a.A();
  const Mat gA = a.gradA();
  Optimizer<double, Sgd> opt(Sgd{.lr = 1.0}, {.maxGradNorm = 0.5 * norm});
  opt.add(a);
  opt.add(b);
  const auto report = opt.step();
  EXPECT_NEAR(report.gradNorm, norm, 1e-12 * norm);
  EXPECT_NEAR(report.clipCoefficient, 0.5 * norm / (norm + 1e-6), 1e-15);
  EXPECT_LE(relErr(a.A(), A0 - report.clipCoefficient * gA), 1e-14);
  EXPECT_EQ(a.gradA(), gA);  // the layer's own gradients are left alone
  // Below the threshold nothing is scaled.
  Optimizer<double, Sgd> loose(Sgd{.lr = 1.0}, {.maxGradNorm = 10 * norm});
  auto c = makeLayer(5, 4, 2, 3);
  backwardAt(c, 0);
  loose.add(c);
  EXPECT_EQ(loose.step().clipCoefficient, 1.0);
}

TEST(Optimizer, FloatLayersTrain) {
  auto layer =
      lora::Layer<float>::fromFactors(gaussian<float>(2, 6, 1), gaussian<float>(5, 2, 2), 4.0);
  lora::train::AdamWOptimizer<float> opt(AdamW{.lr = 1e-2}, {.maxGradNorm = 1.0});
  opt.add(layer);
  const Eigen::MatrixXf X = gaussian<float>(8, 6, 3), target = gaussian<float>(8, 5, 4);
  double first = 0, last = 0;
  for (int s = 0; s < 60; ++s) {
    const Eigen::MatrixXf Y = layer.adapterForward(X);
    const double loss = (Y - target).squaredNorm() / static_cast<double>(Y.size());
    if (s == 0) first = loss;
    last = loss;
    layer.backward(X, (2.0f / static_cast<float>(Y.size())) * (Y - target),
                   lora::GradMode::Overwrite);
    opt.step(loss);
  }
  EXPECT_LT(last, 0.7 * first);
  EXPECT_EQ(opt.steps(), 60);
}

// ---- bad input ---------------------------------------------------------------------------------

TEST(Optimizer, RejectsBadHyperparameters) {
  EXPECT_CONTAINS(errorOf([] { Optimizer<double, Sgd>(Sgd{.lr = -1}); }), "learning rate");
  EXPECT_CONTAINS(errorOf([] { Optimizer<double, Sgd>(Sgd{.lr = 0.1, .nesterov = true}); }),
                  "Nesterov");
  EXPECT_CONTAINS(
      errorOf(
          [] { Optimizer<double, Sgd>(Sgd{.momentum = 0.9, .dampening = 0.1, .nesterov = true}); }),
      "zero dampening");
  EXPECT_CONTAINS(errorOf([] { Optimizer<double, Sgd>(Sgd{.momentum = -0.1}); }), "momentum");
  EXPECT_CONTAINS(errorOf([] { Optimizer<double, AdamW>(AdamW{.beta1 = 1.0}); }), "beta1");
  EXPECT_CONTAINS(errorOf([] { Optimizer<double, AdamW>(AdamW{.beta2 = -0.5}); }), "beta2");
  EXPECT_CONTAINS(errorOf([] { Optimizer<double, AdamW>(AdamW{.eps = NAN}); }), "eps");
  EXPECT_CONTAINS(errorOf([] { Optimizer<double, AdamW>(AdamW{.weightDecay = -1}); }),
                  "weight decay");
  EXPECT_CONTAINS(errorOf([] { Optimizer<double, AdamW>(AdamW{}, {.maxGradNorm = -1}); }),
                  "maxGradNorm");
  EXPECT_CONTAINS(errorOf([] { Optimizer<double, AdamW>(AdamW{}, {.loraPlusRatio = 0}); }),
                  "loraPlusRatio");
  Optimizer<double, AdamW> opt;
  EXPECT_CONTAINS(errorOf([&] { opt.setLearningRate(INFINITY); }), "AdamW::validate()");
  EXPECT_EQ(opt.learningRate(), 1e-3);
}

TEST(Optimizer, RejectsBadRegistration) {
  auto layer = makeLayer(4, 3, 2, 1);
  Optimizer<double, Sgd> opt;
  EXPECT_CONTAINS(errorOf([&] { opt.step(); }), "expected at least one layer");
  opt.add(layer, "q");
  EXPECT_CONTAINS(errorOf([&] { opt.add(layer); }), "'q' a second time");
  auto other = makeLayer(4, 3, 2, 2);
  EXPECT_CONTAINS(errorOf([&] { opt.resize(other, 1); }), "registered");
  EXPECT_EQ(opt.nameOf(layer), "q");
  Mat W = Mat::Zero(4, 3);
  layer.bindBase(W);
  layer.merge();
  EXPECT_CONTAINS(errorOf([&] { opt.step(); }), "'q' merged");
  layer.unmerge();
  opt.remove(layer);
  EXPECT_FALSE(opt.contains(layer));
}

// A refused step changes nothing: factors, moments, step counts, the optimizer's count.
template <typename Rule>
void expectRefusedStepChangesNothing(const Rule& rule, bool nanLoss, double hugeLr = 0) {
  auto layer = makeLayer(6, 5, 3, 7);
  Optimizer<double, Rule> opt(rule);
  opt.add(layer, "l");
  backwardAt(layer, 0);
  opt.step();
  if (hugeLr > 0) opt.setLearningRate(hugeLr);
  backwardAt(layer, 1);
  const Mat A = layer.A(), B = layer.B();
  const auto before = opt.state(layer);
  const std::string message =
      nanLoss ? errorOf([&] { opt.step(std::nan("")); }) : errorOf([&] { opt.step(); });
  EXPECT_CONTAINS(message, "step refused");
  EXPECT_EQ(layer.A(), A);
  EXPECT_EQ(layer.B(), B);
  const auto after = opt.state(layer);
  EXPECT_EQ(after.firstA, before.firstA);
  EXPECT_EQ(after.secondA, before.secondA);
  EXPECT_EQ(after.firstB, before.firstB);
  EXPECT_EQ(after.steps, before.steps);
  EXPECT_EQ(opt.steps(), 1);
}

TEST(Optimizer, RefusesNanOrInfiniteLossChangingNothing) {
  expectRefusedStepChangesNothing(AdamW{.lr = 0.01}, true);
  expectRefusedStepChangesNothing(Sgd{.lr = 0.01, .momentum = 0.9}, true);
  auto layer = makeLayer(3, 3, 1, 1);
  Optimizer<double, Sgd> opt;
  opt.add(layer);
  EXPECT_CONTAINS(errorOf([&] { opt.step(INFINITY); }), "expected a finite loss, got inf");
}

TEST(Optimizer, RefusesAnUpdateThatWouldOverflowChangingNothing) {
  expectRefusedStepChangesNothing(Sgd{.lr = 0.01, .momentum = 0.9}, false, 1e308);
  expectRefusedStepChangesNothing(AdamW{.lr = 0.01, .weightDecay = 0}, false, 1e308);
}

// ---- state across a resize ---------------------------------------------------------------------

template <typename Rule>
void expectSameRankResizeIsBitIdentical(const Rule& rule) {
  auto plain = makeLayer(8, 6, 4, 11), resized = makeLayer(8, 6, 4, 11);
  Optimizer<double, Rule> a(rule, {.maxGradNorm = 0.5, .loraPlusRatio = 4});
  Optimizer<double, Rule> b(rule, {.maxGradNorm = 0.5, .loraPlusRatio = 4});
  a.add(plain);
  b.add(resized);
  for (int s = 0; s < 12; ++s) {
    if (s == 4) {
      const auto report = b.resize(resized, 4);  // same rank, same basis: identity transforms
      EXPECT_EQ(report.transformA, Mat::Identity(4, 4));
    }
    if (s == 8) {  // the same through carryState after the caller's own resize
      const auto report = resized.resize(4);
      b.carryState(resized, report);
    }
    backwardAt(plain, s);
    backwardAt(resized, s);
    a.step();
    b.step();
    ASSERT_EQ(plain.A(), resized.A()) << "step " << s;
    ASSERT_EQ(plain.B(), resized.B()) << "step " << s;
  }
  EXPECT_EQ(a.state(plain).firstA, b.state(resized).firstA);
  EXPECT_EQ(a.state(plain).secondB, b.state(resized).secondB);
  EXPECT_EQ(a.state(plain).steps, b.state(resized).steps);
}

TEST(StateCarry, SameRankSameBasisResizeLeavesTheTrajectoryBitIdentical) {
  expectSameRankResizeIsBitIdentical(AdamW{.lr = 0.01, .weightDecay = 0.1});
  expectSameRankResizeIsBitIdentical(Sgd{.lr = 0.05, .momentum = 0.9, .dampening = 0.1});
}

// After one SGD-momentum step the buffer is exactly the gradient, and Adam's m is (1 − β1) g
// (learning rate 0, so the factors stay where the gradient was taken). Carried into the new basis
// they must equal the gradient of the resized layer for the same X and dY: the old gradient
// projected onto the new factors.
template <typename Rule>
void expectCarriedFirstMomentIsTheNewGradient(
    const Rule& rule, double factor,
    const std::function<lora::ResizeReport<double>(Optimizer<double, Rule>&, lora::Layer<double>&)>&
        change) {
  auto layer = makeLayer(10, 8, 5, 21);
  Optimizer<double, Rule> opt(rule);
  opt.add(layer);
  const Mat X = gaussian<double>(12, 8, 31), dY = gaussian<double>(12, 10, 32);
  layer.backward(X, dY, lora::GradMode::Overwrite);
  opt.step();
  const auto report = change(opt, layer);
  layer.backward(X, dY, lora::GradMode::Overwrite);  // the new coordinates' gradient
  const auto state = opt.state(layer);
  ASSERT_EQ(state.firstA.rows(), layer.rank());
  EXPECT_LE(relErr(state.firstA, factor * layer.gradA()), 1e-10);
  EXPECT_LE(relErr(state.firstB, factor * layer.gradB()), 1e-10);
  (void)report;
}

TEST(StateCarry, CarriedFirstMomentsAreTheOldOnesProjectedOntoTheNewFactors) {
  using SgdOpt = Optimizer<double, Sgd>;
  using AdamOpt = Optimizer<double, AdamW>;
  const Sgd sgd{.lr = 0, .momentum = 0.9};
  const AdamW adam{.lr = 0, .beta1 = 0.8};
  // Shrink, under both alpha policies and every sigma split.
  for (auto split :
       {lora::SigmaSplit::Balanced, lora::SigmaSplit::IntoA, lora::SigmaSplit::IntoB}) {
    for (auto alpha : {lora::AlphaPolicy::KeepScaling, lora::AlphaPolicy::KeepAlpha}) {
      SCOPED_TRACE(static_cast<int>(split) * 10 + static_cast<int>(alpha));
      expectCarriedFirstMomentIsTheNewGradient<Sgd>(
          sgd, 1.0, [&](SgdOpt& o, lora::Layer<double>& l) {
            return o.resize(l, 3, {.split = split, .alpha = alpha});
          });
      expectCarriedFirstMomentIsTheNewGradient<AdamW>(
          adam, 0.2, [&](AdamOpt& o, lora::Layer<double>& l) {
            return o.resize(l, 2, {.split = split, .alpha = alpha});
          });
    }
  }
  // Same rank, new basis (every triplet kept, reordered).
  expectCarriedFirstMomentIsTheNewGradient<Sgd>(sgd, 1.0, [](SgdOpt& o, lora::Layer<double>& l) {
    return o.keepDirections(l, {4, 2, 0, 1, 3});
  });
}

TEST(StateCarry, CarriedMomentsFollowTheDocumentedMaps) {
  for (auto rule :
       {lora::train::SecondMomentCarry::Bound, lora::train::SecondMomentCarry::Diagonal}) {
    auto layer = makeLayer(10, 8, 5, 41);
    Optimizer<double, AdamW> opt(AdamW{.lr = 0.01}, {.secondMoments = rule});
    opt.add(layer);
    for (int s = 0; s < 5; ++s) {
      backwardAt(layer, s);
      opt.step();
    }
    const auto before = opt.state(layer);
    const auto report = opt.resize(layer, 3, {.alpha = lora::AlphaPolicy::KeepAlpha});
    const auto after = opt.state(layer);
    const double c = report.newScaling / report.oldScaling;
    const Mat& TA = report.transformA;  // k x r
    const Mat& TB = report.transformB;  // r x k
    EXPECT_LE(relErr(after.firstA, c * TB.transpose() * before.firstA), 1e-13);
    EXPECT_LE(relErr(after.firstB, c * before.firstB * TA.transpose()), 1e-13);
    Mat wantA(3, 8), wantB(10, 3);
    for (Eigen::Index j = 0; j < 3; ++j) {
      const Eigen::VectorXd wA = TB.col(j), wB = TA.row(j).transpose();
      if (rule == lora::train::SecondMomentCarry::Diagonal) {
        wantA.row(j) = c * c * (wA.cwiseAbs2().transpose() * before.secondA);
        wantB.col(j) = c * c * (before.secondB * wB.cwiseAbs2());
      } else {
        wantA.row(j) = c * c * wA.cwiseAbs().sum() * (wA.cwiseAbs().transpose() * before.secondA);
        wantB.col(j) = c * c * wB.cwiseAbs().sum() * (before.secondB * wB.cwiseAbs());
      }
    }
    EXPECT_LE(relErr(after.secondA, wantA), 1e-13);
    EXPECT_LE(relErr(after.secondB, wantB), 1e-13);
    EXPECT_EQ(after.steps, (lora::train::StepCounts{5, 5, 5}));
    // The bound is never below the diagonal rule's value.
    if (rule == lora::train::SecondMomentCarry::Bound) {
      for (Eigen::Index j = 0; j < 3; ++j) {
        const Eigen::VectorXd w = TB.col(j);
        const Eigen::RowVectorXd diag = c * c * (w.cwiseAbs2().transpose() * before.secondA);
        EXPECT_TRUE((after.secondA.row(j).array() >= diag.array() * (1 - 1e-12)).all());
      }
    }
    // And training goes on.
    backwardAt(layer, 9);
    EXPECT_NO_THROW(opt.step());
  }
}

TEST(StateCarry, GrowKeepsOldCoordinatesAndStartsNewOnesFresh) {
  auto layer = makeLayer(9, 7, 3, 51);
  Optimizer<double, AdamW> opt(AdamW{.lr = 0.01, .weightDecay = 0});
  opt.add(layer);
  for (int s = 0; s < 4; ++s) {
    backwardAt(layer, s);
    opt.step();
  }
  const auto before = opt.state(layer);
  opt.resize(layer, 5);
  const auto after = opt.state(layer);
  EXPECT_EQ(after.firstA.topRows(3), before.firstA);
  EXPECT_EQ(after.secondA.topRows(3), before.secondA);
  EXPECT_EQ(after.firstB.leftCols(3), before.firstB);
  EXPECT_EQ(after.secondB.leftCols(3), before.secondB);
  EXPECT_EQ(after.firstA.bottomRows(2).norm(), 0.0);
  EXPECT_EQ(after.secondB.rightCols(2).norm(), 0.0);
  EXPECT_EQ(after.steps, (lora::train::StepCounts{4, 4, 4, 0, 0}));
  // A new direction's first step is a fresh Adam step: bias-corrected with t = 1, the update of
  // each entry is lr · g / (|g| + eps) (B's new columns; A's new rows get zero gradient).
  backwardAt(layer, 4);
  const Mat B0 = layer.B(), gB = layer.gradB();
  opt.step();
  const Mat want = B0.rightCols(2).array() -
                   0.01 * gB.rightCols(2).array() / (gB.rightCols(2).array().abs() + 1e-8);
  EXPECT_LE(relErr(layer.B().rightCols(2), want), 1e-12);
  EXPECT_EQ(opt.state(layer).steps, (lora::train::StepCounts{5, 5, 5, 1, 1}));
}

TEST(StateCarry, SgdMomentumOnAGrownDirectionStartsAsPytorchsFirstStep) {
  // With dampening, PyTorch's first step sets b = g (no dampening); a grown direction does too.
  auto layer = makeLayer(6, 5, 2, 61);
  Optimizer<double, Sgd> opt(Sgd{.lr = 0.1, .momentum = 0.9, .dampening = 0.5});
  opt.add(layer);
  backwardAt(layer, 0);
  opt.step();
  opt.resize(layer, 3);
  backwardAt(layer, 1);
  const Mat gB = layer.gradB();
  const Mat oldBuf = opt.state(layer).firstB;
  opt.step();
  const auto s = opt.state(layer);
  EXPECT_LE(relErr(s.firstB.col(2), gB.col(2)), 1e-15);  // fresh direction: b = g
  EXPECT_LE(relErr(s.firstB.leftCols(2), 0.9 * oldBuf.leftCols(2) + 0.5 * gB.leftCols(2)), 1e-14);
}

TEST(StateCarry, AResizeBehindTheOptimizersBackIsAnError) {
  auto layer = makeLayer(8, 6, 4, 71);
  Optimizer<double, AdamW> opt(AdamW{.lr = 0.01});
  opt.add(layer, "q_proj");
  backwardAt(layer, 0);
  opt.step();
  const auto report = layer.resize(2);  // behind its back
  backwardAt(layer, 1);
  const Mat A = layer.A();
  const std::string msg = errorOf([&] { opt.step(); });
  EXPECT_CONTAINS(msg, "Optimizer::step(): expected layer 'q_proj' at rank 4");
  EXPECT_CONTAINS(msg, "got rank 2");
  EXPECT_CONTAINS(msg, "behind the optimizer's back");
  EXPECT_EQ(layer.A(), A);
  EXPECT_CONTAINS(errorOf([&] { opt.resize(layer, 1); }), "behind the optimizer's back");
  EXPECT_EQ(layer.rank(), 2);
  // A report that does not fit is refused; the right one recovers.
  auto wrong = report;
  wrong.oldRank = 3;
  EXPECT_CONTAINS(errorOf([&] { opt.carryState(layer, wrong); }), "from rank 4");
  auto badShape = report;
  badShape.transformA = Mat::Zero(2, 3);
  EXPECT_CONTAINS(errorOf([&] { opt.carryState(layer, badShape); }), "transformA");
  opt.carryState(layer, report);
  EXPECT_NO_THROW(opt.step());
}

TEST(StateCarry, ABasisChangeAtTheSameRankBehindTheBackIsAnError) {
  auto layer = makeLayer(8, 6, 3, 81);
  Optimizer<double, Sgd> opt(Sgd{.lr = 0.01, .momentum = 0.9});
  opt.add(layer, "v_proj");
  backwardAt(layer, 0);
  opt.step();
  layer.keepDirections({2, 1, 0});  // same rank, other coordinates
  backwardAt(layer, 1);
  EXPECT_CONTAINS(errorOf([&] { opt.step(); }), "factors changed behind its back");
  layer.updateFactors(Mat::Zero(3, 6), Mat::Constant(8, 3, 1e-3));  // any outside change
  EXPECT_CONTAINS(errorOf([&] { opt.step(); }), "'v_proj'");
  opt.resetState(layer);  // accept the layer as it is, fresh state
  EXPECT_EQ(opt.state(layer).steps, (lora::train::StepCounts{0, 0, 0}));
  EXPECT_NO_THROW(opt.step());
}

TEST(StateCarry, SgdWithoutMomentumKeepsNoStateAndStillFollowsResizes) {
  auto layer = makeLayer(8, 6, 4, 91);
  Optimizer<double, Sgd> opt(Sgd{.lr = 0.01});
  opt.add(layer);
  backwardAt(layer, 0);
  opt.step();
  opt.resize(layer, 2);
  EXPECT_EQ(opt.state(layer).firstA.size(), 0);
  backwardAt(layer, 1);
  EXPECT_NO_THROW(opt.step());
  EXPECT_EQ(opt.state(layer).steps, (lora::train::StepCounts{2, 2}));
}

}  // namespace
