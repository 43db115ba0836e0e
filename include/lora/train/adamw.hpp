#pragma once
/// \file adamw.hpp
/// \brief train::AdamW: PyTorch's `torch.optim.AdamW` update rule (decoupled weight decay,
/// bias-corrected moments, eps outside the square root), step for step.
///
/// The algorithm of the PyTorch documentation (`torch.optim.AdamW`; Loshchilov & Hutter,
/// "Decoupled Weight Decay Regularization", 2019), with t the step (from 1), γ the learning rate,
/// λ the weight decay:
///
/// ```
/// p ← p · (1 − γ λ)                                   (decoupled: before the Adam update)
/// m ← m + (1 − β1)(g − m)                             (torch: exp_avg.lerp_(g, 1 − β1))
/// v ← β2 v + (1 − β2) g²
/// p ← p − (γ / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + ε)
/// ```
///
/// t is counted per rank direction (see StepCounts), so a direction added by a grow is bias-
/// corrected as a fresh parameter would be; without a resize every direction has PyTorch's t.
/// `amsgrad`, `maximize` and `capturable` are not offered. The fixture `trace_adamw_rslora`
/// (PEFT + torch AdamW, float64) is reproduced to 1e-10 relative (tests/test_optimizer_traces.cpp).
///
/// \code
/// lora::train::Optimizer<double, lora::train::AdamW> opt(
///     lora::train::AdamW{.lr = 1e-3, .weightDecay = 0.01}, {.loraPlusRatio = 16});
/// \endcode

#include <cmath>
#include <string>

#include "lora/detail/eigen.hpp"

#include "lora/train/update_rule.hpp"

namespace lora::train {

/// \brief PyTorch's AdamW as an update rule; the defaults are PyTorch's.
struct AdamW {
  double lr = 1e-3;           ///< γ >= 0
  double beta1 = 0.9;         ///< in [0, 1)
  double beta2 = 0.999;       ///< in [0, 1)
  double eps = 1e-8;          ///< >= 0, added outside the square root
  double weightDecay = 1e-2;  ///< λ >= 0, decoupled: p ← p (1 − γλ)

  static std::string name() { return "adamw"; }

  /// Throws lora::Error on the values PyTorch refuses (and on non-finite ones).
  void validate() const;

  double learningRate() const noexcept { return lr; }
  void setLearningRate(double value) { lr = value; }
  bool keepsFirstMoment() const noexcept { return true; }
  bool keepsSecondMoment() const noexcept { return true; }

  template <typename Scalar>
  void initialize(Moments<Scalar>& m, Eigen::Index rows, Eigen::Index cols) const {
    m.first.setZero(rows, cols);
    m.second.setZero(rows, cols);
  }

  /// One step on \p p (direction-major) with gradient \p g at learning rate \p rate;
  /// \p steps are the per-direction counts before this step (t = steps[j] + 1).
  template <typename Scalar>
  void update(Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& p,
              const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& g, Moments<Scalar>& m,
              const StepCounts& steps, double rate) const {
    using Array = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
    const Eigen::Index r = p.rows();
    if (weightDecay != 0) p *= static_cast<Scalar>(1.0 - rate * weightDecay);  // param.mul_
    m.first.array() += static_cast<Scalar>(1.0 - beta1) * (g.array() - m.first.array());  // lerp_
    m.second.array() = (m.second.array() * static_cast<Scalar>(beta2)).eval() +
                       static_cast<Scalar>(1.0 - beta2) * g.array() * g.array();  // addcmul_
    Array stepSize(r), correction2(r);
    for (Eigen::Index j = 0; j < r; ++j) {
      const double t = static_cast<double>(steps[static_cast<std::size_t>(j)] + 1);
      stepSize(j) = static_cast<Scalar>(rate / (1.0 - std::pow(beta1, t)));
      correction2(j) = static_cast<Scalar>(std::sqrt(1.0 - std::pow(beta2, t)));
    }
    const auto denom =
        ((m.second.array().sqrt().colwise() / correction2) + static_cast<Scalar>(eps)).eval();
    p.array() -= (m.first.array() / denom).colwise() * stepSize;  // addcdiv_(m, denom, −step)
  }
};

}  // namespace lora::train
