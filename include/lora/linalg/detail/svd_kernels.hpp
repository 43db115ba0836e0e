#pragma once
/// \file svd_kernels.hpp
/// \brief Building blocks shared by the randomized and the partial SVD: thin orthonormalization,
/// the SVD of a tall-thin matrix, and a deterministic sign convention.

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>

#include "lora/detail/eigen.hpp"
#include "lora/detail/gemm.hpp"

#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/householder_qr.hpp"
#include "lora/random.hpp"
#include "lora/threads.hpp"

namespace lora::detail {

template <typename Scalar>
using DenseMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
template <typename Scalar>
using DenseVector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

/// A read-only column-major view with an outer stride: every matrix the SVDs read is one of these
/// (or its transpose), so each algorithm is compiled once per Scalar, not once per caller's type.
template <typename Scalar>
using StridedView = Eigen::Map<const DenseMatrix<Scalar>, 0, Eigen::OuterStride<>>;

/// Calls \p f(S, transposed) with a StridedView S of \p W's storage, where W = S (transposed ==
/// false) or W = S^T (a row-major W is the transpose of a column-major array). A W without direct
/// access to unit-stride storage (an expression) is evaluated once into a temporary first.
template <typename Derived, typename F>
decltype(auto) withStorage(const Eigen::MatrixBase<Derived>& W, F&& f) {
  using Scalar = typename Derived::Scalar;
  if constexpr ((Derived::Flags & Eigen::DirectAccessBit) != 0) {
    const Derived& w = W.derived();
    if (w.innerStride() == 1) {
      if constexpr (static_cast<bool>(Derived::IsRowMajor))
        return f(StridedView<Scalar>(
                     w.data(), w.cols(), w.rows(),
                     Eigen::OuterStride<>(std::max<Eigen::Index>(w.outerStride(), w.cols()))),
                 true);
      else
        return f(StridedView<Scalar>(
                     w.data(), w.rows(), w.cols(),
                     Eigen::OuterStride<>(std::max<Eigen::Index>(w.outerStride(), w.rows()))),
                 false);
    }
  }
  const DenseMatrix<Scalar> copy = W;
  return f(
      StridedView<Scalar>(copy.data(), copy.rows(), copy.cols(), Eigen::OuterStride<>(copy.rows())),
      false);
}

/// A = S (transposed == false) or A = S^T, with the products by A and A^T chosen at run time: an
/// algorithm written against it is compiled once per Scalar instead of once per orientation.
/// Outputs must already have their size (they may be blocks of a larger matrix or vectors).
template <typename Scalar>
struct OrientedView {
  using Index = Eigen::Index;
  using Out = Eigen::Ref<DenseMatrix<Scalar>>;
  using In = Eigen::Ref<const DenseMatrix<Scalar>>;

  const StridedView<Scalar>& S;
  bool transposed = false;

  Index rows() const { return transposed ? S.cols() : S.rows(); }
  Index cols() const { return transposed ? S.rows() : S.cols(); }
  /// out = A · in
  void times(Out out, const In& in) const {
    if (transposed)
      gemm(out, S.transpose(), in);
    else
      gemm(out, S, in);
  }
  /// out = A^T · in
  void timesTransposed(Out out, const In& in) const {
    if (transposed)
      gemm(out, S, in);
    else
      gemm(out, S.transpose(), in);
  }
  /// A as a matrix of its own.
  DenseMatrix<Scalar> dense() const {
    if (transposed) return S.transpose();
    return S;
  }
};

/// Runs \p first() and \p second(), on two OpenMP threads when \p together (each then runs
/// Eigen single-threaded), else one after the other. An exception from either is rethrown after
/// both have finished (the first's when both throw).
template <typename F1, typename F2>
void runPair(bool together, F1&& first, F2&& second) {
  if (!together) {
    first();
    second();
    return;
  }
  std::exception_ptr errors[2];
#pragma omp parallel sections num_threads(2)
  {
#pragma omp section
    {
      try {
        first();
      } catch (...) {
        errors[0] = std::current_exception();
      }
    }
#pragma omp section
    {
      try {
        second();
      } catch (...) {
        errors[1] = std::current_exception();
      }
    }
  }
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

/// G = X^T X (r x r) for a tall X (rows x r), in place from X (an expression such as a
/// transpose is read through, not copied). On several threads (lora::numThreads()) each thread
/// computes a block of G's columns, so G is the same whatever the thread count.
template <typename Derived>
void gram(const Eigen::MatrixBase<Derived>& X, DenseMatrix<typename Derived::Scalar>& G) {
  const Eigen::Index r = X.cols();
  G.resize(r, r);
  const int threads = static_cast<int>(std::min<Eigen::Index>(lora::numThreads(), r / 8));
  if (threads <= 1 || X.rows() * r * r < (Eigen::Index{1} << 20)) {
    gemm(G, X.transpose(), X);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    const Eigen::Index begin = r * t / threads, end = r * (t + 1) / threads;
    gemm(G.middleCols(begin, end - begin), X.transpose(), X.middleCols(begin, end - begin));
  }
}

/// Replaces the columns of \p X (rows >= cols) by an orthonormal basis of their span: the thin Q
/// of a Householder QR, O(rows·cols²). Where X is rank-deficient the extra columns are still
/// orthonormal (Householder Q always is), just not in X's span.
template <typename Scalar>
void orthonormalizeColumns(DenseMatrix<Scalar>& X) {
  if (X.cols() == 0) return;
  X = linalg::ThinQR<Scalar>(std::move(X)).matrixQ();
}

/// Thin SVD of a tall matrix \p Y (rows >= cols): Y = U diag(S) W^T with U (rows x cols) and W
/// (cols x cols) orthonormal, S decreasing. A Householder QR first, then the dense SVD of the small
/// triangular factor, so the cost is O(rows·cols² + cols³).
template <typename Scalar, typename DerivedY>
void tallThinSvd(const Eigen::MatrixBase<DerivedY>& Y, DenseMatrix<Scalar>& U,
                 DenseVector<Scalar>& S, DenseMatrix<Scalar>& W) {
  const Eigen::Index rows = Y.rows(), cols = Y.cols();
  const linalg::ThinQR<Scalar> qr(Y.derived());
  const auto svd = linalg::denseSVD(qr.matrixR(), Eigen::ComputeFullU | Eigen::ComputeFullV);
  S = svd.S;
  W = svd.V;
  U.setZero(rows, cols);
  U.topRows(cols) = svd.U;
  qr.applyQ(U);
}

/// Flips the sign of each pair (U_i, V_i) so that the entry of U_i with the largest magnitude is
/// positive (the first such entry on ties). Singular vectors are defined up to that sign; fixing
/// it makes results reproducible across methods.
template <typename Scalar>
void normalizeSigns(DenseMatrix<Scalar>& U, DenseMatrix<Scalar>& V) {
  for (Eigen::Index i = 0; i < U.cols(); ++i) {
    Eigen::Index at = 0;
    U.col(i).cwiseAbs().maxCoeff(&at);
    if (U(at, i) < Scalar(0)) {
      U.col(i) = -U.col(i);
      V.col(i) = -V.col(i);
    }
  }
}

/// Makes the columns of \p X orthonormal and orthogonal to the orthonormal columns of \p K:
/// two passes of block classical Gram–Schmidt, a Householder QR, then further passes while
/// K^T X is above rounding. A column that lies (numerically) inside span(K) is replaced by a
/// fresh Gaussian direction drawn from \p rng, so X always comes back with full column rank
/// (this is what lets a Krylov basis grow past the rank of a rank-deficient matrix).
/// Requires K.cols() + X.cols() <= X.rows().
template <typename Scalar, typename DerivedK>
void orthonormalizeAgainst(const Eigen::MatrixBase<DerivedK>& K, DenseMatrix<Scalar>& X, Rng& rng) {
  const Eigen::Index n = X.rows();
  const Scalar eps = std::numeric_limits<Scalar>::epsilon();
  const Scalar threshold = Scalar(4) * eps * std::sqrt(static_cast<Scalar>(n));
  if (K.cols() > 0) {
    for (int pass = 0; pass < 2; ++pass) gemmSub(X, K, product(K.transpose(), X));
  }
  orthonormalizeColumns(X);
  if (K.cols() == 0) return;
  for (int attempt = 0; attempt < 4; ++attempt) {
    const DenseMatrix<Scalar> C = product(K.transpose(), X);
    if (C.cwiseAbs().maxCoeff() <= threshold) return;
    gemmSub(X, K, C);
    for (Eigen::Index j = 0; j < X.cols(); ++j) {
      if (X.col(j).norm() >= Scalar(0.5)) continue;
      DenseVector<Scalar> fresh(n);
      fillNormal(fresh, rng, 0.0, 1.0);
      for (int pass = 0; pass < 2; ++pass) gemmSub(fresh, K, product(K.transpose(), fresh));
      X.col(j) = fresh / fresh.norm();
    }
    orthonormalizeColumns(X);
  }
}

}  // namespace lora::detail
