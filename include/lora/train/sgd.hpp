#pragma once
/// \file sgd.hpp
/// \brief train::Sgd: PyTorch's `torch.optim.SGD` update rule (momentum, dampening, Nesterov,
/// L2 weight decay), step for step.
///
/// The algorithm of the PyTorch documentation (`torch.optim.SGD`), with g the gradient, p the
/// parameter, b the momentum buffer, μ momentum, τ dampening, λ weight decay, γ the learning rate:
///
/// ```
/// g ← g + λ p                          (if λ ≠ 0; coupled L2, unlike AdamW)
/// if μ ≠ 0:  b ← g  on a direction's first step,  b ← μ b + (1 − τ) g  afterwards
///            g ← g + μ b  (Nesterov)   or   g ← b
/// p ← p − γ g
/// ```
///
/// "First step" is per rank direction (see StepCounts): a direction added by a grow gets b ← g on
/// its first step, as a fresh PyTorch parameter would; the PyTorch behaviour is reproduced exactly
/// when the rank never changes. `maximize` and `foreach` are not offered (the second is a kernel
/// choice, not a different result).
///
/// \code
/// lora::train::Optimizer<float, lora::train::Sgd> opt(
///     lora::train::Sgd{.lr = 0.05, .momentum = 0.9, .nesterov = true});
/// opt.add(layer);
/// // forward, backward ...
/// opt.step();
/// \endcode

#include <string>

#include "lora/detail/eigen.hpp"

#include "lora/train/update_rule.hpp"

namespace lora::train {

/// \brief PyTorch's SGD as an update rule; the defaults are PyTorch's (lr 1e-3 since torch 2.2).
struct Sgd {
  double lr = 1e-3;          ///< γ >= 0
  double momentum = 0.0;     ///< μ >= 0 (0: no buffer is kept)
  double dampening = 0.0;    ///< τ, finite
  double weightDecay = 0.0;  ///< λ >= 0, added to the gradient (L2), as torch.optim.SGD
  bool nesterov = false;     ///< needs μ > 0 and τ = 0, as in PyTorch

  static std::string name() { return "sgd"; }

  /// Throws lora::Error on the values PyTorch refuses (and on non-finite ones).
  void validate() const;

  double learningRate() const noexcept { return lr; }
  void setLearningRate(double value) { lr = value; }
  bool keepsFirstMoment() const noexcept { return momentum != 0; }
  bool keepsSecondMoment() const noexcept { return false; }

  template <typename Scalar>
  void initialize(Moments<Scalar>& m, Eigen::Index rows, Eigen::Index cols) const {
    if (keepsFirstMoment()) {
      m.first.setZero(rows, cols);
    } else {
      m.first.resize(0, 0);
    }
    m.second.resize(0, 0);
  }

  /// One step on \p p (direction-major) with gradient \p g at learning rate \p rate.
  template <typename Scalar>
  void update(Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& p,
              const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& g, Moments<Scalar>& m,
              const StepCounts& steps, double rate) const {
    using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
    Matrix d = g;
    if (weightDecay != 0) d += static_cast<Scalar>(weightDecay) * p;  // grad.add(param, alpha=λ)
    if (momentum != 0) {
      const auto mu = static_cast<Scalar>(momentum);
      // buf.mul_(μ).add_(grad, alpha=1 − τ), then b ← g on each direction's first step
      m.first = (m.first * mu).eval() + static_cast<Scalar>(1.0 - dampening) * d;
      for (Eigen::Index j = 0; j < p.rows(); ++j)
        if (steps[static_cast<std::size_t>(j)] == 0) m.first.row(j) = d.row(j);
      if (nesterov) {
        d += mu * m.first;  // grad.add(buf, alpha=μ)
      } else {
        d = m.first;
      }
    }
    p += static_cast<Scalar>(-rate) * d;  // param.add_(grad, alpha=−γ)
  }
};

}  // namespace lora::train
