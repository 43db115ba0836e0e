#pragma once
/// \file symmetric_eigen.hpp
/// \brief The symmetric eigendecomposition (LAPACK's xSYEVD with `LORA_LAPACK`, the default;
/// Eigen's SelfAdjointEigenSolver without), compiled once in liblorapp for float and double.

#include "lora/detail/eigen.hpp"

#include "lora/threads.hpp"

namespace lora::linalg {

/// M = V diag(values) V^T for a symmetric M (only its lower triangle is read); values increase.
template <typename Scalar>
struct SymmetricEigenResult {
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> values;
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> vectors;  ///< empty unless requested
  Eigen::ComputationInfo info = Eigen::Success;
};

/// The eigendecomposition of \p M, O(n³): LAPACK's divide-and-conquer xSYEVD (1.5-2x Eigen's
/// solver at n = 1024 here), or Eigen::SelfAdjointEigenSolver (tridiagonalization then implicit
/// QL) without `LORA_LAPACK`; the eigenvectors only when \p vectors is true. A non-square, empty or
/// non-finite \p M throws lora::Error.
SymmetricEigenResult<float> symmetricEigen(const Eigen::Ref<const Eigen::MatrixXf>& M,
                                           bool vectors = true);
/// \copydoc symmetricEigen(const Eigen::Ref<const Eigen::MatrixXf>&, bool)
SymmetricEigenResult<double> symmetricEigen(const Eigen::Ref<const Eigen::MatrixXd>& M,
                                            bool vectors = true);

}  // namespace lora::linalg
