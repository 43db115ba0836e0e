#include "lora/linalg/householder_qr.hpp"

#include <Eigen/QR>

#include "lora/error.hpp"

namespace lora::linalg {

template <typename Scalar>
ThinQR<Scalar>::ThinQR(Matrix X) : m_qr(std::move(X)) {
  // In place, in m_qr's storage: Eigen's blocked Householder QR.
  const Eigen::HouseholderQR<Eigen::Ref<Matrix>> qr(m_qr);
  m_coeffs = qr.hCoeffs();
}

template <typename Scalar>
typename ThinQR<Scalar>::Matrix ThinQR<Scalar>::matrixR() const {
  const Index p = std::min(rows(), cols());
  return m_qr.topRows(p).template triangularView<Eigen::Upper>();
}

template <typename Scalar>
typename ThinQR<Scalar>::Matrix ThinQR<Scalar>::matrixQ(Index columns) const {
  if (columns < 0 || columns > rows())
    detail::fail("ThinQR::matrixQ", "expected 0 to {} columns (the rows of X), got {}", rows(),
                 columns);
  Matrix Q = Matrix::Identity(rows(), columns);
  // Eigen's reflector application offsets the pointer of an empty matrix (undefined behaviour).
  if (Q.size() > 0 && m_coeffs.size() > 0)
    Q.applyOnTheLeft(Eigen::householderSequence(m_qr, m_coeffs));
  return Q;
}

template <typename Scalar>
void ThinQR<Scalar>::applyQ(Matrix& M) const {
  if (M.rows() != rows())
    detail::fail("ThinQR::applyQ", "expected a matrix with {} rows (those of X), got {}x{}", rows(),
                 M.rows(), M.cols());
  if (M.size() > 0 && m_coeffs.size() > 0)
    M.applyOnTheLeft(Eigen::householderSequence(m_qr, m_coeffs));
}

template class ThinQR<float>;
template class ThinQR<double>;

}  // namespace lora::linalg
