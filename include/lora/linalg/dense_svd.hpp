#pragma once
/// \file dense_svd.hpp
/// \brief The dense SVD (LAPACK's xGESDD for small matrices, Eigen's BDCSVD behind a
/// rank-revealing QR for large ones), compiled once in liblorapp for float and double.
///
/// Eigen::BDCSVD costs about 30 s of compile time per scalar type at -O2. Every header of LoRA++
/// that needs a dense SVD (the r x r core of a factored SVD, PiSSA's Dense method, MiLoRA, weight
/// statistics) calls denseSVD instead, so a program that includes them pays that cost once, in
/// the library, and not in each of its translation units.

#include "lora/detail/eigen.hpp"

#include "lora/threads.hpp"

namespace lora::linalg {

/// M = U diag(S) V^T with S decreasing and >= 0. U and V are empty unless requested.
template <typename Scalar>
struct DenseSVDResult {
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> U;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> S;
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> V;
  Eigen::ComputationInfo info = Eigen::Success;
};

/// The SVD of \p M, exact to rounding, O(m·n·min(m, n)). Below 256 rows or columns, with
/// `LORA_LAPACK` (the default), LAPACK's divide-and-conquer xGESDD (xGESVD if it does not
/// converge); otherwise Eigen::BDCSVD, which was as fast or faster for large matrices with the
/// OpenBLAS kernels measured (docs/performance.md). Eigen 3.4.0's BDCSVD crashes on some
/// rank-deficient matrices (a 64 x 64 weight gradient did; tests/test_dense_decompositions.cpp
/// keeps it), so a column-pivoting QR first finds the numerical rank k and BDCSVD only sees a
/// k x n full-rank part; the singular values below rounding level come back as 0 there (as tiny
/// numbers from LAPACK). \p options are Eigen's: 0 for
/// singular values only, or any of
/// Eigen::ComputeThinU / ComputeFullU combined with ComputeThinV / ComputeFullV.
/// An empty or non-finite \p M, or options asking for both thin and full U (or V), throw
/// lora::Error.
DenseSVDResult<float> denseSVD(const Eigen::Ref<const Eigen::MatrixXf>& M,
                               unsigned int options = Eigen::ComputeThinU | Eigen::ComputeThinV);
/// \copydoc denseSVD(const Eigen::Ref<const Eigen::MatrixXf>&, unsigned int)
DenseSVDResult<double> denseSVD(const Eigen::Ref<const Eigen::MatrixXd>& M,
                                unsigned int options = Eigen::ComputeThinU | Eigen::ComputeThinV);

/// The singular values of \p M, decreasing (denseSVD with options 0).
Eigen::VectorXf singularValues(const Eigen::Ref<const Eigen::MatrixXf>& M);
/// \copydoc singularValues(const Eigen::Ref<const Eigen::MatrixXf>&)
Eigen::VectorXd singularValues(const Eigen::Ref<const Eigen::MatrixXd>& M);

}  // namespace lora::linalg
