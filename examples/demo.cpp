// LoRA++ end to end on a task with a known answer.
//
// A frozen base layer W; a target layer W + Δ that differs from it by a planted rank-4 delta Δ;
// noisy samples of the target. A LoRA layer of rank 12 is trained (plain SGD on the mean squared
// error) to recover Δ; then the learned delta's spectrum is read from the factors, the layer is
// shrunk to the rank that keeps 90% of its energy, and the losses before and after are compared.
// The trained rank-12 layer is also saved as a PEFT adapter folder (argv[1], default
// "demo-adapter") for `lora inspect` and `lora resize` to work on (scripts/demo.sh runs both).
#include <cmath>
#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "lora/io/peft_writer.hpp"
#include "lora/layer.hpp"
#include "lora/linalg/householder_qr.hpp"
#include "lora/linalg/spectrum.hpp"
#include "lora/random.hpp"

namespace {

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;

Mat gaussian(Eigen::Index rows, Eigen::Index cols, lora::Rng& rng, double stddev = 1.0) {
  Mat m(rows, cols);
  lora::fillNormal(m, rng, 0.0, stddev);
  return m;
}

// Random matrix with orthonormal columns.
Mat orthonormal(Eigen::Index rows, Eigen::Index cols, lora::Rng& rng) {
  return lora::linalg::ThinQR<Mat::Scalar>(gaussian(rows, cols, rng)).matrixQ();
}

double mse(const Mat& a, const Mat& b) {
  return (a - b).squaredNorm() / static_cast<double>(a.size());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string adapterDir = argc > 1 ? argv[1] : "demo-adapter";
  constexpr Eigen::Index out = 96, in = 64, samples = 2048, plantedRank = 4, loraRank = 12;
  constexpr double noise = 0.05;
  lora::Rng rng(2026);

  // The task: y = x (W + Δ)^T + b + noise, with Δ = U diag(σ) V^T of rank 4.
  const Mat W = gaussian(out, in, rng, 1.0 / std::sqrt(double(in)));
  const Vec b = gaussian(out, 1, rng, 0.1);
  const Vec plantedSigma = (Vec(plantedRank) << 3.0, 2.0, 1.2, 0.6).finished();
  const Mat delta = orthonormal(out, plantedRank, rng) * plantedSigma.asDiagonal() *
                    orthonormal(in, plantedRank, rng).transpose();
  const Mat X = gaussian(samples, in, rng);
  const Mat target = ((X * (W + delta).transpose()).rowwise() + b.transpose()) +
                     gaussian(samples, out, rng, noise);

  fmt::print("LoRA++ demo: recover a planted rank-{} delta on a frozen {}x{} layer\n", plantedRank,
             out, in);
  fmt::print("  planted singular values: {:.3f} {:.3f} {:.3f} {:.3f}; noise std {}\n",
             plantedSigma(0), plantedSigma(1), plantedSigma(2), plantedSigma(3), noise);
  fmt::print("  loss floor (noise variance): {:.5f}\n\n", noise * noise);

  // The LoRA layer over the caller's frozen W (used in place, never copied).
  Mat base = W;
  lora::Layer<double> layer(out, in, {.rank = loraRank, .alpha = 2.0 * loraRank, .seed = 7});
  layer.bindBase(base, b);

  const double before = mse(layer.forward(X), target);
  fmt::print("training rank {} (alpha {}, scaling {}), PEFT default init (B = 0)\n", loraRank,
             layer.alpha(), layer.scaling());
  fmt::print("  step    0  loss {:.5f}\n", before);
  const double lr = 2.0;
  const int steps = 300;
  Mat Y;
  for (int step = 1; step <= steps; ++step) {
    layer.forward(X, Y);
    const Mat dY = (2.0 / static_cast<double>(Y.size())) * (Y - target);
    layer.backward(X, dY, lora::GradMode::Overwrite);
    layer.updateFactors(-lr * layer.gradA(), -lr * layer.gradB());
    if (step % 50 == 0)
      fmt::print("  step {:4d}  loss {:.5f}\n", step, mse(layer.forward(X), target));
  }
  const double trained = mse(layer.forward(X), target);

  // The learned delta's spectrum, from the factors (no 96 x 64 SVD).
  const Vec sigma = layer.spectrum();
  fmt::print("\nspectrum of the learned delta s·B·A (rank {}):\n  ", layer.rank());
  for (Eigen::Index i = 0; i < sigma.size(); ++i) fmt::print("{:.3f} ", sigma(i));
  fmt::print("\n");
  const double recovery = (layer.deltaWeight() - delta).norm() / delta.norm();
  fmt::print("  relative error of the learned delta vs the planted one: {:.4f}\n", recovery);

  // Save the trained layer as a PEFT adapter (what `lora inspect` and `lora resize` read).
  lora::AdapterConfig config;
  config.baseModelNameOrPath = "lorapp-demo";
  lora::PeftAdapterWriter writer(config, lora::DType::F32);
  writer.add("model.layers.0.self_attn.q_proj", layer.A(), layer.B(), layer.alpha());
  writer.write(adapterDir);
  fmt::print("  saved the rank-{} layer as a PEFT adapter in {}/\n", layer.rank(), adapterDir);

  // Shrink to the rank that keeps 90% of the energy.
  const Eigen::Index keep = lora::linalg::energyRank(sigma, 0.90);
  fmt::print("  energy ranks: 90% -> {}, 99% -> {} (the planted rank is {})\n", keep,
             lora::linalg::energyRank(sigma, 0.99), plantedRank);
  const auto report = layer.resize(keep);
  const double shrunk = mse(layer.forward(X), target);
  fmt::print("\nshrink to the 90%-energy rank: {} -> {}\n", report.oldRank, report.newRank);
  fmt::print("  retained energy {:.4f}; largest discarded singular value {:.4f}\n",
             report.retainedEnergy, report.discarded.size() > 0 ? report.discarded(0) : 0.0);
  fmt::print("  parameters {} -> {}\n", report.oldRank * (in + out), layer.parameterCount());

  fmt::print("\nloss: untrained {:.5f} | trained rank {} {:.5f} | shrunk rank {} {:.5f}\n", before,
             loraRank, trained, keep, shrunk);
  const bool ok = trained < 0.1 * before && recovery < 0.1 && keep <= plantedRank &&
                  shrunk < 2.0 * trained + 0.01;
  fmt::print("{}\n", ok ? "OK: the planted delta was recovered and the shrink kept it"
                        : "UNEXPECTED: the demo did not recover the planted delta");
  return ok ? 0 : 1;
}
