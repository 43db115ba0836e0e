#pragma once
/// \file gradient_signal.hpp
/// \brief What the full-weight gradient G = dY^T X says about the rank, from X and dY, never
/// forming the out x in G.

#include <algorithm>
#include <cmath>

#include <Eigen/Core>
#include <Eigen/QR>

#include "lora/error.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/linalg/spectrum.hpp"

namespace lora::rank {

/// \brief The spectrum of the full-weight gradient G = dY^T X (out x in) and how much of it the
/// adapter can follow.
///
/// A LoRA update moves W only inside col(B) (output side) and row(A) (input side). Energy of G
/// outside col(B) is a direction the adapter cannot take at its current rank: the signal that a
/// larger rank would help, which grad_B·grad_A (rank <= r) cannot show.
struct GradientSignal {
  Eigen::VectorXd spectrum;          ///< σ(G), decreasing
  Eigen::VectorXd outsideSpectrum;   ///< σ((I − P_B) G), P_B the projector on col(B)
  double norm = 0;                   ///< ‖G‖_F
  double outsideColumnFraction = 0;  ///< ‖(I − P_B) G‖_F² / ‖G‖_F² (1 when B = 0; 0 when G = 0)
  double outsideRowFraction = 0;     ///< ‖G (I − P_A)‖_F² / ‖G‖_F², P_A the projector on row(A)
  /// The leading left singular vectors of (I − P_B) G (out x at most `directions`): where the
  /// adapter would have to grow. A direction that persists across batches is signal; noise
  /// points somewhere new each time.
  Eigen::MatrixXd outsideDirections;
};

/// An orthonormal basis of the column space of \p M (rank by Eigen's default threshold).
inline Eigen::MatrixXd orthonormalColumns(const Eigen::MatrixXd& M) {
  if (M.cols() == 0 || M.norm() == 0.0) return Eigen::MatrixXd(M.rows(), 0);
  const Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(M);
  const Eigen::Index k = qr.rank();
  return qr.householderQ() * Eigen::MatrixXd::Identity(M.rows(), k);
}

/// The GradientSignal of a layer with factors \p B (out x r) and \p A (r x in) for the batch
/// \p X (N x in) and the output gradient \p dY (N x out). Costs two thin QRs of N-column
/// matrices and an SVD of the N x N core: O((out + in)·N² + N³), never out x in.
template <typename DX, typename DdY, typename DB, typename DA>
GradientSignal gradientSignal(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DdY>& dY,
                              const Eigen::MatrixBase<DB>& B, const Eigen::MatrixBase<DA>& A,
                              Eigen::Index directions = 16) {
  constexpr const char* where = "gradientSignal";
  if (X.rows() != dY.rows() || X.rows() < 1)
    detail::fail(where, "expected X and dY with the same number of rows >= 1, got {} and {}",
                 X.rows(), dY.rows());
  if (B.rows() != dY.cols() || A.cols() != X.cols() || A.rows() != B.cols())
    detail::fail(where,
                 "expected B (out x r) and A (r x in) for X (N x {}) and dY (N x {}), got B {}x{} "
                 "and A {}x{}",
                 X.cols(), dY.cols(), B.rows(), B.cols(), A.rows(), A.cols());
  const Eigen::MatrixXd Xd = X.template cast<double>();
  const Eigen::MatrixXd dYt = dY.template cast<double>().transpose();  // out x N
  if (!Xd.allFinite() || !dYt.allFinite())
    detail::fail(where, "expected finite X and dY, got NaN or Inf");
  GradientSignal s;
  s.spectrum = linalg::FactoredSVD<double>(dYt, Xd, 1.0, 0).singularValues();
  const double total = s.spectrum.squaredNorm();
  s.norm = std::sqrt(total);
  const Eigen::MatrixXd QB = orthonormalColumns(B.template cast<double>());
  const Eigen::MatrixXd QA = orthonormalColumns(A.template cast<double>().transpose());
  const Eigen::MatrixXd outside = dYt - QB * (QB.transpose() * dYt);  // (I − P_B) dY^T
  const linalg::FactoredSVD<double> svdOut(outside, Xd, 1.0, Eigen::ComputeThinU);
  s.outsideSpectrum = svdOut.singularValues();
  s.outsideDirections = svdOut.matrixU().leftCols(std::min(directions, svdOut.size()));
  if (total > 0) {
    s.outsideColumnFraction = std::clamp(s.outsideSpectrum.squaredNorm() / total, 0.0, 1.0);
    const double inside = (dYt * (Xd * QA)).squaredNorm();  // ‖G P_A‖², out x r
    s.outsideRowFraction = std::clamp(1.0 - inside / total, 0.0, 1.0);
  }
  return s;
}

/// σ(G) for G = dY^T X from the batch, never forming G.
template <typename DX, typename DdY>
Eigen::VectorXd gradientSpectrum(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DdY>& dY) {
  if (X.rows() != dY.rows() || X.rows() < 1)
    detail::fail("gradientSpectrum",
                 "expected X and dY with the same number of rows >= 1, got {} and {}", X.rows(),
                 dY.rows());
  return linalg::FactoredSVD<double>(dY.template cast<double>().transpose(),
                                     X.template cast<double>(), 1.0, 0)
      .singularValues();
}

}  // namespace lora::rank
