#include "lora/linalg/dense_svd.hpp"

#include <Eigen/SVD>

#include "lora/error.hpp"

namespace lora::linalg {
namespace {

template <typename Scalar, typename Ref>
DenseSVDResult<Scalar> run(const Ref& M, unsigned int options) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
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
  const Eigen::BDCSVD<Matrix> svd(Matrix(M), options);
  DenseSVDResult<Scalar> r;
  r.info = svd.info();
  r.S = svd.singularValues();
  if (svd.computeU()) r.U = svd.matrixU();
  if (svd.computeV()) r.V = svd.matrixV();
  return r;
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
