#pragma once
/// \file state_carry.hpp
/// \brief Carrying an optimizer's moments through a change of rank or basis (Layer::resize,
/// Layer::keepDirections), from the ResizeReport's change of basis.
///
/// A resize gives A_new = T_A · A_old (k x r) and B_new = B_old · T_B (r x k), with scaling s_old
/// → s_new. The gradients of the new factors, for the same upstream gradient G = dL/dW, are
///
/// ```
/// dL/dA_new = s_new B_newᵀ G = c · T_Bᵀ · dL/dA_old        c = s_new / s_old
/// dL/dB_new = s_new G A_newᵀ = c · dL/dB_old · T_Aᵀ
/// ```
///
/// **First moments** are averages of gradients, so they are carried by exactly this linear map:
/// m_A ← c T_Bᵀ m_A and m_B ← c m_B T_Aᵀ. The carried moment is what the new coordinates would
/// have accumulated from the same past gradients: on a shrink it is the old moment projected onto
/// the kept singular directions (row j of m_A becomes s_new·b_jᵀ·M for the accumulated full-weight
/// gradient M, b_j the new column j of B), on a grow the old coordinates keep their moments and
/// the new ones start at zero, and on a same-rank identity the moments are unchanged to the bit.
///
/// **Second moments** are averages of squared gradients, per coordinate; a carried coordinate
/// g' = Σ_i w_i g_i needs E[g'²], which the diagonal of v alone does not determine. Two rules:
///
/// - SecondMomentCarry::Bound (the default): v'_j = c² (Σ_i |w_ji|) (Σ_i |w_ji| v_i). By
///   Cauchy–Schwarz, (Σ w_i g_i)² <= (Σ|w_i|)(Σ|w_i| g_i²) for every gradient, so this is an upper
///   bound on the true second moment whatever the correlations. Adam divides by sqrt(v): an
///   underestimate makes the first steps after a resize too large (a loss spike), an
///   overestimate only makes them smaller until the average catches up. The bound never
///   underestimates. It is exact for a permutation, a sign flip, a grow and a same-rank identity.
/// - SecondMomentCarry::Diagonal: v'_j = c² Σ_i w_ji² v_i, exact when the old coordinates'
///   gradients are uncorrelated, an underestimate when they are positively correlated.
///
/// docs/training.md measures both against resetting the state and against not resizing.
///
/// **Step counts** (per direction, for Adam's bias correction and SGD's first-step buffer): a new
/// direction takes the largest count of the old directions it is made from (a non-zero weight),
/// and 0 if it is made from none (a fresh grow direction), so it warms up like a new parameter.

#include <algorithm>
#include <cstdint>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"
#include "lora/resize.hpp"
#include "lora/train/update_rule.hpp"

namespace lora::train {

/// How second moments cross a change of basis (see the file comment for the why).
enum class SecondMomentCarry {
  Bound,     ///< Cauchy–Schwarz upper bound: never underestimates (default)
  Diagonal,  ///< Σ w² v: exact for uncorrelated gradient coordinates
};

/// \brief Moves direction-major moments through the gradient map \p W (k x r): first ← c·W·first,
/// second per \p rule. Empty matrices stay empty.
template <typename Scalar>
void carryMoments(Moments<Scalar>& m,
                  const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& W, double c,
                  SecondMomentCarry rule) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const auto cs = static_cast<Scalar>(c);
  if (m.first.size() != 0) {
    Matrix first;
    first.noalias() = W * m.first;
    if (cs != Scalar(1)) first *= cs;
    m.first.swap(first);
  }
  if (m.second.size() != 0) {
    Matrix second;
    if (rule == SecondMomentCarry::Diagonal) {
      const Matrix W2 = W.cwiseAbs2();
      second.noalias() = W2 * m.second;
    } else {
      const Matrix Wabs = W.cwiseAbs();
      second.noalias() = Wabs * m.second;
      const Eigen::Matrix<Scalar, Eigen::Dynamic, 1> l1 = Wabs.rowwise().sum();
      second = l1.asDiagonal() * second;
    }
    if (cs != Scalar(1)) second *= cs * cs;
    m.second.swap(second);
  }
}

/// The per-direction step counts after a change of basis: direction j of the new factors takes
/// the largest count among the old directions i with a non-zero weight in \p WA (row j) or \p WB
/// (row j), and 0 when there is none.
template <typename Scalar>
StepCounts carrySteps(const StepCounts& old,
                      const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& WA,
                      const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& WB) {
  StepCounts out(static_cast<std::size_t>(WA.rows()), 0);
  for (Eigen::Index j = 0; j < WA.rows(); ++j) {
    std::int64_t t = 0;
    for (Eigen::Index i = 0; i < WA.cols(); ++i)
      if (WA(j, i) != Scalar(0) || WB(j, i) != Scalar(0))
        t = std::max(t, old[static_cast<std::size_t>(i)]);
    out[static_cast<std::size_t>(j)] = t;
  }
  return out;
}

/// \brief The gradient maps of a resize, direction-major: for A's state W_A = T_Bᵀ (k x r), for
/// B's (transposed) state W_B = T_A (k x r), and c = s_new / s_old. Throws lora::Error when the
/// report's transforms do not have the shapes its ranks say.
template <typename Scalar>
struct GradientMaps {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  Matrix forA;  ///< k x r, acts on A's state (r x in)
  Matrix forB;  ///< k x r, acts on Bᵀ's state (r x out)
  double c = 1;

  static GradientMaps from(const ResizeReport<Scalar>& report) {
    const Eigen::Index k = report.newRank, r = report.oldRank;
    if (report.transformA.rows() != k || report.transformA.cols() != r ||
        report.transformB.rows() != r || report.transformB.cols() != k)
      detail::fail("GradientMaps::from",
                   "expected transformA {}x{} and transformB {}x{} (ranks {} -> {}), got {}x{} "
                   "and {}x{}",
                   k, r, r, k, r, k, report.transformA.rows(), report.transformA.cols(),
                   report.transformB.rows(), report.transformB.cols());
    if (!(report.oldScaling > 0 && report.newScaling > 0))
      detail::fail("GradientMaps::from", "expected positive scalings, got {} -> {}",
                   report.oldScaling, report.newScaling);
    GradientMaps maps;
    maps.forA = report.transformB.transpose();
    maps.forB = report.transformA;
    maps.c = report.newScaling / report.oldScaling;
    return maps;
  }
};

}  // namespace lora::train
