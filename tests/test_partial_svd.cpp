// linalg::randomizedSVD and linalg::PartialSVD against Eigen's BDCSVD (in double) on small random
// and planted-spectrum matrices, float and double: stated tolerances met and re-measured here,
// k = min(m, n), rank-deficient, wide and row-major inputs, non-convergence status, bad inputs.
#include <algorithm>
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/partial_svd.hpp"
#include "lora/linalg/randomized_svd.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

using Eigen::Index;
using lora::linalg::PartialSVD;
using lora::linalg::PartialSVDMethod;
using lora::linalg::PartialSVDOptions;
using lora::test::Mat;
using lora::test::Vec;
using MatD = Eigen::MatrixXd;

// W = U diag(sigma) V^T with Haar-like U (m x p), V (n x p), p = min(m, n), from \p seed.
template <typename Scalar>
Mat<Scalar> planted(Index m, Index n, const Eigen::VectorXd& sigma, std::uint64_t seed) {
  const Index p = sigma.size();
  const MatD U = lora::test::orthonormal(m, p, seed);
  const MatD V = lora::test::orthonormal(n, p, seed + 1);
  return (U * sigma.asDiagonal() * V.transpose()).cast<Scalar>();
}

Eigen::VectorXd geometric(Index p, double ratio) {
  Eigen::VectorXd s(p);
  for (Index i = 0; i < p; ++i) s(i) = 10.0 * std::pow(ratio, static_cast<double>(i));
  return s;
}

// The residual max_i max(‖W v_i − σ_i u_i‖, ‖W^T u_i − σ_i v_i‖) / σ_1, measured in double.
template <typename Scalar>
double residualOf(const Mat<Scalar>& W, const Mat<Scalar>& U, const Vec<Scalar>& S,
                  const Mat<Scalar>& V) {
  const MatD Wd = W.template cast<double>(), Ud = U.template cast<double>(),
             Vd = V.template cast<double>();
  const Eigen::VectorXd Sd = S.template cast<double>();
  const MatD R1 = Wd * Vd - Ud * Sd.asDiagonal();
  const MatD R2 = Wd.transpose() * Ud - Vd * Sd.asDiagonal();
  return std::max(R1.colwise().norm().maxCoeff(), R2.colwise().norm().maxCoeff()) / Sd(0);
}

template <typename Scalar>
double orthonormalityError(const Mat<Scalar>& Q) {
  const MatD Qd = Q.template cast<double>();
  return (Qd.transpose() * Qd - MatD::Identity(Q.cols(), Q.cols())).cwiseAbs().maxCoeff();
}

// Rounding of the Scalar, for checks that are only as good as the arithmetic.
template <typename Scalar>
constexpr double eps() {
  return static_cast<double>(std::numeric_limits<Scalar>::epsilon());
}

template <typename Scalar>
class PartialSvdTyped : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(PartialSvdTyped, Scalars);

// ---- randomizedSVD -----------------------------------------------------------------------------

TYPED_TEST(PartialSvdTyped, RandomizedRecoversAFastDecayingSpectrum) {
  using Scalar = TypeParam;
  // Both of torch's branches: the row-space sketch (n > q) and the column-space one (n == q).
  struct Shape {
    Index m, n, q;
  };
  for (const Shape& shape : {Shape{60, 40, 6}, Shape{40, 60, 6}, Shape{50, 6, 6}}) {
    const Index m = shape.m, n = shape.n, q = shape.q;
    SCOPED_TRACE(::testing::Message() << m << "x" << n << " q=" << q);
    const Eigen::VectorXd sigma = geometric(std::min(m, n), 0.3);
    const Mat<Scalar> W = planted<Scalar>(m, n, sigma, 3);
    lora::Rng rng(5);
    const auto svd = lora::linalg::randomizedSVD(W, q, 4, rng);
    ASSERT_EQ(svd.U.rows(), m);
    ASSERT_EQ(svd.U.cols(), q);
    ASSERT_EQ(svd.V.rows(), n);
    ASSERT_EQ(svd.V.cols(), q);
    ASSERT_EQ(svd.S.size(), q);
    for (Index i = 0; i < q; ++i)
      EXPECT_NEAR(static_cast<double>(svd.S(i)), sigma(i), 1e-4 * sigma(0)) << "sigma " << i;
    EXPECT_LE(orthonormalityError<Scalar>(svd.U), 50 * eps<Scalar>());
    EXPECT_LE(orthonormalityError<Scalar>(svd.V), 50 * eps<Scalar>());
    // U S V^T is the best rank-q approximation (to the sketch's accuracy).
    const MatD approx = svd.U.template cast<double>() * svd.S.template cast<double>().asDiagonal() *
                        svd.V.template cast<double>().transpose();
    const auto ref = lora::linalg::denseSVD(W.template cast<double>(),
                                            Eigen::ComputeThinU | Eigen::ComputeThinV);
    const MatD best =
        ref.U.leftCols(q) * ref.S.head(q).asDiagonal() * ref.V.leftCols(q).transpose();
    EXPECT_LE((approx - best).norm() / best.norm(), 1e-4);
  }
}

TYPED_TEST(PartialSvdTyped, RandomizedIsSeededAndPowerIterationsHelp) {
  using Scalar = TypeParam;
  const Mat<Scalar> W = lora::test::gaussian<Scalar>(80, 50, 9);
  lora::Rng a(1), b(1);
  const auto x = lora::linalg::randomizedSVD(W, 5, 2, a);
  const auto y = lora::linalg::randomizedSVD(W, 5, 2, b);
  EXPECT_EQ(x.S, y.S);
  EXPECT_EQ(x.U, y.U);
  // On a flat spectrum the sketch is rough; more power iterations get closer to the best rank-q
  // approximation error.
  const auto ref = lora::linalg::denseSVD(W.template cast<double>(), 0u);
  const double best = ref.S.tail(50 - 5).norm();
  auto error = [&](Index niter) {
    lora::Rng rng(2);
    const auto s = lora::linalg::randomizedSVD(W, 5, niter, rng);
    const MatD approx = s.U.template cast<double>() * s.S.template cast<double>().asDiagonal() *
                        s.V.template cast<double>().transpose();
    return (W.template cast<double>() - approx).norm() / best - 1.0;
  };
  EXPECT_LT(error(6), error(0));
  EXPECT_LT(error(6), 0.05);
}

TEST(RandomizedSvd, BadInputsThrow) {
  const Eigen::MatrixXf W = lora::test::gaussian<float>(10, 6, 1);
  lora::Rng rng(1);
  EXPECT_CONTAINS(lora::test::errorOf([&] { lora::linalg::randomizedSVD(W, 0, 2, rng); }),
                  "randomizedSVD(): expected 1 <= q <= min(m, n) = 6, got q = 0");
  EXPECT_CONTAINS(lora::test::errorOf([&] { lora::linalg::randomizedSVD(W, 7, 2, rng); }),
                  "got q = 7");
  EXPECT_CONTAINS(lora::test::errorOf([&] { lora::linalg::randomizedSVD(W, 3, -1, rng); }),
                  "expected niter >= 0, got -1");
  Eigen::MatrixXf bad = W;
  bad(2, 3) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_CONTAINS(lora::test::errorOf([&] { lora::linalg::randomizedSVD(bad, 3, 2, rng); }),
                  "expected a finite matrix");
}

// ---- PartialSVD --------------------------------------------------------------------------------

// Checks \p svd against a double-precision BDCSVD of W: the reported residual is the measured one
// and meets the tolerance, σ within √2·τ·σ_1 (plus rounding), orthonormal factors.
template <typename Scalar>
void expectCertified(const Mat<Scalar>& W, Index k, const PartialSVD<Scalar>& svd) {
  ASSERT_EQ(svd.info(), Eigen::Success) << "residual " << svd.residual();
  ASSERT_EQ(svd.singularValues().size(), k);
  ASSERT_EQ(svd.matrixU().rows(), W.rows());
  ASSERT_EQ(svd.matrixV().rows(), W.cols());
  const double measured = residualOf<Scalar>(W, svd.matrixU(), svd.singularValues(), svd.matrixV());
  EXPECT_LE(svd.residual(), svd.tolerance());
  EXPECT_LE(measured, svd.tolerance() + 100 * eps<Scalar>());
  EXPECT_NEAR(measured, svd.residual(), 100 * eps<Scalar>());
  const auto ref = lora::linalg::denseSVD(W.template cast<double>(), 0u);
  const double s1 = ref.S(0);
  for (Index i = 0; i < k; ++i)
    EXPECT_NEAR(static_cast<double>(svd.singularValues()(i)), ref.S(i),
                std::sqrt(2.0) * svd.tolerance() * s1 + 100 * eps<Scalar>() * s1)
        << "sigma " << i;
  EXPECT_LE(orthonormalityError<Scalar>(svd.matrixU()), 100 * eps<Scalar>());
  EXPECT_LE(orthonormalityError<Scalar>(svd.matrixV()), 100 * eps<Scalar>());
}

TYPED_TEST(PartialSvdTyped, EveryMethodMeetsTheToleranceOnARandomMatrix) {
  using Scalar = TypeParam;
  const Mat<Scalar> W = lora::test::gaussian<Scalar>(150, 90, 21);
  for (auto method :
       {PartialSVDMethod::Dense, PartialSVDMethod::BlockKrylov, PartialSVDMethod::Lanczos}) {
    SCOPED_TRACE(static_cast<int>(method));
    const PartialSVD<Scalar> svd(W, 6, {.method = method, .seed = 4});
    EXPECT_EQ(svd.method(), method);
    expectCertified<Scalar>(W, 6, svd);
  }
}

TYPED_TEST(PartialSvdTyped, PlantedSpectrumVectorsMatchTheDenseSvd) {
  using Scalar = TypeParam;
  // A power-law spectrum with well-separated leading values: the vectors are determined, so they
  // must agree with BDCSVD's up to sign (Wedin: angle <= τ·σ_1 / gap).
  Eigen::VectorXd sigma(120);
  for (Index i = 0; i < 120; ++i) sigma(i) = 10.0 / std::pow(1.0 + static_cast<double>(i), 0.8);
  const Mat<Scalar> W = planted<Scalar>(200, 120, sigma, 7);
  const Index k = 8;
  for (auto method : {PartialSVDMethod::BlockKrylov, PartialSVDMethod::Lanczos}) {
    SCOPED_TRACE(static_cast<int>(method));
    const PartialSVD<Scalar> svd(W, k, {.method = method, .seed = 8});
    expectCertified<Scalar>(W, k, svd);
    const auto ref = lora::linalg::denseSVD(W.template cast<double>(),
                                            Eigen::ComputeThinU | Eigen::ComputeThinV);
    for (Index i = 0; i < k; ++i) {
      const double gap = std::min(i > 0 ? sigma(i - 1) - sigma(i) : 1e9, sigma(i) - sigma(i + 1));
      const double bound = 2.0 * svd.tolerance() * sigma(0) / gap + 1e3 * eps<Scalar>();
      const double cu = std::abs(ref.U.col(i).dot(svd.matrixU().col(i).template cast<double>()));
      const double cv = std::abs(ref.V.col(i).dot(svd.matrixV().col(i).template cast<double>()));
      EXPECT_GE(cu, 1.0 - bound) << "u " << i;
      EXPECT_GE(cv, 1.0 - bound) << "v " << i;
    }
  }
}

TYPED_TEST(PartialSvdTyped, BlockKrylovRestartsOnAFlatSpectrum) {
  using Scalar = TypeParam;
  // 400 x 300 Gaussian, k = 4: a flat top of the spectrum needs more than the 6 blocks of one
  // Krylov cycle, so the thick restart runs.
  const Mat<Scalar> W = lora::test::gaussian<Scalar>(400, 300, 31);
  const PartialSVD<Scalar> svd(W, 4, {.blockSize = 4, .method = PartialSVDMethod::BlockKrylov});
  expectCertified<Scalar>(W, 4, svd);
  EXPECT_GE(svd.iterations(), 7);  // more blocks than the basis holds (6): a restart ran
  EXPECT_GT(svd.matrixProducts(), 0);
}

TYPED_TEST(PartialSvdTyped, FullRankKAndWideMatrices) {
  using Scalar = TypeParam;
  const Mat<Scalar> tall = lora::test::gaussian<Scalar>(40, 25, 41);
  const Mat<Scalar> wide = lora::test::gaussian<Scalar>(25, 40, 42);
  for (auto method :
       {PartialSVDMethod::Dense, PartialSVDMethod::BlockKrylov, PartialSVDMethod::Lanczos}) {
    SCOPED_TRACE(static_cast<int>(method));
    const PartialSVD<Scalar> a(tall, 25, {.method = method});
    expectCertified<Scalar>(tall, 25, a);
    const PartialSVD<Scalar> b(wide, 25, {.method = method});
    expectCertified<Scalar>(wide, 25, b);
    if (method == PartialSVDMethod::Lanczos) {
      EXPECT_EQ(a.method(), PartialSVDMethod::BlockKrylov);
    }
    const PartialSVD<Scalar> c(wide, 5, {.method = method, .seed = 3});
    expectCertified<Scalar>(wide, 5, c);
  }
}

TYPED_TEST(PartialSvdTyped, RankDeficientMatricesGetZerosWithOrthonormalVectors) {
  using Scalar = TypeParam;
  // Rank 3, k = 6: three zero singular values, yet orthonormal U and V with W^T u = 0, W v = 0.
  const Mat<Scalar> W =
      lora::test::gaussian<Scalar>(60, 3, 51) * lora::test::gaussian<Scalar>(3, 45, 52);
  for (auto method :
       {PartialSVDMethod::Dense, PartialSVDMethod::BlockKrylov, PartialSVDMethod::Lanczos}) {
    SCOPED_TRACE(static_cast<int>(method));
    const PartialSVD<Scalar> svd(W, 6, {.method = method, .seed = 5});
    expectCertified<Scalar>(W, 6, svd);
    const double s1 = static_cast<double>(svd.singularValues()(0));
    for (Index i = 3; i < 6; ++i)
      EXPECT_LE(static_cast<double>(svd.singularValues()(i)), 1e3 * eps<Scalar>() * s1);
  }
}

TYPED_TEST(PartialSvdTyped, ZeroMatrixAndRowMajorViews) {
  using Scalar = TypeParam;
  const Mat<Scalar> Z = Mat<Scalar>::Zero(12, 9);
  const PartialSVD<Scalar> zero(Z, 4);
  EXPECT_EQ(zero.info(), Eigen::Success);
  EXPECT_EQ(zero.singularValues(), Vec<Scalar>::Zero(4));
  EXPECT_LE(orthonormalityError<Scalar>(zero.matrixU()), 0.0);
  EXPECT_EQ(zero.residual(), 0.0);

  using RowMat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const RowMat R = lora::test::gaussian<Scalar>(200, 160, 61);
  const Eigen::Map<const RowMat> view(R.data(), R.rows(), R.cols());
  const PartialSVD<Scalar> svd(view, 5, {.method = PartialSVDMethod::BlockKrylov});
  expectCertified<Scalar>(Mat<Scalar>(R), 5, svd);
}

TYPED_TEST(PartialSvdTyped, NonConvergenceIsAStatusWithTheBestTripletsFound) {
  using Scalar = TypeParam;
  const Mat<Scalar> W = lora::test::gaussian<Scalar>(300, 200, 71);
  const PartialSVD<Scalar> svd(
      W, 6, {.tolerance = 1e-4, .maxIterations = 1, .method = PartialSVDMethod::BlockKrylov});
  EXPECT_EQ(svd.info(), Eigen::NoConvergence);
  EXPECT_GT(svd.residual(), svd.tolerance());
  EXPECT_EQ(svd.iterations(), 1);
  EXPECT_NEAR(residualOf<Scalar>(W, svd.matrixU(), svd.singularValues(), svd.matrixV()),
              svd.residual(), 1e-3 * svd.residual());
}

TEST(PartialSvd, DefaultsAndAuto) {
  const Eigen::MatrixXf small = lora::test::gaussian<float>(50, 40, 1);
  const PartialSVD<float> a(small, 3);
  EXPECT_EQ(a.method(), PartialSVDMethod::Dense);
  EXPECT_EQ(a.tolerance(), 1e-5);
  const Eigen::MatrixXd big = lora::test::gaussian<double>(300, 200, 2);
  const PartialSVD<double> b(big, 3);
  EXPECT_EQ(b.method(), PartialSVDMethod::Lanczos);
  EXPECT_EQ(b.tolerance(), 1e-10);
  EXPECT_EQ(b.info(), Eigen::Success);
}

TEST(PartialSvd, BadInputsThrowAndLeaveTheObjectAsItWas) {
  const Eigen::MatrixXf W = lora::test::gaussian<float>(20, 10, 3);
  PartialSVD<float> svd;
  EXPECT_CONTAINS(lora::test::errorOf([&] { svd.singularValues(); }),
                  "PartialSVD::singularValues(): expected a computed decomposition");
  EXPECT_CONTAINS(lora::test::errorOf([&] { svd.compute(W, 0); }),
                  "PartialSVD::compute(): expected 1 <= k <= min(m, n) = 10, got k = 0");
  EXPECT_CONTAINS(lora::test::errorOf([&] { svd.compute(W, 11); }), "got k = 11");
  EXPECT_CONTAINS(lora::test::errorOf([&] { svd.compute(W, 2, {.tolerance = -1.0}); }),
                  "expected a finite tolerance >= 0, got -1");
  EXPECT_CONTAINS(lora::test::errorOf([&] { svd.compute(W, 2, {.maxIterations = -2}); }),
                  "expected maxIterations >= 0, got -2");
  svd.compute(W, 2);
  const Eigen::VectorXf before = svd.singularValues();
  Eigen::MatrixXf bad = W;
  bad(0, 0) = std::numeric_limits<float>::infinity();
  EXPECT_CONTAINS(lora::test::errorOf([&] { svd.compute(bad, 2); }), "expected a finite matrix");
  EXPECT_EQ(svd.singularValues(), before);
}

}  // namespace
