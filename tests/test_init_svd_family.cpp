// The SVD/QR initializers (PiSSA, fast PiSSA, MiLoRA, OLoRA, PEFT orthogonal, LoRA-GA) against
// dense references, float and double: the factors, the residual contract W_after + s·B·A =
// W_before, a read-only base, and bad inputs.
#include <cmath>
#include <limits>
#include <memory>

#include <gtest/gtest.h>
#include <Eigen/QR>

#include "lora/init/lora_ga.hpp"
#include "lora/init/milora.hpp"
#include "lora/init/olora.hpp"
#include "lora/init/peft_orthogonal.hpp"
#include "lora/init/pissa.hpp"
#include "lora/layer.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

using Eigen::Index;
using lora::test::Mat;
using MatD = Eigen::MatrixXd;

static_assert(lora::init::Initializer<lora::init::Pissa, float>);
static_assert(lora::init::Initializer<lora::init::PissaNiter<4>, double>);
static_assert(lora::init::Initializer<lora::init::Milora, float>);
static_assert(lora::init::Initializer<lora::init::Olora, double>);
static_assert(lora::init::Initializer<lora::init::PeftOrthogonal, float>);
static_assert(lora::init::Initializer<lora::init::LoraGa, double>);
static_assert(lora::init::DataDependent<lora::init::Pissa>);
static_assert(lora::init::DataDependent<lora::init::LoraGa>);
static_assert(!lora::init::DataDependent<lora::init::PeftOrthogonal>);

double relErr(const MatD& got, const MatD& want) {
  return (got - want).norm() / std::max(want.norm(), 1e-300);
}

// U diag(sigma) V^T with orthonormal U (m x p), V (n x p), p = sigma.size().
MatD planted(Index m, Index n, const Eigen::VectorXd& sigma, std::uint64_t seed) {
  const Index p = sigma.size();
  const MatD U = lora::test::orthonormal(m, p, seed);
  const MatD V = lora::test::orthonormal(n, p, seed + 1);
  return U * sigma.asDiagonal() * V.transpose();
}

Eigen::VectorXd powerLaw(Index p, double exponent) {
  Eigen::VectorXd s(p);
  for (Index i = 0; i < p; ++i) s(i) = 5.0 / std::pow(1.0 + static_cast<double>(i), exponent);
  return s;
}

// The accuracy an SVD computed in Scalar reaches on these well-conditioned problems.
template <typename Scalar>
constexpr double svdTol() {
  return sizeof(Scalar) == sizeof(float) ? 1e-4 : 1e-9;
}
template <typename Scalar>
constexpr double roundTol() {
  return sizeof(Scalar) == sizeof(float) ? 1e-6 : 1e-14;
}

// A layer built on a copy of W: the factors, s, and the base weight after the init.
template <typename Scalar>
struct Built {
  lora::Layer<Scalar> layer;
  Mat<Scalar> after;
};
template <typename Scalar, typename Policy>
Built<Scalar> buildOn(const Mat<Scalar>& W, Index rank, double alpha, const Policy& policy,
                      std::uint64_t seed = 1) {
  Mat<Scalar> weight = W;
  lora::Layer<Scalar> layer(weight, {.rank = rank, .alpha = alpha, .seed = seed}, policy);
  return {std::move(layer), std::move(weight)};
}

// W_after + s·B·A = W_before, to rounding.
template <typename Scalar>
void expectResidualContract(const Mat<Scalar>& before, const Built<Scalar>& b) {
  const MatD sum = b.after.template cast<double>() + b.layer.deltaWeight().template cast<double>();
  EXPECT_LE(relErr(sum, before.template cast<double>()), 10 * roundTol<Scalar>());
}

template <typename Scalar>
class SvdFamily : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SvdFamily, Scalars);

TYPED_TEST(SvdFamily, PissaIsTheBestRankRApproximationAndTheBaseKeepsTheRest) {
  using Scalar = TypeParam;
  // 70 x 50 runs the dense path, 300 x 200 the block Krylov one.
  for (const auto& [m, n] : {std::pair<Index, Index>{70, 50}, std::pair<Index, Index>{300, 200}}) {
    SCOPED_TRACE(::testing::Message() << m << "x" << n);
    const MatD Wd = planted(m, n, powerLaw(std::min(m, n), 0.7), 11);
    const Mat<Scalar> W = Wd.cast<Scalar>();
    const auto b = buildOn<Scalar>(W, 5, 20.0, lora::init::Pissa{});
    const auto ref = lora::linalg::denseSVD(W.template cast<double>(),
                                            Eigen::ComputeThinU | Eigen::ComputeThinV);
    const MatD best =
        ref.U.leftCols(5) * ref.S.head(5).asDiagonal() * ref.V.leftCols(5).transpose();
    EXPECT_LE(relErr(b.layer.deltaWeight().template cast<double>(), best), svdTol<Scalar>());
    expectResidualContract<Scalar>(W, b);
    // B = U_r sqrt(S_r / s), A = sqrt(S_r / s) V_r^T: equal column/row norms sqrt(σ_i / s).
    const double s = b.layer.scaling();
    for (Index i = 0; i < 5; ++i) {
      const double want = std::sqrt(ref.S(i) / s);
      EXPECT_NEAR(static_cast<double>(b.layer.B().col(i).norm()), want, svdTol<Scalar>() * want);
      EXPECT_NEAR(static_cast<double>(b.layer.A().row(i).norm()), want, svdTol<Scalar>() * want);
    }
    EXPECT_EQ(b.layer.initializerName(), "pissa");
  }
}

TYPED_TEST(SvdFamily, PissaNiterSplitsWExactlyAndIsCloseOnAFastDecay) {
  using Scalar = TypeParam;
  Eigen::VectorXd sigma(40);
  for (Index i = 0; i < 40; ++i) sigma(i) = 10.0 * std::pow(0.5, static_cast<double>(i));
  const Mat<Scalar> W = planted(60, 40, sigma, 21).cast<Scalar>();
  const auto b = buildOn<Scalar>(W, 4, 8.0, lora::init::PissaNiter<4>{});
  expectResidualContract<Scalar>(W, b);
  const auto ref =
      lora::linalg::denseSVD(W.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  const MatD best = ref.U.leftCols(4) * ref.S.head(4).asDiagonal() * ref.V.leftCols(4).transpose();
  EXPECT_LE(relErr(b.layer.deltaWeight().template cast<double>(), best), 1e-3);
  EXPECT_EQ(b.layer.initializerName(), "pissa_niter_4");
  EXPECT_EQ(lora::init::PissaNiter<2>::name(), "pissa_niter_2");
  // Seeded: the same seed gives the same factors.
  const auto again = buildOn<Scalar>(W, 4, 8.0, lora::init::PissaNiter<4>{});
  EXPECT_EQ(b.layer.A(), again.layer.A());
}

TYPED_TEST(SvdFamily, MiloraTakesTheSmallestTriplets) {
  using Scalar = TypeParam;
  const Mat<Scalar> W = lora::test::gaussian<Scalar>(40, 30, 31);
  const auto b = buildOn<Scalar>(W, 4, 8.0, lora::init::Milora{});
  const auto ref =
      lora::linalg::denseSVD(W.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  const MatD minor =
      ref.U.rightCols(4) * ref.S.tail(4).asDiagonal() * ref.V.rightCols(4).transpose();
  EXPECT_LE(relErr(b.layer.deltaWeight().template cast<double>(), minor), svdTol<Scalar>());
  expectResidualContract<Scalar>(W, b);
  // The spectrum of s·B·A is the tail of W's, in decreasing order.
  const Eigen::VectorXd spectrum = b.layer.spectrum().template cast<double>();
  for (Index i = 0; i < 4; ++i)
    EXPECT_NEAR(spectrum(i), ref.S(26 + i), svdTol<Scalar>() * ref.S(0));
  EXPECT_EQ(b.layer.initializerName(), "milora");
}

TYPED_TEST(SvdFamily, OloraIsTheQrOfW) {
  using Scalar = TypeParam;
  const Mat<Scalar> W = lora::test::gaussian<Scalar>(50, 35, 41);
  const auto b = buildOn<Scalar>(W, 6, 12.0, lora::init::Olora{});
  // B = Q[:, :6] of W's reduced QR, A = R[:6, :], so B·A is the projection of W onto the span of
  // its first 6 columns; the layer holds s·B·A.
  const MatD Wd = W.template cast<double>();
  const MatD Q = Eigen::HouseholderQR<MatD>(Wd).householderQ() * MatD::Identity(50, 35);
  const MatD projection = Q.leftCols(6) * Q.leftCols(6).transpose() * Wd;
  const double s = b.layer.scaling();
  EXPECT_LE(relErr(b.layer.deltaWeight().template cast<double>(), s * projection),
            10 * roundTol<Scalar>());
  const MatD Bd = b.layer.B().template cast<double>();
  EXPECT_LE((Bd.transpose() * Bd - MatD::Identity(6, 6)).cwiseAbs().maxCoeff(),
            10 * roundTol<Scalar>());
  for (Index i = 0; i < 6; ++i)
    for (Index j = 0; j < i; ++j) EXPECT_EQ(b.layer.A()(i, j), Scalar(0)) << i << "," << j;
  // Householder's signs (LAPACK's convention, as torch.linalg.qr): B matches Q column for column.
  EXPECT_LE(relErr(Bd, Q.leftCols(6)), 10 * roundTol<Scalar>());
  expectResidualContract<Scalar>(W, b);
}

TYPED_TEST(SvdFamily, PeftOrthogonalStartsAtZeroDeltaAndLeavesTheBase) {
  using Scalar = TypeParam;
  const Mat<Scalar> W = lora::test::gaussian<Scalar>(30, 20, 51);
  const auto b = buildOn<Scalar>(W, 6, 12.0, lora::init::PeftOrthogonal{});
  EXPECT_EQ(b.after, W);  // Keep: the base weight is untouched
  const MatD A = b.layer.A().template cast<double>(), B = b.layer.B().template cast<double>();
  EXPECT_GT(A.norm(), 0.1);
  EXPECT_GT(B.norm(), 0.1);
  EXPECT_LE((B * A).norm(), 1e-6 * B.norm() * A.norm());
  // A = (G_A Q_o)^T / 10 and B = G_B^T Q_e / 10 have rank r/2 each (as in PEFT).
  const Eigen::VectorXd sa = lora::linalg::singularValues(A);
  const Eigen::VectorXd sb = lora::linalg::singularValues(B);
  EXPECT_GT(sa(2), 1e-3);
  EXPECT_LE(sa(3), 1e-5 * sa(0));
  EXPECT_GT(sb(2), 1e-3);
  EXPECT_LE(sb(3), 1e-5 * sb(0));
  const auto again = buildOn<Scalar>(W, 6, 12.0, lora::init::PeftOrthogonal{});
  EXPECT_EQ(b.layer.A(), again.layer.A());
  EXPECT_EQ(b.layer.initializerName(), "peft_orthogonal");
  Mat<Scalar> copy = W;
  EXPECT_CONTAINS(lora::test::errorOf([&] {
                    lora::Layer<Scalar> layer(copy, {.rank = 5, .alpha = 5},
                                              lora::init::PeftOrthogonal{});
                  }),
                  "PeftOrthogonal::initialize(): expected an even rank, got 5");
}

TYPED_TEST(SvdFamily, LoraGaUsesTheGradientsSingularVectors) {
  using Scalar = TypeParam;
  const Index out = 48, in = 36, r = 3;
  Eigen::VectorXd sigma(in);
  for (Index i = 0; i < in; ++i) sigma(i) = 4.0 / (1.0 + static_cast<double>(i));
  const auto G = std::make_shared<const MatD>(planted(out, in, sigma, 61));
  const Mat<Scalar> W = lora::test::gaussian<Scalar>(out, in, 62, 0.1);
  const auto ref = lora::linalg::denseSVD(*G, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const double c = std::pow(static_cast<double>(out), 0.25) / std::sqrt(16.0);

  const auto b = buildOn<Scalar>(W, r, 6.0, lora::init::LoraGa{.gradient = G});
  const MatD A = b.layer.A().template cast<double>(), B = b.layer.B().template cast<double>();
  for (Index i = 0; i < r; ++i) {
    // A's rows: c·v_i (i < r); B's columns: c·u_{r+i}; each up to sign.
    EXPECT_NEAR(std::abs(A.row(i).dot(ref.V.col(i))), c, 1e-6 * c) << "A row " << i;
    EXPECT_NEAR(A.row(i).norm(), c, 1e-6 * c);
    EXPECT_NEAR(std::abs(B.col(i).dot(ref.U.col(r + i))), c, 1e-6 * c) << "B col " << i;
    EXPECT_NEAR(B.col(i).norm(), c, 1e-6 * c);
  }
  expectResidualContract<Scalar>(W, b);
  EXPECT_EQ(b.layer.initializerName(), "lora_ga");

  // The other directions and scales of the official code.
  const auto arbr =
      buildOn<Scalar>(W, r, 6.0,
                      lora::init::LoraGa{.gradient = G,
                                         .direction = lora::init::LoraGaDirection::ArBr,
                                         .scale = lora::init::LoraGaScale::Unit});
  for (Index i = 0; i < r; ++i) {
    EXPECT_NEAR(std::abs(arbr.layer.A().row(i).template cast<double>().dot(ref.V.col(2 * i + 1))),
                1.0, 1e-6);
    EXPECT_NEAR(std::abs(arbr.layer.B().col(i).template cast<double>().dot(ref.U.col(2 * i))), 1.0,
                1e-6);
  }
  const auto a2r =
      buildOn<Scalar>(W, r, 6.0,
                      lora::init::LoraGa{.gradient = G,
                                         .direction = lora::init::LoraGaDirection::A2rBr,
                                         .scale = lora::init::LoraGaScale::GradientDescent});
  const double s = a2r.layer.scaling();
  for (Index i = 0; i < r; ++i) {
    EXPECT_NEAR(std::abs(a2r.layer.A().row(i).template cast<double>().dot(ref.V.col(r + i))),
                1.0 / s, 1e-6 / s);
    EXPECT_NEAR(std::abs(a2r.layer.B().col(i).template cast<double>().dot(ref.U.col(i))), 1.0 / s,
                1e-6 / s);
  }
  expectResidualContract<Scalar>(W, a2r);
}

TEST(SvdFamily, ReadOnlyBaseWithASubtractingPolicyThrowsAndLeavesWUnchanged) {
  const Eigen::MatrixXf W = lora::test::gaussian<float>(20, 16, 71);
  const Eigen::MatrixXf before = W;
  const auto G = std::make_shared<const MatD>(lora::test::gaussian<double>(20, 16, 72));
  auto attempt = [&](auto policy) {
    return lora::test::errorOf(
        [&] { lora::Layer<float> layer(W, {.rank = 4, .alpha = 4}, policy); });
  };
  for (const std::string& message :
       {attempt(lora::init::Pissa{}), attempt(lora::init::PissaNiter<4>{}),
        attempt(lora::init::Milora{}), attempt(lora::init::Olora{}),
        attempt(lora::init::LoraGa{.gradient = G})})
    EXPECT_CONTAINS(message, "expected a writable base weight");
  EXPECT_EQ(W, before);
  // PeftOrthogonal does not touch W, so a read-only base is fine.
  lora::Layer<float> ok(W, {.rank = 4, .alpha = 4}, lora::init::PeftOrthogonal{});
  EXPECT_EQ(ok.rank(), 4);
}

TEST(SvdFamily, BadInputsThrowWithTheirReason) {
  Eigen::MatrixXf W = lora::test::gaussian<float>(8, 6, 81);
  auto with = [&](auto policy, Index rank) {
    return lora::test::errorOf(
        [&] { lora::Layer<float> layer(W, {.rank = rank, .alpha = 4}, policy); });
  };
  EXPECT_CONTAINS(with(lora::init::Pissa{}, 7),
                  "Pissa::initialize(): expected a rank <= min(out, in) = 6, got 7");
  EXPECT_CONTAINS(with(lora::init::PissaNiter<4>{}, 7),
                  "PissaNiter::initialize(): expected a rank <= min(out, in) = 6, got 7");
  EXPECT_CONTAINS(with(lora::init::Milora{}, 7), "Milora::initialize(): expected a rank <=");
  EXPECT_CONTAINS(with(lora::init::Olora{}, 7), "Olora::initialize(): expected a rank <=");
  EXPECT_CONTAINS(with(lora::init::Pissa{.tolerance = -1.0}, 2),
                  "expected a finite tolerance >= 0, got -1");
  EXPECT_CONTAINS(with(lora::init::LoraGa{}, 2),
                  "LoraGa::initialize(): expected a gradient G (out x in) in the policy, got none");
  const auto wrong = std::make_shared<const MatD>(MatD::Zero(6, 8));
  EXPECT_CONTAINS(with(lora::init::LoraGa{.gradient = wrong}, 2),
                  "expected a gradient of 8x6 (out x in), got 6x8");
  const auto G = std::make_shared<const MatD>(lora::test::gaussian<double>(8, 6, 82));
  EXPECT_CONTAINS(with(lora::init::LoraGa{.gradient = G}, 4),
                  "expected 2·rank <= min(out, in) = 6, got rank 4");
  EXPECT_CONTAINS(with(lora::init::LoraGa{.gradient = G, .gamma = 0.0}, 2),
                  "expected a finite gamma > 0, got 0");
  // Without the base weight in the request (a layer not built on W).
  EXPECT_CONTAINS(lora::test::errorOf([] {
                    lora::Layer<float> layer(8, 6, {.rank = 2, .alpha = 4}, lora::init::Pissa{});
                  }),
                  "Pissa::initialize(): expected the layer's base weight in the request");
  W(1, 1) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_CONTAINS(with(lora::init::Pissa{}, 2), "expected a finite base weight, got NaN or Inf");
}

}  // namespace
