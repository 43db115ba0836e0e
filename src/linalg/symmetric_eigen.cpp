#include "lora/linalg/symmetric_eigen.hpp"

#include "lora/error.hpp"

#if defined(LORA_WITH_LAPACK)
#include "lapack.hpp"
#else
#include <Eigen/Eigenvalues>
#endif

namespace lora::linalg {
namespace {

#if defined(LORA_WITH_LAPACK)

// LAPACK's divide-and-conquer symmetric eigensolver (xSYEVD, lower triangle; 1.5-2x Eigen's
// SelfAdjointEigenSolver at n = 1024 on this project's machine, docs/performance.md).
template <typename Scalar, typename Ref>
SymmetricEigenResult<Scalar> decompose(const Ref& M, bool vectors) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  constexpr const char* where = "symmetricEigen";
  const int n = lapack::dimension(where, M.rows());
  Matrix a = M;
  SymmetricEigenResult<Scalar> r;
  r.values.resize(n);
  const char job = vectors ? 'V' : 'N';
  int info = 0, iquery = 0;
  Scalar query = 0;
  lapack::syevd(job, n, a.data(), n, r.values.data(), &query, -1, &iquery, -1, &info);
  std::vector<Scalar> work(static_cast<std::size_t>(lapack::workspace(query)));
  std::vector<int> iwork(static_cast<std::size_t>(std::max(1, iquery)));
  lapack::syevd(job, n, a.data(), n, r.values.data(), work.data(), int(work.size()), iwork.data(),
                int(iwork.size()), &info);
  if (info < 0) detail::fail(where, "expected LAPACK to accept argument {}, it rejected it", -info);
  if (info > 0) r.info = Eigen::NoConvergence;
  if (vectors) r.vectors = std::move(a);
  return r;
}

#else

// Eigen's SelfAdjointEigenSolver, in double for float input too (one instantiation instead of
// two: the portable build and CI's sanitizer build compile it; twice the working precision).
template <typename Scalar, typename Ref>
SymmetricEigenResult<Scalar> decompose(const Ref& M, bool vectors) {
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(
      M.template cast<double>(), vectors ? Eigen::ComputeEigenvectors : Eigen::EigenvaluesOnly);
  SymmetricEigenResult<Scalar> r;
  r.info = eig.info();
  r.values = eig.eigenvalues().template cast<Scalar>();
  if (vectors) r.vectors = eig.eigenvectors().template cast<Scalar>();
  return r;
}

#endif

template <typename Scalar, typename Ref>
SymmetricEigenResult<Scalar> run(const Ref& M, bool vectors) {
  constexpr const char* where = "symmetricEigen";
  if (M.rows() < 1 || M.rows() != M.cols())
    detail::fail(where, "expected a non-empty square matrix, got {}x{}", M.rows(), M.cols());
  if (!M.template triangularView<Eigen::Lower>().toDenseMatrix().allFinite())
    detail::fail(where, "expected a finite lower triangle, got NaN or Inf");
  return decompose<Scalar>(M, vectors);
}

}  // namespace

SymmetricEigenResult<float> symmetricEigen(const Eigen::Ref<const Eigen::MatrixXf>& M,
                                           bool vectors) {
  return run<float>(M, vectors);
}
SymmetricEigenResult<double> symmetricEigen(const Eigen::Ref<const Eigen::MatrixXd>& M,
                                            bool vectors) {
  return run<double>(M, vectors);
}

}  // namespace lora::linalg
