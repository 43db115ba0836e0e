#pragma once
/// \file gradient_signal.hpp
/// \brief What the full-weight gradient G = dY^T X says about the rank, from X and dY, never
/// forming the out x in G.

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"            // lora::Error, which these throw
#include "lora/linalg/spectrum.hpp"  // kept: callers use the spectrum rules through it

namespace lora::rank {

/// \brief The spectrum of the full-weight gradient G = dY^T X (out x in) and how much of it the
/// adapter can follow.
///
/// A LoRA update moves W only inside col(B) (output side) and row(A) (input side). Energy of G
/// outside col(B) is a direction the adapter cannot take at its current rank: the signal that a
/// larger rank would help, which grad_B·grad_A (rank <= r) cannot show.
struct GradientSignal {
  Eigen::VectorXd spectrum;         ///< σ(G), decreasing
  Eigen::VectorXd outsideSpectrum;  ///< σ((I − P_B) G), P_B the projector on col(B)
  double norm = 0;                  ///< ‖G‖_F
  double outsideColumnFraction = 0;  ///< ‖(I − P_B) G‖_F² / ‖G‖_F² (1 when B = 0; 0 when G = 0)
  double outsideRowFraction = 0;  ///< ‖G (I − P_A)‖_F² / ‖G‖_F², P_A the projector on row(A)
  /// The leading left singular vectors of (I − P_B) G (out x at most `directions`): where the
  /// adapter would have to grow. A direction that persists across batches is signal; noise
  /// points somewhere new each time.
  Eigen::MatrixXd outsideDirections;
};

/// An orthonormal basis of the column space of \p M (rank by Eigen's default threshold).
Eigen::MatrixXd orthonormalColumns(const Eigen::MatrixXd& M);

}  // namespace lora::rank

namespace lora::detail {
/// gradientSignal() on double data, compiled in liblorapp (src/rank/gradient_signal.cpp).
rank::GradientSignal gradientSignalDouble(const Eigen::Ref<const Eigen::MatrixXd>& X,
                                          const Eigen::Ref<const Eigen::MatrixXd>& dY,
                                          const Eigen::MatrixXd& B, const Eigen::MatrixXd& A,
                                          Eigen::Index directions);
/// gradientSpectrum() on double data, compiled in liblorapp (src/rank/gradient_signal.cpp).
Eigen::VectorXd gradientSpectrumDouble(const Eigen::Ref<const Eigen::MatrixXd>& X,
                                       const Eigen::Ref<const Eigen::MatrixXd>& dY);
}  // namespace lora::detail

namespace lora::rank {

/// The GradientSignal of a layer with factors \p B (out x r) and \p A (r x in) for the batch
/// \p X (N x in) and the output gradient \p dY (N x out). Costs two thin QRs of N-column
/// matrices and an SVD of the N x N core: O((out + in)·N² + N³), never out x in.
template <typename DX, typename DdY, typename DB, typename DA>
GradientSignal gradientSignal(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DdY>& dY,
                              const Eigen::MatrixBase<DB>& B, const Eigen::MatrixBase<DA>& A,
                              Eigen::Index directions = 16) {
  return detail::gradientSignalDouble(X.template cast<double>(), dY.template cast<double>(),
                                      B.template cast<double>(), A.template cast<double>(),
                                      directions);
}

/// σ(G) for G = dY^T X from the batch, never forming G.
template <typename DX, typename DdY>
Eigen::VectorXd gradientSpectrum(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DdY>& dY) {
  return detail::gradientSpectrumDouble(X.template cast<double>(), dY.template cast<double>());
}

}  // namespace lora::rank
