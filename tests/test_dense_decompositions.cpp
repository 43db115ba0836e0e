// lora/linalg/dense_svd.hpp and lora/linalg/symmetric_eigen.hpp: the decompositions compiled once
// in liblorapp, against their definitions (reconstruction, orthonormality, order) and bad input.
#include <limits>

#include <gtest/gtest.h>

#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/symmetric_eigen.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

using lora::test::errorOf;

template <typename Scalar>
class DenseDecompositions : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(DenseDecompositions, Scalars);

TYPED_TEST(DenseDecompositions, SvdReconstructsWithOrthonormalFactorsAndDecreasingValues) {
  using S = TypeParam;
  using Mat = lora::test::Mat<S>;
  const double tol = 100 * lora::test::tolerance<S>();
  for (const auto& [m, n] : {std::pair{9, 5}, std::pair{5, 9}, std::pair{7, 7}}) {
    const Mat M = lora::test::gaussian<S>(m, n, 3);
    const auto thin = lora::linalg::denseSVD(M);
    ASSERT_EQ(thin.info, Eigen::Success);
    const Eigen::Index k = std::min(m, n);
    ASSERT_EQ(thin.U.rows(), m);
    ASSERT_EQ(thin.U.cols(), k);
    ASSERT_EQ(thin.V.rows(), n);
    ASSERT_EQ(thin.V.cols(), k);
    EXPECT_LE((thin.U * thin.S.asDiagonal() * thin.V.transpose() - M).norm(), tol * M.norm());
    EXPECT_LE((thin.U.transpose() * thin.U - Mat::Identity(k, k)).norm(), tol);
    EXPECT_LE((thin.V.transpose() * thin.V - Mat::Identity(k, k)).norm(), tol);
    for (Eigen::Index i = 1; i < k; ++i) EXPECT_GE(thin.S(i - 1), thin.S(i));
    EXPECT_GE(thin.S.minCoeff(), S(0));
    // values only, full U, and a strided view (a block) all agree with the thin result
    EXPECT_TRUE(lora::linalg::singularValues(M).isApprox(thin.S));
    const auto full = lora::linalg::denseSVD(M, Eigen::ComputeFullU);
    EXPECT_EQ(full.U.rows(), m);
    EXPECT_EQ(full.U.cols(), m);
    EXPECT_EQ(full.V.size(), 0);
    const Mat big = lora::test::gaussian<S>(m + 3, n + 2, 4);
    Mat block = big.block(1, 2, m, n);
    EXPECT_TRUE(lora::linalg::denseSVD(big.block(1, 2, m, n), 0u)
                    .S.isApprox(lora::linalg::denseSVD(block, 0u).S));
  }
}

TYPED_TEST(DenseDecompositions, SymmetricEigenDiagonalizesAndReadsTheLowerTriangle) {
  using S = TypeParam;
  using Mat = lora::test::Mat<S>;
  const double tol = 100 * lora::test::tolerance<S>();
  const Mat G = lora::test::gaussian<S>(8, 6, 5);
  Mat C = G.transpose() * G;  // 6 x 6, symmetric positive definite
  const auto eig = lora::linalg::symmetricEigen(C);
  ASSERT_EQ(eig.info, Eigen::Success);
  EXPECT_LE((eig.vectors * eig.values.asDiagonal() * eig.vectors.transpose() - C).norm(),
            tol * C.norm());
  for (Eigen::Index i = 1; i < 6; ++i) EXPECT_LE(eig.values(i - 1), eig.values(i));
  const Mat Cfull = C;
  C.template triangularView<Eigen::StrictlyUpper>().setConstant(S(1e3));  // ignored
  EXPECT_TRUE(lora::linalg::symmetricEigen(C, false).values.isApprox(
      lora::linalg::symmetricEigen(Cfull, false).values));
  EXPECT_EQ(lora::linalg::symmetricEigen(C, false).vectors.size(), 0);
}

TYPED_TEST(DenseDecompositions, RejectBadInput) {
  using S = TypeParam;
  using Mat = lora::test::Mat<S>;
  EXPECT_CONTAINS(errorOf([] { lora::linalg::denseSVD(Mat(0, 3)); }),
                  "denseSVD(): expected a non-empty matrix, got 0x3");
  Mat M = lora::test::gaussian<S>(4, 3, 1);
  M(2, 1) = std::numeric_limits<S>::quiet_NaN();
  EXPECT_CONTAINS(errorOf([&] { lora::linalg::denseSVD(M); }), "expected a finite matrix");
  EXPECT_CONTAINS(errorOf([] {
                    lora::linalg::denseSVD(Mat::Ones(3, 3),
                                           Eigen::ComputeThinU | Eigen::ComputeFullU);
                  }),
                  "expected options of at most one of");
  EXPECT_CONTAINS(errorOf([] { lora::linalg::symmetricEigen(Mat::Ones(3, 4)); }),
                  "symmetricEigen(): expected a non-empty square matrix, got 3x4");
  Mat C = Mat::Identity(3, 3);
  C(2, 0) = std::numeric_limits<S>::infinity();
  EXPECT_CONTAINS(errorOf([&] { lora::linalg::symmetricEigen(C); }), "expected a finite");
}

}  // namespace
