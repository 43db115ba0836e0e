#pragma once
/// \file resize.hpp
/// \brief Options and report of Layer::resize.

#include "lora/detail/eigen.hpp"

namespace lora {

/// How the kept singular values σ are split between the new factors when a layer shrinks.
enum class SigmaSplit {
  Balanced,  ///< sqrt(σ) on each side: A = diag(sqrt(σ/s)) V^T, B = U diag(sqrt(σ/s)) (default)
  IntoA,     ///< A = diag(σ/s) V^T, B = U (orthonormal columns)
  IntoB      ///< A = V^T (orthonormal rows), B = U diag(σ/s)
};

/// What stays fixed when the rank changes. Either way the effective delta s·B·A is preserved
/// (exactly on a grow, as its best rank-k approximation on a shrink).
enum class AlphaPolicy {
  KeepScaling,  ///< s stays; alpha becomes s·k (or s·sqrt(k) with rsLoRA). Default: a grow is
                ///< then exact to the bit, and the training dynamics of the delta do not jump.
  KeepAlpha     ///< alpha stays; s becomes alpha/k (or alpha/sqrt(k)) and the factors absorb the
                ///< change (a grow multiplies B by s_old/s_new, exact up to one rounding).
};

/// Options of Layer::resize.
struct ResizeOptions {
  SigmaSplit split = SigmaSplit::Balanced;
  AlphaPolicy alpha = AlphaPolicy::KeepScaling;
};

/// \brief What Layer::resize did.
///
/// The change of basis maps the old factors to the new ones: A_new = transformA · A_old and
/// B_new = B_old · transformB. It is exact for the rows/columns that come from the old subspace
/// when A has full row rank and B full column rank (least squares otherwise); rows of A drawn
/// fresh by the initializer have zero rows in transformA. Optimizers use it to carry their state.
template <typename Scalar>
struct ResizeReport {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  Eigen::Index oldRank = 0;
  Eigen::Index newRank = 0;
  double oldAlpha = 0, newAlpha = 0;
  double oldScaling = 0, newScaling = 0;
  /// Singular values of the old s·B·A, min(r, out, in) of them (computed on a shrink only; empty
  /// on a grow or when the rank did not change, which need no SVD).
  Vector singularValues;
  /// The singular values dropped by a shrink (empty otherwise).
  Vector discarded;
  /// Σσ²_kept / Σσ² (1 for a grow, for an unchanged rank and for an all-zero delta).
  double retainedEnergy = 1.0;
  Matrix transformA;  ///< newRank x oldRank
  Matrix transformB;  ///< oldRank x newRank

  bool shrank() const noexcept { return newRank < oldRank; }
  bool grew() const noexcept { return newRank > oldRank; }
};

}  // namespace lora
