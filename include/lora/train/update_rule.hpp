#pragma once
/// \file update_rule.hpp
/// \brief What an optimizer's update rule is: the per-parameter moments it keeps and the concept
/// every rule (train::Sgd, train::AdamW) satisfies.
///
/// The Optimizer stores the state of each LoRA factor **direction-major**: row j of every matrix
/// belongs to rank direction j (row j of A, column j of B — B's state is kept transposed,
/// r x out). A rule updates one such parameter at a time; the optimizer does the rest (gradient
/// clipping, LoRA+, refusing non-finite steps, carrying state across a resize).
///
/// \code
/// lora::train::Moments<double> m;             // empty: nothing kept yet
/// lora::train::AdamW rule{.lr = 1e-3};
/// Eigen::MatrixXd p = ..., g = ...;           // r x in, rows are directions
/// std::vector<std::int64_t> steps(p.rows());  // per direction, before this step
/// rule.initialize(m, p.rows(), p.cols());
/// rule.update(p, g, m, steps, rule.lr);       // one PyTorch-exact step
/// \endcode

#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

#include "lora/detail/eigen.hpp"

namespace lora::train {

/// Per-direction step counts: entry j is how many optimizer steps rank direction j has taken.
/// Without a resize every entry equals the optimizer's step count (PyTorch's `state["step"]`);
/// directions added by a grow start at 0, so they warm up exactly like fresh parameters.
using StepCounts = std::vector<std::int64_t>;

/// \brief The moments an update rule keeps for one parameter, direction-major (rows are
/// directions). A matrix the rule does not use stays empty.
///
/// - `first`: a linear average of gradients (SGD's momentum buffer, Adam's m). Carried across a
///   change of basis exactly like a gradient (see state_carry.hpp).
/// - `second`: an average of squared gradients (Adam's v). Carried by a documented rule.
template <typename Scalar>
struct Moments {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  Matrix first;
  Matrix second;
};

/// \brief R is an update rule for Scalar parameters when it names itself, validates its
/// hyperparameters (throwing lora::Error), says which moments it keeps, sizes them, and updates
/// one direction-major parameter in place: `r.update(p, g, moments, steps, lr)` with `steps` the
/// per-direction counts *before* this step and `lr` the learning rate of this parameter (the
/// optimizer passes λ·lr for B under LoRA+).
template <typename R, typename Scalar>
concept UpdateRule = std::copy_constructible<R> &&
    requires(R r, const R& cr, Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& p,
             const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& g, Moments<Scalar>& m,
             const StepCounts& steps, double lr, Eigen::Index rows, Eigen::Index cols) {
  { R::name() } -> std::convertible_to<std::string>;
  cr.validate();
  { cr.learningRate() } -> std::convertible_to<double>;
  r.setLearningRate(lr);
  { cr.keepsFirstMoment() } -> std::convertible_to<bool>;
  { cr.keepsSecondMoment() } -> std::convertible_to<bool>;
  cr.initialize(m, rows, cols);
  cr.update(p, g, m, steps, lr);
};

}  // namespace lora::train
