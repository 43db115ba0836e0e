// The shared initializer suite: every policy, float and double, through the Layer that uses it.
// Shapes, determinism per seed, the base-weight contract, bad inputs.

#include <algorithm>

#include <gtest/gtest.h>

#include "lora/layer.hpp"
#include "support/errors.hpp"
#include "support/init_cases.hpp"
#include "support/matrices.hpp"

namespace {

using lora::Layer;
using lora::LayerOptions;
using lora::test::errorOf;

template <typename Case>
class InitializerSuite : public ::testing::Test {};

using Cases =
    ::testing::Types<lora::test::PeftDefaultCase, lora::test::GaussianCase,
                     lora::test::XavierLoraCase, lora::test::KaimingLoraCase,
                     lora::test::OrthogonalCase, lora::test::LayerAdaptiveCase,
                     lora::test::StatisticsAdaptiveCase, lora::test::SvdBasedCase,
                     lora::test::SubtractDeltaXavierCase, lora::test::PissaCase,
                     lora::test::PissaNiter4Case, lora::test::MiloraCase, lora::test::OloraCase,
                     lora::test::PeftOrthogonalCase, lora::test::LoraGaCase, lora::test::EvaCase>;
TYPED_TEST_SUITE(InitializerSuite, Cases);

// Shapes (out, in, r) the suite runs: tall, wide, square, r = 1 and r = min(out, in).
struct Shape {
  Eigen::Index out, in, rank;
};
constexpr Shape kShapes[] = {{24, 10, 4}, {10, 24, 4}, {16, 16, 2}, {12, 8, 8}, {9, 7, 1}};

template <typename Case>
bool applicable(const Shape& s) {
  if (Case::flags.evenRank && s.rank % 2 != 0) return false;
  return !(Case::flags.halfRank && 2 * s.rank > std::min(s.out, s.in));
}

// One body per Scalar, not per policy: the policy arrives type-erased, as the Layer keeps it.
template <typename Scalar>
void checkShapesAndContract(const Shape& s, std::uint64_t seed,
                            const lora::init::AnyInitializer<Scalar>& policy,
                            const lora::test::CaseFlags& flags) {
  using Mat = lora::test::Mat<Scalar>;
  const LayerOptions opts{.rank = s.rank, .alpha = 2.0 * s.rank, .seed = seed};
  const Mat W0 = lora::test::gaussian<Scalar>(s.out, s.in, 1000 + seed, 0.5);
  Mat W = W0;
  const Layer<Scalar> layer(W, opts, policy);
  ASSERT_EQ(layer.A().rows(), s.rank);
  ASSERT_EQ(layer.A().cols(), s.in);
  ASSERT_EQ(layer.B().rows(), s.out);
  ASSERT_EQ(layer.B().cols(), s.rank);
  EXPECT_TRUE(layer.A().allFinite());
  EXPECT_TRUE(layer.B().allFinite());
  EXPECT_EQ(layer.gradA().norm(), Scalar(0));
  EXPECT_EQ(layer.gradB().norm(), Scalar(0));
  EXPECT_TRUE(layer.hasBase());

  const Mat delta = layer.deltaWeight();  // s·B·A
  const double tol = 50 * lora::test::tolerance<Scalar>();
  const double scale = W0.norm() + delta.norm();
  if (flags.subtracts) {
    // the residual contract: W_after + s·B·A = W_before
    EXPECT_LE((W + delta - W0).norm(), tol * scale);
    EXPECT_GT(delta.norm(), 0.0);
  } else {
    EXPECT_TRUE(W == W0) << "the init changed the base weight without asking";
  }
  if (flags.zeroDelta) {
    // B = 0 gives exactly 0; PEFT's orthogonal init cancels to rounding (its B·A is a product of
    // orthogonal rows, zero in exact arithmetic, as in PEFT): relative to s·‖B‖·‖A‖.
    const double factorScale =
        static_cast<double>(layer.scaling()) * layer.B().norm() * layer.A().norm();
    EXPECT_LE(delta.norm(), tol * factorScale);
  }

  // the model output at step 0: unchanged when the init subtracts or starts at B·A = 0
  const Mat X = lora::test::gaussian<Scalar>(5, s.in, 7);
  const Mat baseOut = X * W0.transpose();
  const Mat out = layer.forward(X);
  if (flags.subtracts || flags.zeroDelta)
    EXPECT_LE((out - baseOut).norm(), tol * (baseOut.norm() + 1));
  else
    EXPECT_GT((out - baseOut).norm(), 0.0);
}

TYPED_TEST(InitializerSuite, ShapesAndBaseWeightContract) {
  for (const Shape& s : kShapes) {
    if (!applicable<TypeParam>(s)) continue;
    SCOPED_TRACE(testing::Message() << s.out << "x" << s.in << " r=" << s.rank);
    checkShapesAndContract<float>(s, 3, TypeParam::make(s.out, s.in), TypeParam::flags);
    checkShapesAndContract<double>(s, 3, TypeParam::make(s.out, s.in), TypeParam::flags);
  }
}

template <typename Scalar, typename Case>
lora::init::Factors<Scalar> draw(const Shape& s, std::uint64_t seed) {
  const lora::test::Mat<Scalar> W = lora::test::gaussian<Scalar>(s.out, s.in, 5, 0.5);
  lora::init::Request<Scalar> req;
  req.outFeatures = s.out;
  req.inFeatures = s.in;
  req.rank = s.rank;
  req.alpha = 8;
  req.weight = lora::BaseWeight<Scalar>(W);
  lora::Rng rng(seed);
  const auto policy = Case::make(s.out, s.in);
  static_assert(lora::init::Initializer<decltype(policy), Scalar>);
  return policy.initialize(req, rng);  // W outlives the call; the factors own their data
}

TYPED_TEST(InitializerSuite, SameSeedSameBitsOtherSeedOtherBits) {
  const Shape s{14, 11, 4};
  const auto a = draw<double, TypeParam>(s, 21), b = draw<double, TypeParam>(s, 21);
  EXPECT_TRUE(a.A == b.A && a.B == b.B);
  const auto c = draw<double, TypeParam>(s, 22);
  if (TypeParam::flags.random) {
    EXPECT_FALSE(a.A == c.A && a.B == c.B);
  } else {
    EXPECT_TRUE(a.A == c.A && a.B == c.B);
  }
  const auto f1 = draw<float, TypeParam>(s, 21), f2 = draw<float, TypeParam>(s, 21);
  EXPECT_TRUE(f1.A == f2.A && f1.B == f2.B);
}

TYPED_TEST(InitializerSuite, WithoutBaseWeight) {
  const Shape s{12, 10, 4};
  const LayerOptions opts{.rank = s.rank, .alpha = 4, .seed = 1};
  if (TypeParam::flags.needsWeight || TypeParam::flags.subtracts) {
    // needs W to read, or to subtract from: a layer without one is refused with a clear message
    const std::string msg =
        errorOf([&] { Layer<double>(s.out, s.in, opts, TypeParam::make(s.out, s.in)); });
    EXPECT_CONTAINS(msg, "expected");
    EXPECT_CONTAINS(msg, "base weight");
  } else {
    const Layer<double> layer(s.out, s.in, opts, TypeParam::make(s.out, s.in));
    EXPECT_EQ(layer.rank(), s.rank);
    EXPECT_FALSE(layer.hasBase());
  }
}

TYPED_TEST(InitializerSuite, ReadOnlyBaseIsRefusedOnlyWhenWritten) {
  const Shape s{12, 10, 4};
  const LayerOptions opts{.rank = s.rank, .alpha = 4, .seed = 1};
  const Eigen::MatrixXd W = lora::test::gaussian<double>(s.out, s.in, 3);
  const Eigen::MatrixXd W0 = W;
  const lora::BaseWeight<double> view(W);  // const: read-only
  ASSERT_FALSE(view.writable());
  if (TypeParam::flags.subtracts) {
    const std::string msg =
        errorOf([&] { Layer<double>(view, opts, TypeParam::make(s.out, s.in)); });
    EXPECT_CONTAINS(msg, "Layer::Layer()");
    EXPECT_CONTAINS(msg, "writable");
    EXPECT_TRUE(W == W0);
  } else {
    const Layer<double> layer(view, opts, TypeParam::make(s.out, s.in));
    EXPECT_TRUE(W == W0);
    EXPECT_TRUE(layer.hasBase());
  }
}

TYPED_TEST(InitializerSuite, BadLayerInputs) {
  Eigen::MatrixXd W = lora::test::gaussian<double>(8, 6, 3);
  const Eigen::MatrixXd W0 = W;
  EXPECT_CONTAINS(errorOf([&] { Layer<double>(W, {.rank = 0}, TypeParam::make(8, 6)); }),
                  "expected a rank >= 1");
  EXPECT_CONTAINS(
      errorOf([&] { Layer<double>(W, {.rank = 2, .alpha = -1}, TypeParam::make(8, 6)); }), "alpha");
  const Eigen::VectorXd bias = Eigen::VectorXd::Zero(5);
  EXPECT_CONTAINS(errorOf([&] { Layer<double>(W, {.rank = 2}, TypeParam::make(8, 6), bias); }),
                  "expected a bias of 8 entries, got 5");
  EXPECT_TRUE(W == W0);
}

TYPED_TEST(InitializerSuite, GrowsAfterwards) {
  // A grown layer keeps s·B·A; data-dependent inits are not re-run for the new rows.
  Eigen::MatrixXd W = lora::test::gaussian<double>(12, 10, 3);
  Layer<double> layer(W, {.rank = 2, .alpha = 2, .seed = 4}, TypeParam::make(12, 10));
  const Eigen::MatrixXd before = layer.deltaWeight();
  layer.resize(4);
  EXPECT_EQ(layer.rank(), 4);
  EXPECT_LE((layer.deltaWeight() - before).norm(), 1e-12 * (1 + before.norm()));
  EXPECT_TRUE(layer.A().allFinite());
}

}  // namespace
