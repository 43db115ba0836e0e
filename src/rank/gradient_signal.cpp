#include "lora/rank/gradient_signal.hpp"

#include <algorithm>
#include <cmath>

#include <Eigen/QR>

#include "lora/error.hpp"
#include "lora/linalg/factored_svd.hpp"

namespace lora::rank {

Eigen::MatrixXd orthonormalColumns(const Eigen::MatrixXd& M) {
  if (M.cols() == 0 || M.norm() == 0.0) return Eigen::MatrixXd(M.rows(), 0);
  const Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(M);
  const Eigen::Index k = qr.rank();
  return qr.householderQ() * Eigen::MatrixXd::Identity(M.rows(), k);
}

}  // namespace lora::rank

namespace lora::detail {

rank::GradientSignal gradientSignalDouble(const Eigen::Ref<const Eigen::MatrixXd>& Xd,
                                          const Eigen::Ref<const Eigen::MatrixXd>& dY,
                                          const Eigen::MatrixXd& B, const Eigen::MatrixXd& A,
                                          Eigen::Index directions) {
  constexpr const char* where = "gradientSignal";
  if (Xd.rows() != dY.rows() || Xd.rows() < 1)
    detail::fail(where, "expected X and dY with the same number of rows >= 1, got {} and {}",
                 Xd.rows(), dY.rows());
  if (B.rows() != dY.cols() || A.cols() != Xd.cols() || A.rows() != B.cols())
    detail::fail(where,
                 "expected B (out x r) and A (r x in) for X (N x {}) and dY (N x {}), got B {}x{} "
                 "and A {}x{}",
                 Xd.cols(), dY.cols(), B.rows(), B.cols(), A.rows(), A.cols());
  const Eigen::MatrixXd dYt = dY.transpose();  // out x N
  if (!Xd.allFinite() || !dYt.allFinite())
    detail::fail(where, "expected finite X and dY, got NaN or Inf");
  rank::GradientSignal s;
  const Eigen::MatrixXd QB = rank::orthonormalColumns(B);
  const Eigen::MatrixXd QA = rank::orthonormalColumns(A.transpose());
  // With B = 0 (a fresh adapter) all of the gradient is outside col(B): one decomposition gives
  // both spectra, and the column fraction is exactly 1.
  const bool allOutside = QB.cols() == 0;
  if (!allOutside) s.spectrum = linalg::FactoredSVD<double>(dYt, Xd, 1.0, 0).singularValues();
  const Eigen::MatrixXd outside =
      allOutside ? dYt : Eigen::MatrixXd(dYt - QB * (QB.transpose() * dYt));  // (I − P_B) dY^T
  const linalg::FactoredSVD<double> svdOut(outside, Xd, 1.0, Eigen::ComputeThinU);
  s.outsideSpectrum = svdOut.singularValues();
  if (allOutside) s.spectrum = s.outsideSpectrum;
  const double total = s.spectrum.squaredNorm();
  s.norm = std::sqrt(total);
  s.outsideDirections = svdOut.matrixU().leftCols(std::min(directions, svdOut.size()));
  if (total > 0) {
    s.outsideColumnFraction = std::clamp(s.outsideSpectrum.squaredNorm() / total, 0.0, 1.0);
    const double inside = (dYt * (Xd * QA)).squaredNorm();  // ‖G P_A‖², out x r
    s.outsideRowFraction = std::clamp(1.0 - inside / total, 0.0, 1.0);
  }
  return s;
}

Eigen::VectorXd gradientSpectrumDouble(const Eigen::Ref<const Eigen::MatrixXd>& X,
                                       const Eigen::Ref<const Eigen::MatrixXd>& dY) {
  if (X.rows() != dY.rows() || X.rows() < 1)
    detail::fail("gradientSpectrum",
                 "expected X and dY with the same number of rows >= 1, got {} and {}", X.rows(),
                 dY.rows());
  return linalg::FactoredSVD<double>(dY.transpose(), X, 1.0, 0).singularValues();
}

}  // namespace lora::detail
