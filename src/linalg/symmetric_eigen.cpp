#include "lora/linalg/symmetric_eigen.hpp"

#include <Eigen/Eigenvalues>

#include "lora/error.hpp"

namespace lora::linalg {
namespace {

template <typename Scalar, typename Ref>
SymmetricEigenResult<Scalar> run(const Ref& M, bool vectors) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  constexpr const char* where = "symmetricEigen";
  if (M.rows() < 1 || M.rows() != M.cols())
    detail::fail(where, "expected a non-empty square matrix, got {}x{}", M.rows(), M.cols());
  if (!M.template triangularView<Eigen::Lower>().toDenseMatrix().allFinite())
    detail::fail(where, "expected a finite lower triangle, got NaN or Inf");
  const Eigen::SelfAdjointEigenSolver<Matrix> eig(
      Matrix(M), vectors ? Eigen::ComputeEigenvectors : Eigen::EigenvaluesOnly);
  SymmetricEigenResult<Scalar> r;
  r.info = eig.info();
  r.values = eig.eigenvalues();
  if (vectors) r.vectors = eig.eigenvectors();
  return r;
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
