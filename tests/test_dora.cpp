// DoRA that trains: Layer::backward for DoRA layers (dA, dB, dm, dX) against central differences
// of the detached objective, five SGD steps against a dense reference written here (through
// V = W + sBA, not the layer's factored path), and the optimizers carrying the magnitude's state.
#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "lora/layer.hpp"
#include "lora/train/optimizer.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

using lora::test::errorOf;
using lora::test::gaussian;
using MatD = Eigen::MatrixXd;
using VecD = Eigen::VectorXd;

using lora::test::relErr;

VecD rowNorms(const MatD& V) {
  return V.rowwise().norm();
}

// The fixed problem: W (5 x 4), b, A (2 x 4), B (5 x 2), m, X (3 x 4), s = alpha / r = 1.5.
struct Problem {
  MatD W = gaussian<double>(5, 4, 1);
  VecD b = gaussian<double>(5, 1, 2);
  MatD A = gaussian<double>(2, 4, 3, 0.5);
  MatD B = gaussian<double>(5, 2, 4, 0.5);
  VecD m = rowNorms(W).array() * (1.0 + 0.3 * gaussian<double>(5, 1, 5).array().tanh());
  MatD X = gaussian<double>(3, 4, 6);
  double alpha = 3.0;
  double s() const { return alpha / double(A.rows()); }
};

// y = (x V^T) diag(m / n) + b with V = W + sBA and n = ||V||_row, n given (detached).
MatD forwardDense(const MatD& W, const VecD& b, const MatD& A, const MatD& B, const VecD& m,
                  const MatD& X, double s, const VecD& n) {
  const MatD V = W + s * B * A;
  MatD Y = X * V.transpose() * m.cwiseQuotient(n).asDiagonal();
  Y.rowwise() += b.transpose();
  return Y;
}

TEST(DoraBackward, MatchesCentralDifferencesOfTheDetachedObjective) {
  const Problem p;
  const double s = p.s();
  const MatD R = gaussian<double>(3, 5, 7);  // L = Σ R ⊙ Y, so dL/dY = R
  const VecD n0 = rowNorms(p.W + s * p.B * p.A);
  auto L = [&](const MatD& A, const MatD& B, const VecD& m, const MatD& X) {
    return R.cwiseProduct(forwardDense(p.W, p.b, A, B, m, X, s, n0)).sum();
  };

  MatD W = p.W;
  auto layer = lora::Layer<double>::fromFactors(p.A, p.B, p.alpha);
  layer.bindBase(W, p.b);
  layer.setMagnitude(p.m);
  EXPECT_LE(relErr(layer.forward(p.X), forwardDense(p.W, p.b, p.A, p.B, p.m, p.X, s, n0)), 1e-13);
  MatD dX;
  layer.backward(p.X, R, dX, lora::GradMode::Overwrite);

  const double h = 1e-6;
  auto central = [&](auto&& perturbed, Eigen::Index size) {
    VecD g(size);
    for (Eigen::Index k = 0; k < size; ++k) g(k) = (perturbed(k, h) - perturbed(k, -h)) / (2 * h);
    return g;
  };
  const VecD gA = central(
      [&](Eigen::Index k, double d) {
        MatD A = p.A;
        A(k) += d;
        return L(A, p.B, p.m, p.X);
      },
      p.A.size());
  const VecD gB = central(
      [&](Eigen::Index k, double d) {
        MatD B = p.B;
        B(k) += d;
        return L(p.A, B, p.m, p.X);
      },
      p.B.size());
  const VecD gm = central(
      [&](Eigen::Index k, double d) {
        VecD m = p.m;
        m(k) += d;
        return L(p.A, p.B, m, p.X);
      },
      p.m.size());
  const VecD gX = central(
      [&](Eigen::Index k, double d) {
        MatD X = p.X;
        X(k) += d;
        return L(p.A, p.B, p.m, X);
      },
      p.X.size());
  EXPECT_LE(relErr(layer.gradA().reshaped(), gA), 1e-8);
  EXPECT_LE(relErr(layer.gradB().reshaped(), gB), 1e-8);
  EXPECT_LE(relErr(layer.gradMagnitude(), gm), 1e-8);
  EXPECT_LE(relErr(dX.reshaped(), gX), 1e-8);

  // Accumulate adds; the no-dX overload gives the same factor gradients.
  layer.backward(p.X, R);
  EXPECT_LE(relErr(layer.gradMagnitude(), 2 * gm), 1e-8);
  layer.zeroGrad();
  EXPECT_EQ(layer.gradMagnitude(), VecD::Zero(5));
  EXPECT_EQ(layer.parameterCount(), 2 * (4 + 5) + 5);
}

TEST(DoraBackward, NeedsABaseAndAnUnmergedLayer) {
  const Problem p;
  auto layer = lora::Layer<double>::fromFactors(p.A, p.B, p.alpha);
  layer.setMagnitude(p.m);
  const MatD dY = gaussian<double>(3, 5, 8);
  std::string e = errorOf([&] { layer.backward(p.X, dY); });
  EXPECT_NE(e.find("Layer::backward(): expected a bound base weight"), std::string::npos) << e;
  MatD W = p.W;
  layer.bindBase(W);
  layer.merge();
  e = errorOf([&] { layer.backward(p.X, dY); });
  EXPECT_NE(e.find("expected an unmerged DoRA layer"), std::string::npos) << e;
  EXPECT_EQ(layer.gradMagnitude(), VecD::Zero(5));
}

// Five SGD steps on 0.5 ||Y - T||², against a reference that goes through the dense V.
TEST(DoraBackward, SgdTraceMatchesADenseReference) {
  const Problem p;
  const double s = p.s(), lr = 0.05;
  const MatD T = gaussian<double>(3, 5, 9);

  MatD W = p.W;
  auto layer = lora::Layer<double>::fromFactors(p.A, p.B, p.alpha);
  layer.bindBase(W, p.b);
  layer.setMagnitude(p.m);
  lora::train::Optimizer<double, lora::train::Sgd> opt(lora::train::Sgd{.lr = lr});
  opt.add(layer);

  MatD A = p.A, B = p.B;
  VecD m = p.m;
  for (int step = 0; step < 5; ++step) {
    SCOPED_TRACE(step);
    // Reference: y = (x V^T) diag(c) + b; with P = x V^T, dm = colsum(dY ⊙ P) / n,
    // dV = (dY diag(c))^T x, dB = s dV A^T, dA = s B^T dV.
    const MatD V = W + s * B * A;
    const VecD n = rowNorms(V);
    const VecD c = m.cwiseQuotient(n);
    const MatD P = p.X * V.transpose();
    MatD Y = P * c.asDiagonal();
    Y.rowwise() += p.b.transpose();
    const MatD dY = Y - T;
    const VecD gm = dY.cwiseProduct(P).colwise().sum().transpose().cwiseQuotient(n);
    const MatD dV = (dY * c.asDiagonal()).transpose() * p.X;
    const MatD gB = s * dV * A.transpose(), gA = s * B.transpose() * dV;
    A -= lr * gA;
    B -= lr * gB;
    m -= lr * gm;

    const MatD Ylayer = layer.forward(p.X);
    EXPECT_LE(relErr(Ylayer, Y), 1e-12);
    layer.backward(p.X, Ylayer - T, lora::GradMode::Overwrite);
    opt.step();
    EXPECT_LE(relErr(layer.A(), A), 1e-12);
    EXPECT_LE(relErr(layer.B(), B), 1e-12);
    EXPECT_LE(relErr(layer.magnitude(), m), 1e-12);
  }
}

// AdamW keeps moments for m; a resize moves A's and B's moments and leaves m's as they were.
TEST(DoraBackward, OptimizerCarriesTheMagnitudeStateAcrossAResize) {
  const Problem p;
  MatD W = p.W;
  auto layer = lora::Layer<double>::fromFactors(p.A, p.B, p.alpha);
  layer.bindBase(W, p.b);
  layer.setMagnitude(p.m);
  lora::train::Optimizer<double, lora::train::AdamW> opt(lora::train::AdamW{.lr = 1e-2});
  opt.add(layer);
  const MatD T = gaussian<double>(3, 5, 10);
  for (int step = 0; step < 3; ++step) {
    layer.backward(p.X, layer.forward(p.X) - T, lora::GradMode::Overwrite);
    opt.step();
  }
  EXPECT_NE(layer.magnitude(), p.m);
  const auto before = opt.state(layer);
  ASSERT_EQ(before.firstMagnitude.cols(), 5);
  EXPECT_EQ(before.magnitudeSteps, 3);
  EXPECT_GT(before.secondMagnitude.norm(), 0);
  const VecD m = layer.magnitude();
  opt.resize(layer, 1);
  const auto after = opt.state(layer);
  EXPECT_EQ(after.firstMagnitude, before.firstMagnitude);
  EXPECT_EQ(after.secondMagnitude, before.secondMagnitude);
  EXPECT_EQ(after.magnitudeSteps, 3);
  EXPECT_EQ(layer.magnitude(), m);
  layer.backward(p.X, layer.forward(p.X) - T, lora::GradMode::Overwrite);
  opt.step();
  EXPECT_EQ(opt.state(layer).magnitudeSteps, 4);
  EXPECT_NE(layer.magnitude(), m);
  // Changing m behind the optimizer's back is caught.
  layer.setMagnitude(m);
  layer.backward(p.X, layer.forward(p.X) - T, lora::GradMode::Overwrite);
  EXPECT_THROW(opt.step(), lora::Error);
}

}  // namespace
