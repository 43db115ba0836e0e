// lora/linalg/dense_svd.hpp, symmetric_eigen.hpp and householder_qr.hpp: the decompositions
// compiled once in liblorapp, against their definitions (reconstruction, orthonormality, order),
// against Eigen's own HouseholderQR, and bad input.
#include <cstdint>
#include <fstream>
#include <limits>
#include <string>
#include <tuple>

#include <gtest/gtest.h>
#include <Eigen/QR>

#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/householder_qr.hpp"
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

// Rank-deficient input takes the rank-revealing path: every option still gives an exact SVD
// with orthonormal (completed) factors and the missing singular values as 0.
TYPED_TEST(DenseDecompositions, SvdOfRankDeficientMatricesIsExactWithCompletedFactors) {
  using S = TypeParam;
  using Mat = lora::test::Mat<S>;
  const double tol = 1000 * lora::test::tolerance<S>();
  for (const auto& [m, n, k] : {std::tuple{40, 30, 7}, std::tuple{30, 45, 1},
                                std::tuple{64, 64, 40}, std::tuple{20, 20, 0}}) {
    const Mat M = k == 0 ? Mat::Zero(m, n)
                         : Mat(lora::test::gaussian<S>(m, k, 6) * lora::test::gaussian<S>(k, n, 7));
    const Eigen::Index p = std::min(m, n);
    for (unsigned opts : {unsigned(Eigen::ComputeThinU | Eigen::ComputeThinV),
                          unsigned(Eigen::ComputeFullU | Eigen::ComputeFullV)}) {
      const auto svd = lora::linalg::denseSVD(M, opts);
      ASSERT_EQ(svd.info, Eigen::Success);
      ASSERT_EQ(svd.S.size(), p);
      const bool full = opts & Eigen::ComputeFullU;
      ASSERT_EQ(svd.U.cols(), full ? m : p);
      ASSERT_EQ(svd.V.cols(), full ? n : p);
      const Mat Sm = Mat::Zero(svd.U.cols(), svd.V.cols());
      Mat Sfull = Sm;
      Sfull.diagonal().head(p) = svd.S;
      EXPECT_LE((svd.U * Sfull * svd.V.transpose() - M).norm(), tol * (1 + M.norm()))
          << m << "x" << n << " rank " << k;
      EXPECT_LE((svd.U.transpose() * svd.U - Mat::Identity(svd.U.cols(), svd.U.cols())).norm(),
                tol);
      EXPECT_LE((svd.V.transpose() * svd.V - Mat::Identity(svd.V.cols(), svd.V.cols())).norm(),
                tol);
      for (Eigen::Index i = 1; i < p; ++i) EXPECT_GE(svd.S(i - 1), svd.S(i));
      if (k < p) {
        EXPECT_LE(svd.S.tail(p - k).maxCoeff(), tol * (1 + M.norm()));
      }
      EXPECT_NEAR(svd.S.squaredNorm(), M.squaredNorm(), tol * (1 + M.squaredNorm()));
    }
    EXPECT_TRUE(
        lora::linalg::singularValues(M).isApprox(lora::linalg::denseSVD(M).S, S(tol) * 10) ||
        k == 0);
  }
}

// A 64 x 64 weight gradient (rank about 40, the rest ~1e-18) from the digits experiment, on
// which Eigen 3.4.0's BDCSVD indexes out of bounds and crashes (values only and thin U/V).
TEST(DenseSvdRegression, RankDeficientGradientThatCrashedBdcsvd) {
  std::ifstream in(std::string(LORA_SOURCE_DIR) + "/tests/data/bdcsvd_out_of_bounds_64x64.bin",
                   std::ios::binary);
  ASSERT_TRUE(in);
  std::int64_t shape[2] = {0, 0};
  in.read(reinterpret_cast<char*>(shape), sizeof shape);
  ASSERT_EQ(shape[0], 64);
  ASSERT_EQ(shape[1], 64);
  Eigen::MatrixXd M(shape[0], shape[1]);
  in.read(reinterpret_cast<char*>(M.data()),
          static_cast<std::streamsize>(sizeof(double) * M.size()));
  ASSERT_TRUE(in);
  const Eigen::VectorXd values = lora::linalg::singularValues(M);
  const auto thin = lora::linalg::denseSVD(M);
  ASSERT_EQ(thin.info, Eigen::Success);
  EXPECT_LE((thin.U * thin.S.asDiagonal() * thin.V.transpose() - M).norm(), 1e-12 * M.norm());
  EXPECT_LE((values - thin.S).norm(), 1e-12 * values(0));
  // ||M||_F^2 = sum of sigma^2 (an independent check of the values).
  EXPECT_NEAR(values.squaredNorm(), M.squaredNorm(), 1e-10 * M.squaredNorm());
  const auto single = lora::linalg::singularValues(Eigen::MatrixXf(M.cast<float>()));
  EXPECT_LE((single.cast<double>() - values).norm(), 1e-5 * values(0));
}

TYPED_TEST(DenseDecompositions, ThinQrIsEigensHouseholderQr) {
  using S = TypeParam;
  using Mat = lora::test::Mat<S>;
  const double tol = 100 * lora::test::tolerance<S>();
  // Tall, wide and square; 300 rows take Eigen's blocked path (panels of 48 reflectors).
  for (const auto& [m, n] :
       {std::pair{9, 5}, std::pair{5, 9}, std::pair{7, 7}, std::pair{300, 70}}) {
    const Mat X = lora::test::gaussian<S>(m, n, 11);
    const lora::linalg::ThinQR<S> qr(X);
    // The reference in double for both scalars (one instantiation of Eigen's QR in this file).
    const Eigen::HouseholderQR<Eigen::MatrixXd> reference(X.template cast<double>());
    const Eigen::Index p = std::min(m, n);
    ASSERT_EQ(qr.rows(), m);
    ASSERT_EQ(qr.cols(), n);
    const Mat R = qr.matrixR(), Q = qr.matrixQ();
    ASSERT_EQ(R.rows(), p);
    ASSERT_EQ(R.cols(), n);
    ASSERT_EQ(Q.rows(), m);
    ASSERT_EQ(Q.cols(), p);
    // The same algorithm, so the same factors (signs included), to rounding.
    const Eigen::MatrixXd refR =
        reference.matrixQR().topRows(p).template triangularView<Eigen::Upper>();
    const Eigen::MatrixXd refQ = reference.householderQ() * Eigen::MatrixXd::Identity(m, p);
    EXPECT_LE((R.template cast<double>() - refR).norm(), tol * refR.norm());
    EXPECT_LE((Q.template cast<double>() - refQ).norm(), tol);
    for (Eigen::Index i = 0; i < p; ++i)
      for (Eigen::Index j = 0; j < std::min<Eigen::Index>(i, n); ++j) EXPECT_EQ(R(i, j), S(0));
    EXPECT_LE((Q * R - X).norm(), tol * X.norm());
    EXPECT_LE((Q.transpose() * Q - Mat::Identity(p, p)).norm(), tol);
    // All of Q (m x m) completes the thin Q; applyQ multiplies by it without forming it.
    const Mat full = qr.matrixQ(m);
    EXPECT_LE((full.leftCols(p) - Q).norm(), tol);
    EXPECT_LE((full.transpose() * full - Mat::Identity(m, m)).norm(), tol);
    Mat M = lora::test::gaussian<S>(m, 3, 12);
    const Mat expected = full * M;
    qr.applyQ(M);
    EXPECT_LE((M - expected).norm(), tol * expected.norm());
    EXPECT_EQ(qr.matrixQ(0).cols(), 0);
  }
  // Empty matrices and empty requests (Eigen's own reflector code offsets null pointers there).
  for (const auto& [m, n] : {std::pair{5, 0}, std::pair{0, 3}, std::pair{0, 0}}) {
    const lora::linalg::ThinQR<S> empty{Mat(m, n)};
    EXPECT_EQ(empty.matrixR().rows(), 0);
    EXPECT_EQ(empty.matrixR().cols(), n);
    EXPECT_EQ(empty.matrixQ().rows(), m);
    EXPECT_EQ(empty.matrixQ().cols(), 0);
    EXPECT_EQ(empty.matrixQ(m), Mat::Identity(m, m));
    Mat M = lora::test::gaussian<S>(m, 2, 15);
    const Mat before = M;
    empty.applyQ(M);
    EXPECT_EQ(M, before);
  }
  // Decomposed in the storage it is moved from; rank deficiency is no error (Q stays orthonormal).
  Mat X = Mat::Zero(6, 3);
  X.col(0).setOnes();
  const Mat original = X;
  const lora::linalg::ThinQR<S> moved(std::move(X));
  const Mat Q = moved.matrixQ();
  EXPECT_LE((Q.transpose() * Q - Mat::Identity(3, 3)).norm(), tol);
  EXPECT_LE((Q * moved.matrixR() - original).norm(), tol * original.norm());
}

TYPED_TEST(DenseDecompositions, ThinQrRejectsBadArguments) {
  using S = TypeParam;
  using Mat = lora::test::Mat<S>;
  const lora::linalg::ThinQR<S> qr(lora::test::gaussian<S>(6, 4, 13));
  EXPECT_CONTAINS(errorOf([&] { qr.matrixQ(7); }),
                  "ThinQR::matrixQ(): expected 0 to 6 columns (the rows of X), got 7");
  EXPECT_CONTAINS(errorOf([&] { qr.matrixQ(-1); }), "got -1");
  Mat M = lora::test::gaussian<S>(5, 2, 14);
  const Mat before = M;
  EXPECT_CONTAINS(errorOf([&] { qr.applyQ(M); }),
                  "ThinQR::applyQ(): expected a matrix with 6 rows (those of X), got 5x2");
  EXPECT_EQ(M, before);
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
