#pragma once
/// \file orthogonal.hpp
/// \brief A random matrix with orthonormal rows or columns, as torch.nn.init.orthogonal_ draws it.

#include <utility>

#include "lora/detail/eigen.hpp"

#include "lora/linalg/householder_qr.hpp"
#include "lora/random.hpp"

namespace lora::detail {

/// rows x cols with orthonormal rows (rows <= cols) or columns (rows > cols), times \p gain.
/// torch.nn.init.orthogonal_: QR of a standard normal matrix (transposed when rows < cols), Q's
/// columns multiplied by sign(diag(R)) so Q is Haar-distributed, then transposed back.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> orthogonalMatrix(Eigen::Index rows,
                                                                       Eigen::Index cols,
                                                                       double gain, Rng& rng) {
  using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;
  const bool wide = rows < cols;
  Matrix G(wide ? cols : rows, wide ? rows : cols);  // tall: QR gives orthonormal columns
  fillNormal(G, rng, 0.0, 1.0);
  const linalg::ThinQR<double> qr(std::move(G));
  Matrix Q = qr.matrixQ();
  const Matrix R = qr.matrixR();
  for (Eigen::Index j = 0; j < Q.cols(); ++j)
    if (R(j, j) < 0) Q.col(j) = -Q.col(j);
  Q *= gain;
  if (wide) return Q.transpose().template cast<Scalar>();
  return Q.template cast<Scalar>();
}

}  // namespace lora::detail
