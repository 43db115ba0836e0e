#pragma once
/// \file randomized_svd.hpp
/// \brief Randomized SVD with power iterations, as torch.svd_lowrank computes it.

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "lora/detail/eigen.hpp"
#include "lora/detail/gemm.hpp"

#include "lora/error.hpp"
#include "lora/linalg/detail/svd_kernels.hpp"
#include "lora/random.hpp"

namespace lora::linalg {

/// \brief The q approximate singular triplets of a randomized SVD: A ≈ U diag(S) V^T.
template <typename Scalar>
struct RandomizedSVDResult {
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> U;  ///< m x q, orthonormal columns
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> S;               ///< q values, decreasing, >= 0
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> V;  ///< n x q, orthonormal columns
};

/// \brief Randomized SVD of \p A (m x n) with \p q columns and \p niter power iterations, with the
/// semantics of `torch.svd_lowrank(A, q, niter)` (Halko, Martinsson & Tropp, "Finding structure
/// with randomness", SIAM Review 2011, Algorithms 4.4 and 5.1; PyTorch `torch/_lowrank.py`).
///
/// As PyTorch does, the range finder runs on A^T when m < n or n > q (so the small SVD is of an
/// m x q matrix): with Ω (m x q) Gaussian, Q = orth(A^T Ω), then \p niter times
/// Q = orth(A^T orth(A Q)); finally A Q = Û S Ŵ^T (thin SVD) gives U = Û, V = Q Ŵ. Otherwise
/// (m >= n = q) the same runs on A: Q = orth(A Ω), B = Q^T A, U = Q U_B. No oversampling is
/// added: q is both the sketch width and the number of triplets returned, as in PEFT's
/// `pissa_niter_K`. The result is an approximation whose accuracy depends on the spectrum; see
/// PartialSVD for triplets to a stated tolerance.
///
/// Cost: 2·niter + 2 products of A or A^T with an m x q or n x q block (float GEMMs when A is
/// float) plus O((m + n)·q²); nothing larger than max(m, n) x q is formed. Ω is drawn from
/// \p rng (fillNormal, row by row), so a seed fixes the result. Signs are normalized so the
/// largest-magnitude entry of each U column is positive.
///
/// A Matrix, Map or Block (row-major and strided included) is read in place; another expression
/// is evaluated once into a temporary. Throws lora::Error unless 1 <= q <= min(m, n), niter >= 0
/// and A is finite.
///
/// \code
/// lora::Rng rng(7);
/// auto svd = lora::linalg::randomizedSVD(W, 16, 4, rng);   // torch.svd_lowrank(W, 16, 4)
/// Eigen::MatrixXf approx = svd.U * svd.S.asDiagonal() * svd.V.transpose();
/// \endcode
template <typename Derived>
RandomizedSVDResult<typename Derived::Scalar> randomizedSVD(const Eigen::MatrixBase<Derived>& A,
                                                            Eigen::Index q, Eigen::Index niter,
                                                            Rng& rng);

}  // namespace lora::linalg

namespace lora::detail {

// randomizedSVD on A = S (transposed == false) or A = S^T; compiled once per Scalar.
template <typename Scalar>
linalg::RandomizedSVDResult<Scalar> randomizedSVDStored(const StridedView<Scalar>& S,
                                                        bool transposed, Eigen::Index q,
                                                        Eigen::Index niter, Rng& rng) {
  using Matrix = DenseMatrix<Scalar>;
  constexpr const char* where = "randomizedSVD";
  const Eigen::Index m = transposed ? S.cols() : S.rows();
  const Eigen::Index n = transposed ? S.rows() : S.cols();
  if (m < 1 || n < 1) fail(where, "expected a non-empty matrix, got {}x{}", m, n);
  if (q < 1 || q > std::min(m, n))
    fail(where, "expected 1 <= q <= min(m, n) = {}, got q = {}", std::min(m, n), q);
  if (niter < 0) fail(where, "expected niter >= 0, got {}", niter);
  if (!S.allFinite()) fail(where, "expected a finite matrix, got NaN or Inf");
  // out = A·in and out = A^T·in
  auto timesA = [&](const Matrix& in, Matrix& out) {
    if (transposed)
      gemm(out, S.transpose(), in);
    else
      gemm(out, S, in);
  };
  auto timesAt = [&](const Matrix& in, Matrix& out) {
    if (transposed)
      gemm(out, S, in);
    else
      gemm(out, S.transpose(), in);
  };

  linalg::RandomizedSVDResult<Scalar> result;
  Matrix W;  // right factor of the small SVD
  if (m < n || n > q) {
    // Basis Q (n x q) of the row space, as torch runs get_approximate_basis on A^T.
    Matrix omega(m, q);
    fillNormal(omega, rng, 0.0, 1.0);
    Matrix Q(n, q), Y(m, q);
    timesAt(omega, Q);
    orthonormalizeColumns(Q);
    for (Eigen::Index i = 0; i < niter; ++i) {
      timesA(Q, Y);
      orthonormalizeColumns(Y);
      timesAt(Y, Q);
      orthonormalizeColumns(Q);
    }
    timesA(Q, Y);  // m x q, its SVD is that of the approximation A Q Q^T
    tallThinSvd<Scalar>(Y, result.U, result.S, W);
    gemm(result.V, Q, W);
  } else {
    // m >= n and n == q: basis Q (m x q) of the column space.
    Matrix omega(n, q);
    fillNormal(omega, rng, 0.0, 1.0);
    Matrix Q(m, q), X(n, q);
    timesA(omega, Q);
    orthonormalizeColumns(Q);
    for (Eigen::Index i = 0; i < niter; ++i) {
      timesAt(Q, X);
      orthonormalizeColumns(X);
      timesA(X, Q);
      orthonormalizeColumns(Q);
    }
    timesAt(Q, X);  // B^T = A^T Q (n x q), B = Q^T A
    Matrix Ub;
    tallThinSvd<Scalar>(X, result.V, result.S, Ub);
    gemm(result.U, Q, Ub);
  }
  normalizeSigns<Scalar>(result.U, result.V);
  return result;
}

// Compiled once in liblorapp (src/linalg/svd_instances.cpp), unless LORA_NO_EXTERN_TEMPLATES
// is defined (see PartialSVD).
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template linalg::RandomizedSVDResult<float> randomizedSVDStored<float>(
    const StridedView<float>&, bool, Eigen::Index, Eigen::Index, Rng&);
extern template linalg::RandomizedSVDResult<double> randomizedSVDStored<double>(
    const StridedView<double>&, bool, Eigen::Index, Eigen::Index, Rng&);
#endif

}  // namespace lora::detail

namespace lora::linalg {

template <typename Derived>
RandomizedSVDResult<typename Derived::Scalar> randomizedSVD(const Eigen::MatrixBase<Derived>& A,
                                                            Eigen::Index q, Eigen::Index niter,
                                                            Rng& rng) {
  using Scalar = typename Derived::Scalar;
  static_assert(std::is_floating_point_v<Scalar>,
                "lora::linalg::randomizedSVD: the matrix must have a real floating-point Scalar");
  return detail::withStorage(A, [&](const detail::StridedView<Scalar>& S, bool transposed) {
    return detail::randomizedSVDStored<Scalar>(S, transposed, q, niter, rng);
  });
}

}  // namespace lora::linalg
