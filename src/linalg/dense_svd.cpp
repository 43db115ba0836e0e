#include "lora/linalg/dense_svd.hpp"

#include <algorithm>
#include <type_traits>

#include <Eigen/QR>
#include <Eigen/SVD>

#include "lora/error.hpp"

#if defined(LORA_WITH_LAPACK)
#include "lapack.hpp"
#endif

namespace lora::linalg {
namespace {

template <typename Scalar>
using MatrixOf = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

#if defined(LORA_WITH_LAPACK)

// LAPACK's divide-and-conquer SVD (xGESDD), with QR iteration (xGESVD) when it does not converge,
// for matrices with fewer than kLapackBelow columns or rows: there it takes about 0.4x the time of
// the rank-revealing QR and BDCSVD below (a 64 x 64 core: 0.44 ms against 1.06 ms), while from
// 1024 on, with OpenBLAS's kernels as detected on this project's machine, BDCSVD is as fast on two
// threads and faster on one (docs/performance.md). gesdd handles rank deficiency itself: singular
// values below rounding level come back as tiny numbers, not 0.
constexpr Eigen::Index kLapackBelow = 256;

template <typename Scalar, typename Ref>
DenseSVDResult<Scalar> lapackSVD(const Ref& original, unsigned int options) {
  using Matrix = MatrixOf<Scalar>;
  Matrix M = original;  // gesdd destroys its input
  constexpr const char* where = "denseSVD";
  const int m = lapack::dimension(where, M.rows()), n = lapack::dimension(where, M.cols());
  const int p = std::min(m, n);
  const bool wantU = (options & (Eigen::ComputeThinU | Eigen::ComputeFullU)) != 0;
  const bool wantV = (options & (Eigen::ComputeThinV | Eigen::ComputeFullV)) != 0;
  const bool full = (options & (Eigen::ComputeFullU | Eigen::ComputeFullV)) != 0;
  const char job = !(wantU || wantV) ? 'N' : (full ? 'A' : 'S');
  const int uCols = job == 'A' ? m : (job == 'S' ? p : 1);
  const int vtRows = job == 'A' ? n : (job == 'S' ? p : 1);
  DenseSVDResult<Scalar> r;
  r.S.resize(p);
  Matrix U(job == 'N' ? 1 : m, uCols), Vt(vtRows, job == 'N' ? 1 : n);
  std::vector<int> iwork(8 * static_cast<std::size_t>(p));
  int info = 0;
  Scalar query = 0;
  lapack::gesdd(job, m, n, M.data(), m, r.S.data(), U.data(), int(U.rows()), Vt.data(),
                int(Vt.rows()), &query, -1, iwork.data(), &info);
  std::vector<Scalar> work(static_cast<std::size_t>(lapack::workspace(query)));
  lapack::gesdd(job, m, n, M.data(), m, r.S.data(), U.data(), int(U.rows()), Vt.data(),
                int(Vt.rows()), work.data(), int(work.size()), iwork.data(), &info);
  if (info > 0) {
    M = original;
    lapack::gesvd(job == 'N' ? 'N' : job, m, n, M.data(), m, r.S.data(), U.data(), int(U.rows()),
                  Vt.data(), int(Vt.rows()), &query, -1, &info);
    work.resize(static_cast<std::size_t>(lapack::workspace(query)));
    lapack::gesvd(job == 'N' ? 'N' : job, m, n, M.data(), m, r.S.data(), U.data(), int(U.rows()),
                  Vt.data(), int(Vt.rows()), work.data(), int(work.size()), &info);
  }
  if (info < 0) detail::fail(where, "expected LAPACK to accept argument {}, it rejected it", -info);
  if (info > 0) r.info = Eigen::NoConvergence;
  if (wantU) r.U = (options & Eigen::ComputeFullU) ? U : Matrix(U.leftCols(p));
  if (wantV) {
    const Eigen::Index cols = (options & Eigen::ComputeFullV) ? n : p;
    r.V = Vt.topRows(cols).transpose();
  }
  return r;
}

#endif

template <typename Scalar>
DenseSVDResult<Scalar> bdcsvd(const MatrixOf<Scalar>& M, unsigned int options) {
  const Eigen::BDCSVD<MatrixOf<Scalar> > svd(M, options);
  DenseSVDResult<Scalar> r;
  r.info = svd.info();
  r.S = svd.singularValues();
  if (svd.computeU()) r.U = svd.matrixU();
  if (svd.computeV()) r.V = svd.matrixV();
  return r;
}

// Eigen 3.4.0's BDCSVD indexes out of bounds (and crashes) on some rank-deficient matrices: its
// deflation meets singular values at rounding level (tests/data/bdcsvd_out_of_bounds_64x64.bin,
// a weight gradient of rank ~40, crashes it in computeSVDofM; TensorFlow hit the same,
// tensorflow/tensorflow#9234). So a column-pivoting QR, M P = Q R, first finds the numerical rank
// k (|R_ii| > eps·min(m, n)·|R_00|, Eigen's default threshold); when k < min(m, n), BDCSVD
// decomposes only the k x n full-rank part R_1 P^T = U_1 S_1 V^T, and
// M = (Q_k U_1) S_1 V^T + O(eps·σ_1): the dropped singular values, at rounding level, are
// returned as 0 and U, V are completed by Q's next columns and BDCSVD's full V.
template <typename Scalar>
DenseSVDResult<Scalar> rankRevealing(const MatrixOf<Scalar>& M, unsigned int options) {
  using Matrix = MatrixOf<Scalar>;
  const Eigen::Index m = M.rows(), n = M.cols(), p = std::min(m, n);
  // Householder norms square the entries: scale to a largest magnitude of 1 first (as BDCSVD
  // does inside), so float inputs near 1e±30 neither overflow nor underflow.
  const Scalar scale = M.cwiseAbs().maxCoeff();
  const Matrix Ms = scale > Scalar(0) ? Matrix(M / scale) : M;
  const Eigen::ColPivHouseholderQR<Matrix> qr(Ms);
  const Eigen::Index k = qr.rank();
  if (k == p) return bdcsvd<Scalar>(M, options);
  const bool wantU = (options & (Eigen::ComputeThinU | Eigen::ComputeFullU)) != 0;
  const bool wantV = (options & (Eigen::ComputeThinV | Eigen::ComputeFullV)) != 0;
  DenseSVDResult<Scalar> r;
  r.S.setZero(p);
  Matrix U1, V1;
  if (k > 0) {
    const Matrix R1 = qr.matrixR().topRows(k).template triangularView<Eigen::Upper>();
    const Matrix C = R1 * qr.colsPermutation().transpose();  // k x n, M = Q_k C + O(eps)
    const Eigen::BDCSVD<Matrix> inner(
        C, (wantU ? Eigen::ComputeThinU : 0) | (wantV ? Eigen::ComputeFullV : 0));
    r.info = inner.info();
    r.S.head(k) = inner.singularValues() * scale;
    if (wantU) U1 = inner.matrixU();
    if (wantV) V1 = inner.matrixV();
  } else if (wantV) {
    V1 = Matrix::Identity(n, n);
  }
  if (wantU) {
    const Eigen::Index cols = (options & Eigen::ComputeFullU) ? m : p;
    const Matrix Q = qr.householderQ() * Matrix::Identity(m, cols);
    r.U = Q;
    if (k > 0) r.U.leftCols(k) = Q.leftCols(k) * U1;
  }
  if (wantV) r.V = (options & Eigen::ComputeFullV) ? V1 : Matrix(V1.leftCols(p));
  return r;
}

template <typename Scalar, typename Ref>
DenseSVDResult<Scalar> decompose(const Ref& M, unsigned int options) {
#if defined(LORA_WITH_LAPACK)
  if (std::min(M.rows(), M.cols()) < kLapackBelow) return lapackSVD<Scalar>(M, options);
  return rankRevealing<Scalar>(MatrixOf<Scalar>(M), options);
#else
  // Without LAPACK (the portable build, and the sanitizer build of CI), float matrices are
  // decomposed in double: one instantiation of Eigen's BDCSVD instead of two (about 80 s of
  // compile time under the sanitizers), at twice the precision the result is rounded to.
  if constexpr (std::is_same_v<Scalar, double>) {
    return rankRevealing<double>(MatrixOf<double>(M), options);
  } else {
    const DenseSVDResult<double> d = rankRevealing<double>(M.template cast<double>(), options);
    DenseSVDResult<Scalar> r;
    r.info = d.info;
    r.S = d.S.template cast<Scalar>();
    r.U = d.U.template cast<Scalar>();
    r.V = d.V.template cast<Scalar>();
    return r;
  }
#endif
}

template <typename Scalar, typename Ref>
DenseSVDResult<Scalar> run(const Ref& M, unsigned int options) {
  constexpr const char* where = "denseSVD";
  if (M.rows() < 1 || M.cols() < 1)
    detail::fail(where, "expected a non-empty matrix, got {}x{}", M.rows(), M.cols());
  if (!M.allFinite()) detail::fail(where, "expected a finite matrix, got NaN or Inf");
  const unsigned int known =
      Eigen::ComputeThinU | Eigen::ComputeFullU | Eigen::ComputeThinV | Eigen::ComputeFullV;
  if ((options & ~known) != 0 ||
      ((options & Eigen::ComputeThinU) && (options & Eigen::ComputeFullU)) ||
      ((options & Eigen::ComputeThinV) && (options & Eigen::ComputeFullV)))
    detail::fail(where,
                 "expected options of at most one of ComputeThinU/ComputeFullU and one of "
                 "ComputeThinV/ComputeFullV, got {:#x}",
                 options);
  return decompose<Scalar>(M, options);
}

}  // namespace

DenseSVDResult<float> denseSVD(const Eigen::Ref<const Eigen::MatrixXf>& M, unsigned int options) {
  return run<float>(M, options);
}
DenseSVDResult<double> denseSVD(const Eigen::Ref<const Eigen::MatrixXd>& M, unsigned int options) {
  return run<double>(M, options);
}
Eigen::VectorXf singularValues(const Eigen::Ref<const Eigen::MatrixXf>& M) {
  return run<float>(M, 0).S;
}
Eigen::VectorXd singularValues(const Eigen::Ref<const Eigen::MatrixXd>& M) {
  return run<double>(M, 0).S;
}

}  // namespace lora::linalg
