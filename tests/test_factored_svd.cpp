// FactoredSVD against the dense SVD (linalg::denseSVD) of the materialized product, float and
// double; CholeskyQR2 and its Householder fallback.
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "support/matrices.hpp"

namespace {

using lora::test::gaussian;
using lora::test::Mat;
using lora::test::tolerance;
using lora::test::Vec;

template <typename Scalar>
class FactoredSVDTest : public ::testing::Test {
 protected:
  // Checks σ, U, V of the factored SVD of s·B·A against BDCSVD of the dense s·B·A.
  void checkAgainstDense(const Mat<Scalar>& B, const Mat<Scalar>& A, Scalar s) {
    const double tol = tolerance<Scalar>();
    lora::linalg::FactoredSVD<Scalar> svd(B, A, s);
    ASSERT_EQ(svd.info(), Eigen::Success);
    const Mat<Scalar> dense = s * (B * A);
    const auto ref = lora::linalg::denseSVD(dense, Eigen::ComputeThinU | Eigen::ComputeThinV);
    const Eigen::Index k = std::min({B.cols(), B.rows(), A.cols()});
    ASSERT_EQ(svd.singularValues().size(), k);
    ASSERT_EQ(svd.matrixU().rows(), B.rows());
    ASSERT_EQ(svd.matrixU().cols(), k);
    ASSERT_EQ(svd.matrixV().rows(), A.cols());
    ASSERT_EQ(svd.matrixV().cols(), k);
    const double top = std::max<double>(ref.S(0), std::numeric_limits<Scalar>::min());
    for (Eigen::Index i = 0; i < k; ++i) {
      EXPECT_LE(std::abs(double(svd.singularValues()(i)) - double(ref.S(i))), tol * top)
          << "sigma_" << i;
      if (i > 0) {
        EXPECT_LE(svd.singularValues()(i), svd.singularValues()(i - 1));
      }
      EXPECT_GE(svd.singularValues()(i), Scalar(0));
    }
    // Orthonormal columns, also where σ = 0.
    const Mat<Scalar> Ik = Mat<Scalar>::Identity(k, k);
    EXPECT_LE(double((svd.matrixU().transpose() * svd.matrixU() - Ik).norm()), 10 * tol);
    EXPECT_LE(double((svd.matrixV().transpose() * svd.matrixV() - Ik).norm()), 10 * tol);
    // Reconstruction of the whole product.
    const Mat<Scalar> rebuilt =
        svd.matrixU() * svd.singularValues().asDiagonal() * svd.matrixV().transpose();
    const double denseNorm = std::max<double>(dense.norm(), std::numeric_limits<Scalar>::min());
    EXPECT_LE(double((rebuilt - dense).norm()), tol * denseNorm);
  }
};

using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(FactoredSVDTest, Scalars);

TYPED_TEST(FactoredSVDTest, RandomShapes) {
  using S = TypeParam;
  const std::vector<std::tuple<int, int, int>> shapes = {
      {40, 30, 5}, {30, 40, 8}, {17, 23, 1}, {64, 64, 16}, {12, 9, 9},
      {12, 9, 15}, {1, 20, 3},  {25, 1, 2},  {9, 12, 9},   {100, 7, 7}};
  std::uint64_t seed = 1;
  for (auto [out, in, r] : shapes) {
    SCOPED_TRACE(testing::Message() << out << "x" << in << " r=" << r);
    this->checkAgainstDense(gaussian<S>(out, r, seed), gaussian<S>(r, in, seed + 100), S(0.75));
    ++seed;
  }
}

TYPED_TEST(FactoredSVDTest, FreshAdapterWithZeroB) {
  using S = TypeParam;
  const Mat<S> B = Mat<S>::Zero(30, 6);
  const Mat<S> A = gaussian<S>(6, 20, 5);
  this->checkAgainstDense(B, A, S(2));
  lora::linalg::FactoredSVD<S> svd(B, A, S(2));
  EXPECT_TRUE(svd.singularValues().isZero(0));
}

TYPED_TEST(FactoredSVDTest, RankDeficientFactors) {
  using S = TypeParam;
  // A with two equal rows, B with a zero column and two proportional ones.
  Mat<S> A = gaussian<S>(6, 25, 11);
  A.row(3) = A.row(1);
  Mat<S> B = gaussian<S>(18, 6, 12);
  B.col(0).setZero();
  B.col(5) = S(2) * B.col(4);
  this->checkAgainstDense(B, A, S(1));
  lora::linalg::FactoredSVD<S> svd(B, A);
  // rank(B·A) <= 4 here: the last two singular values vanish (relative to σ_1).
  EXPECT_LE(double(svd.singularValues()(4)), 10 * tolerance<S>() * double(svd.singularValues()(0)));
}

TYPED_TEST(FactoredSVDTest, RankOneAndFullRank) {
  using S = TypeParam;
  this->checkAgainstDense(gaussian<S>(33, 1, 21), gaussian<S>(1, 19, 22), S(3));
  this->checkAgainstDense(gaussian<S>(19, 19, 23), gaussian<S>(19, 19, 24), S(0.5));
}

TYPED_TEST(FactoredSVDTest, TinyHugeAndNegativeScales) {
  using S = TypeParam;
  const Mat<S> B = gaussian<S>(24, 5, 31), A = gaussian<S>(5, 16, 32);
  for (S s : {S(1e-30), S(1e30), S(-1.5)}) {
    SCOPED_TRACE(testing::Message() << "scale " << s);
    this->checkAgainstDense(B, A, s);
  }
  // Entries far from 1 on both sides: normalization keeps the core representable.
  this->checkAgainstDense(Mat<S>(B * S(1e15)), Mat<S>(A * S(1e-15)), S(1));
}

// A rows x cols factor (rows >= cols) with condition number kappa: singular values spaced
// logarithmically from 1 down to 1/kappa between random orthonormal bases.
template <typename S>
Mat<S> withCondition(Eigen::Index rows, Eigen::Index cols, double kappa, std::uint64_t seed) {
  const Eigen::MatrixXd Qu = lora::test::orthonormal(rows, cols, seed);
  const Eigen::MatrixXd Qv = lora::test::orthonormal(cols, cols, seed + 1);
  Eigen::VectorXd sigma(cols);
  for (Eigen::Index i = 0; i < cols; ++i)
    sigma(i) = std::pow(kappa, -double(i) / double(std::max<Eigen::Index>(cols - 1, 1)));
  return (Qu * sigma.asDiagonal() * Qv.transpose()).cast<S>();
}

TYPED_TEST(FactoredSVDTest, CholeskyQR2ForWellConditionedFactors) {
  using S = TypeParam;
  using Method = typename lora::linalg::FactoredSVD<S>::QrMethod;
  const Mat<S> B = gaussian<S>(200, 8, 61), A = gaussian<S>(8, 150, 62);
  this->checkAgainstDense(B, A, S(1.5));
  lora::linalg::FactoredSVD<S> svd(B, A, S(1.5));
  EXPECT_EQ(svd.qrMethodB(), Method::CholeskyQR2);
  EXPECT_EQ(svd.qrMethodA(), Method::CholeskyQR2);
  // No QR by Cholesky for a zero factor or one with more columns than rows.
  lora::linalg::FactoredSVD<S> zeroB(Mat<S>::Zero(30, 6), gaussian<S>(6, 20, 63));
  EXPECT_EQ(zeroB.qrMethodB(), Method::Householder);
  EXPECT_EQ(zeroB.qrMethodA(), Method::CholeskyQR2);
  lora::linalg::FactoredSVD<S> wide(gaussian<S>(5, 9, 64), gaussian<S>(9, 40, 65));
  EXPECT_EQ(wide.qrMethodB(), Method::Householder);
}

// Condition numbers 1e3 ... 1e12 in either factor: the answer keeps its accuracy, and the
// Householder fallback runs wherever the condition number is far above the limit (near the limit
// the estimate decides, so only the accuracy is checked there).
TYPED_TEST(FactoredSVDTest, IllConditionedFactorsFallBackToHouseholder) {
  using S = TypeParam;
  using SVD = lora::linalg::FactoredSVD<S>;
  const double limit = double(SVD::conditionLimit());
  std::uint64_t seed = 70;
  for (double kappa : {1e3, 1e6, 1e9, 1e12}) {
    SCOPED_TRACE(testing::Message() << "kappa " << kappa);
    const Mat<S> illB = withCondition<S>(120, 10, kappa, seed++);
    const Mat<S> illA = withCondition<S>(90, 10, kappa, seed++).transpose();
    const Mat<S> goodB = gaussian<S>(120, 10, seed++), goodA = gaussian<S>(10, 90, seed++);
    this->checkAgainstDense(illB, goodA, S(1));
    this->checkAgainstDense(goodB, illA, S(1));
    const SVD b(illB, goodA), a(goodB, illA);
    EXPECT_EQ(b.qrMethodA(), SVD::QrMethod::CholeskyQR2);
    EXPECT_EQ(a.qrMethodB(), SVD::QrMethod::CholeskyQR2);
    if (kappa >= 100 * limit) {
      EXPECT_EQ(b.qrMethodB(), SVD::QrMethod::Householder);
      EXPECT_EQ(a.qrMethodA(), SVD::QrMethod::Householder);
    } else if (kappa * 100 <= limit) {
      EXPECT_EQ(b.qrMethodB(), SVD::QrMethod::CholeskyQR2);
      EXPECT_EQ(a.qrMethodA(), SVD::QrMethod::CholeskyQR2);
    }
  }
}

// Under an orthogonality tolerance (the unit roundoff of a lower storage precision: float32's for
// double, bfloat16's for float), well-conditioned factors take one Cholesky QR pass: the values
// keep their accuracy, U and V are orthonormal to the tolerance, U Σ Vᵀ is still s·B·A. A factor
// whose ε·κ² is not far below the tolerance, or a zero one, still takes two passes or Householder.
TYPED_TEST(FactoredSVDTest, OneCholeskyPassUnderAnOrthogonalityTolerance) {
  using S = TypeParam;
  using SVD = lora::linalg::FactoredSVD<S>;
  const S tol = std::is_same_v<S, double> ? S(0x1p-24) : S(0x1p-8);
  const double accuracy = tolerance<S>();
  const auto check = [&](const Mat<S>& B, const Mat<S>& A, S scale) {
    SVD svd;
    EXPECT_EQ(svd.orthogonalityTolerance(), S(0));
    EXPECT_EQ(&svd.setOrthogonalityTolerance(tol), &svd);
    svd.compute(B, A, scale);
    EXPECT_EQ(svd.qrMethodB(), SVD::QrMethod::CholeskyQR);
    EXPECT_EQ(svd.qrMethodA(), SVD::QrMethod::CholeskyQR);
    const Mat<S> dense = scale * (B * A);
    const auto ref = lora::linalg::denseSVD(dense, 0);
    const Eigen::Index k = svd.size();
    ASSERT_EQ(k, 8);
    ASSERT_GE(ref.S.size(), k);  // min(out, in) values, the rest zero to rounding
    for (Eigen::Index i = 0; i < k; ++i)
      EXPECT_LE(std::abs(double(svd.singularValues()(i)) - double(ref.S(i))),
                accuracy * double(ref.S(0)));
    const Mat<S> Ik = Mat<S>::Identity(k, k);
    EXPECT_LE(double((svd.matrixU().transpose() * svd.matrixU() - Ik).norm()), double(tol));
    EXPECT_LE(double((svd.matrixV().transpose() * svd.matrixV() - Ik).norm()), double(tol));
    const Mat<S> rebuilt =
        svd.matrixU() * svd.singularValues().asDiagonal() * svd.matrixV().transpose();
    EXPECT_LE(double((rebuilt - dense).norm()), accuracy * double(dense.norm()));
    EXPECT_LE(double((B * svd.coordinatesU() - svd.matrixU()).norm()), 100 * accuracy);
  };
  const Mat<S> B = gaussian<S>(300, 8, 81), A = gaussian<S>(8, 250, 82);
  check(B, A, S(1.5));
  check(B, A, S(-0.25));
  // Scaled copies (entries far from 1) are read in place after their pass, too.
  const S huge = std::ldexp(S(1), std::numeric_limits<S>::max_exponent / 2);
  check(Mat<S>(B * huge), Mat<S>(A / huge), S(1));

  // κ = 1e4 in double (ε·κ² ≈ 1e-8, not 100x below 2^-24) and 100 in float (6e-4, not 100x
  // below 2^-8): two passes (or Householder), orthonormal to working precision.
  const double kappa = std::is_same_v<S, double> ? 1e4 : 100;
  const Mat<S> ill = withCondition<S>(300, 8, kappa, 83);
  SVD two;
  two.setOrthogonalityTolerance(tol).compute(ill, A, S(1));
  EXPECT_NE(two.qrMethodB(), SVD::QrMethod::CholeskyQR);
  EXPECT_EQ(two.qrMethodA(), SVD::QrMethod::CholeskyQR);
  const Mat<S> I8 = Mat<S>::Identity(8, 8);
  EXPECT_LE(double((two.matrixU().transpose() * two.matrixU() - I8).norm()), 10 * accuracy);
  SVD zero;
  zero.setOrthogonalityTolerance(tol).compute(Mat<S>::Zero(300, 8), A, S(1));
  EXPECT_EQ(zero.qrMethodB(), SVD::QrMethod::Householder);

  // A negative or NaN tolerance is an error and leaves the setting as it was.
  SVD svd;
  svd.setOrthogonalityTolerance(tol);
  for (const S bad : {S(-1), std::numeric_limits<S>::quiet_NaN()}) {
    try {
      svd.setOrthogonalityTolerance(bad);
      ADD_FAILURE() << "tolerance " << bad << " accepted";
    } catch (const lora::Error& e) {
      EXPECT_NE(std::string(e.what()).find("FactoredSVD::setOrthogonalityTolerance"),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(svd.orthogonalityTolerance(), tol);
  }
}

TYPED_TEST(FactoredSVDTest, CoordinatesMapFactorsToSingularVectors) {
  using S = TypeParam;
  const Mat<S> B = gaussian<S>(30, 4, 41), A = gaussian<S>(4, 22, 42);
  lora::linalg::FactoredSVD<S> svd(B, A, S(2));
  const double tol = 100 * tolerance<S>();
  EXPECT_LE(double((B * svd.coordinatesU() - svd.matrixU()).norm()), tol);
  EXPECT_LE(double((A.transpose() * svd.coordinatesV() - svd.matrixV()).norm()), tol);
}

TYPED_TEST(FactoredSVDTest, ValuesOnlyAndBadInput) {
  using S = TypeParam;
  const Mat<S> B = gaussian<S>(10, 3, 51), A = gaussian<S>(3, 8, 52);
  lora::linalg::FactoredSVD<S> valuesOnly(B, A, S(1), 0);
  EXPECT_EQ(valuesOnly.singularValues().size(), 3);
  EXPECT_THROW(
      {
        try {
          (void)valuesOnly.matrixU();
        } catch (const lora::Error& e) {
          EXPECT_NE(std::string(e.what()).find("FactoredSVD::matrixU()"), std::string::npos);
          throw;
        }
      },
      lora::Error);
  lora::linalg::FactoredSVD<S> never;
  EXPECT_THROW((void)never.singularValues(), lora::Error);

  Mat<S> badA = gaussian<S>(4, 8, 53);
  try {
    lora::linalg::FactoredSVD<S> svd(B, badA);
    FAIL() << "mismatched inner dimensions accepted";
  } catch (const lora::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("FactoredSVD::compute()"), std::string::npos) << what;
    EXPECT_NE(what.find("B 10x3 and A 4x8"), std::string::npos) << what;
  }
  Mat<S> nanB = B;
  nanB(2, 1) = std::numeric_limits<S>::quiet_NaN();
  EXPECT_THROW(lora::linalg::FactoredSVD<S>(nanB, A), lora::Error);
  EXPECT_THROW(lora::linalg::FactoredSVD<S>(B, A, std::numeric_limits<S>::infinity()), lora::Error);
  // A failed compute leaves an earlier result intact.
  lora::linalg::FactoredSVD<S> svd(B, A);
  const Vec<S> before = svd.singularValues();
  EXPECT_THROW(svd.compute(nanB, A), lora::Error);
  EXPECT_EQ(svd.singularValues(), before);
}

}  // namespace
