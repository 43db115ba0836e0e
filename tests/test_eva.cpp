// EVA: the incremental PCA collector, its convergence test, the rank redistribution and the
// Eva policy.
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/detail/orthogonal.hpp"
#include "lora/init/eva.hpp"
#include "lora/layer.hpp"
#include "lora/linalg/spectrum.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

using Eigen::Index;
using lora::init::Eva;
using lora::init::EvaCollector;
using lora::init::EvaCollectorOptions;
using lora::init::EvaLayerSpectrum;
using lora::init::EvaSvd;
using lora::test::errorOf;
using lora::test::gaussian;
using lora::test::Mat;

/// in x k with orthonormal columns, reproducible from the seed.
Eigen::MatrixXd basis(Index in, Index k, std::uint64_t seed) {
  lora::Rng rng(seed);
  return lora::detail::orthogonalMatrix<double>(in, k, 1.0, rng);
}

/// n rows of Z·diag(scales)·Q^T + noise·G + μ^T with μ_j = linspace(-3, 5): a planted spectrum
/// along the columns of Q, a little isotropic noise and a non-zero mean.
template <typename Scalar>
Mat<Scalar> planted(Index n, const Eigen::MatrixXd& Q, const std::vector<double>& scales,
                    double noise, std::uint64_t seed) {
  const Index k = Q.cols();
  Eigen::VectorXd s(k);
  for (Index i = 0; i < k; ++i) s(i) = scales[static_cast<std::size_t>(i)];
  const Eigen::VectorXd mu = Eigen::VectorXd::LinSpaced(Q.rows(), -3.0, 5.0);
  Eigen::MatrixXd X = gaussian<double>(n, k, seed) * s.asDiagonal() * Q.transpose();
  X += noise * gaussian<double>(n, Q.rows(), seed + 7777);
  X.rowwise() += mu.transpose();
  return X.cast<Scalar>();
}

template <typename Scalar>
double tol(double forFloat, double forDouble) {
  return sizeof(Scalar) == sizeof(float) ? forFloat : forDouble;
}

/// Rows of V flipped like the collector does (largest |entry| positive).
Eigen::MatrixXd flipped(Eigen::MatrixXd V) {
  lora::detail::evaFlipRowSigns(V);
  return V;
}

template <typename Scalar>
class EvaTyped : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(EvaTyped, Scalars);

TYPED_TEST(EvaTyped, RecoversThePlantedSubspace) {
  using Scalar = TypeParam;
  const Eigen::MatrixXd Q = basis(24, 4, 1);
  EvaCollector<Scalar> stats(24, 6);
  for (std::uint64_t b = 0; b < 4; ++b)
    stats.update(planted<Scalar>(32, Q, {8, 6, 4, 3}, 0.01, 100 + b));
  EXPECT_EQ(stats.samplesSeen(), 128);
  EXPECT_EQ(stats.batches(), 4);
  const Eigen::MatrixXd V = stats.components().template cast<double>();
  ASSERT_EQ(V.rows(), 6);
  ASSERT_EQ(V.cols(), 24);
  EXPECT_LT((V * V.transpose() - Eigen::MatrixXd::Identity(6, 6)).cwiseAbs().maxCoeff(),
            tol<Scalar>(1e-5, 1e-12));
  EXPECT_GE(lora::linalg::subspaceSimilarity(V.topRows(4).transpose(), Q, 4, 4), 0.99);
  // Singular values decrease; the four planted ones dominate the rest (noise).
  const Eigen::VectorXd S = stats.singularValues().template cast<double>();
  for (Index i = 1; i < 6; ++i) EXPECT_LE(S(i), S(i - 1));
  EXPECT_GT(S(3), 50 * S(4));
}

TYPED_TEST(EvaTyped, IncrementalEqualsOneShotPcaWhenNothingIsTruncated) {
  using Scalar = TypeParam;
  // Centered data of rank 4 <= q = 6: Ross et al.'s update loses nothing, so the batches give
  // the PCA of the centered concatenation. Batch sizes vary; the last is smaller than q.
  const Eigen::MatrixXd Q = basis(24, 4, 2);
  const std::vector<Index> sizes{10, 7, 12, 3};
  EvaCollector<Scalar> stats(24, 6, {.svd = EvaSvd::Exact});
  Eigen::MatrixXd all(32, 24);
  Index row = 0;
  for (std::size_t b = 0; b < sizes.size(); ++b) {
    const Mat<Scalar> X = planted<Scalar>(sizes[b], Q, {8, 6, 4, 3}, 0.0, 200 + b);
    stats.update(X);
    all.middleRows(row, sizes[b]) = X.template cast<double>();
    row += sizes[b];
  }
  const Eigen::VectorXd mean = all.colwise().mean().transpose();
  const Eigen::MatrixXd centered = all.rowwise() - mean.transpose();
  const auto svd = lora::linalg::denseSVD(centered, Eigen::ComputeThinV);
  const Eigen::VectorXd sigma = svd.S;
  const Eigen::MatrixXd V = flipped(svd.V.leftCols(4).transpose());

  const Eigen::VectorXd S = stats.singularValues().template cast<double>();
  for (Index i = 0; i < 4; ++i)
    EXPECT_NEAR(S(i), sigma(i), tol<Scalar>(1e-4, 1e-10) * sigma(0)) << "sigma " << i;
  EXPECT_LT((stats.components().topRows(4).template cast<double>() - V).cwiseAbs().maxCoeff(),
            tol<Scalar>(1e-3, 1e-9));
  EXPECT_LT((stats.mean() - mean).cwiseAbs().maxCoeff(), tol<Scalar>(1e-5, 1e-12));
  const Eigen::VectorXd variance = centered.colwise().squaredNorm().transpose() / 32.0;
  EXPECT_LT((stats.variance() - variance).cwiseAbs().maxCoeff(), tol<Scalar>(1e-4, 1e-10));
  // PEFT's definitions: S² / (n − 1) and S² / (total sum of squares over all features).
  const double total = centered.squaredNorm();
  for (Index i = 0; i < 4; ++i) {
    EXPECT_NEAR(stats.explainedVariance()(i), sigma(i) * sigma(i) / 31.0,
                tol<Scalar>(1e-3, 1e-9) * sigma(0) * sigma(0) / 31.0);
    EXPECT_NEAR(stats.explainedVarianceRatio()(i), sigma(i) * sigma(i) / total,
                tol<Scalar>(1e-4, 1e-10));
  }
  EXPECT_NEAR(stats.explainedVarianceRatio().head(4).sum(), 1.0, tol<Scalar>(1e-4, 1e-10));
}

TYPED_TEST(EvaTyped, IncrementalIsCloseToOneShotPcaWithNoise) {
  using Scalar = TypeParam;
  const Eigen::MatrixXd Q = basis(20, 3, 3);
  EvaCollector<Scalar> stats(20, 5);
  Eigen::MatrixXd all(5 * 24, 20);
  for (Index b = 0; b < 5; ++b) {
    const Mat<Scalar> X = planted<Scalar>(24, Q, {6, 4, 2}, 0.05, 300 + b);
    stats.update(X);
    all.middleRows(24 * b, 24) = X.template cast<double>();
  }
  const Eigen::MatrixXd centered = all.rowwise() - all.colwise().mean();
  const auto svd = lora::linalg::denseSVD(centered, Eigen::ComputeThinV);
  const Eigen::MatrixXd V = svd.V.leftCols(3);
  for (Index i = 0; i < 3; ++i)
    EXPECT_NEAR(stats.singularValues()(i), svd.S(i), 1e-3 * svd.S(i));
  EXPECT_GE(lora::linalg::subspaceSimilarity(
                stats.components().topRows(3).template cast<double>().transpose(), V, 3, 3),
            0.9999);
}

TYPED_TEST(EvaTyped, ConvergenceFollowsTheCosineSimilarity) {
  using Scalar = TypeParam;
  const Eigen::MatrixXd Q = basis(16, 3, 4);
  EvaCollector<Scalar> stats(16, 6);
  stats.update(planted<Scalar>(40, Q, {10, 5, 2.5}, 0.01, 400));
  // One batch: nothing to compare with yet.
  EXPECT_EQ(stats.cosineSimilarity().size(), 0);
  EXPECT_TRUE(stats.converged(0));
  EXPECT_FALSE(stats.converged(1));
  EXPECT_FALSE(stats.componentConverged(0));
  for (std::uint64_t b = 1; b < 6; ++b)
    stats.update(planted<Scalar>(40, Q, {10, 5, 2.5}, 0.01, 400 + b));
  ASSERT_EQ(stats.cosineSimilarity().size(), 6);
  for (Index i = 0; i < 6; ++i)
    EXPECT_EQ(stats.componentConverged(i), stats.cosineSimilarity()(i) >= 0.99);
  // The planted directions are stable; the noise directions are not.
  EXPECT_TRUE(stats.converged(3));
  EXPECT_FALSE(stats.converged());
  // A batch from another subspace, much stronger, moves the top component.
  stats.update(planted<Scalar>(40, basis(16, 1, 99), {60}, 0.01, 499));
  EXPECT_FALSE(stats.converged(1));
  EXPECT_LT(stats.cosineSimilarity()(0), 0.99);
}

TYPED_TEST(EvaTyped, RandomizedSvdMatchesExact) {
  using Scalar = TypeParam;
  const Eigen::MatrixXd Q = basis(48, 3, 5);
  EvaCollector<Scalar> exact(48, 4, {.svd = EvaSvd::Exact});
  EvaCollector<Scalar> randomized(48, 4, {.svd = EvaSvd::Randomized});
  for (std::uint64_t b = 0; b < 3; ++b) {
    const Mat<Scalar> X = planted<Scalar>(60, Q, {10, 7, 5}, 0.01, 500 + b);
    exact.update(X);
    randomized.update(X);
  }
  for (Index i = 0; i < 3; ++i)
    EXPECT_NEAR(randomized.singularValues()(i), exact.singularValues()(i),
                tol<Scalar>(1e-4, 1e-8) * exact.singularValues()(0));
  EXPECT_GE(lora::linalg::subspaceSimilarity(
                randomized.components().topRows(3).template cast<double>().transpose(),
                exact.components().topRows(3).template cast<double>().transpose(), 3, 3),
            1.0 - tol<Scalar>(1e-5, 1e-10));
}

TYPED_TEST(EvaTyped, AutoPicksRandomizedForWideLayersAndIsDeterministic) {
  using Scalar = TypeParam;
  // in = 200, q = 2, sketch 4: 2·4·(4 + 1) = 40 < min(rows, in) from the first batch of 60 on.
  const Eigen::MatrixXd Q = basis(200, 2, 6);
  EvaCollector<Scalar> a(200, 2), b(200, 2), randomized(200, 2, {.svd = EvaSvd::Randomized});
  for (std::uint64_t k = 0; k < 2; ++k) {
    const Mat<Scalar> X = planted<Scalar>(60, Q, {5, 3}, 0.01, 600 + k);
    a.update(X);
    b.update(X);
    randomized.update(X);
  }
  EXPECT_TRUE((a.components().array() == b.components().array()).all());
  EXPECT_TRUE((a.singularValues().array() == b.singularValues().array()).all());
  EXPECT_TRUE((a.components().array() == randomized.components().array()).all());
  EXPECT_GE(
      lora::linalg::subspaceSimilarity(a.components().template cast<double>().transpose(), Q, 2, 2),
      0.99);
}

TYPED_TEST(EvaTyped, ExactRunsAreBitwiseReproducible) {
  using Scalar = TypeParam;
  const Eigen::MatrixXd Q = basis(12, 2, 7);
  EvaCollector<Scalar> a(12, 4, {.svd = EvaSvd::Exact}), b(12, 4, {.svd = EvaSvd::Exact});
  for (std::uint64_t k = 0; k < 3; ++k) {
    const Mat<Scalar> X = planted<Scalar>(16, Q, {4, 2}, 0.1, 700 + k);
    a.update(X);
    b.update(X);
  }
  EXPECT_TRUE((a.components().array() == b.components().array()).all());
  EXPECT_TRUE((a.singularValues().array() == b.singularValues().array()).all());
  EXPECT_TRUE((a.cosineSimilarity().array() == b.cosineSimilarity().array()).all());
}

TYPED_TEST(EvaTyped, AcceptsAnyEigenExpression) {
  using Scalar = TypeParam;
  const Eigen::MatrixXd Q = basis(10, 2, 8);
  const Mat<Scalar> X = planted<Scalar>(12, Q, {3, 2}, 0.1, 800);
  const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rowMajor = X;
  EvaCollector<Scalar> plain(10, 3, {.svd = EvaSvd::Exact}), expr(10, 3, {.svd = EvaSvd::Exact});
  plain.update(X);
  expr.update(rowMajor.topRows(12) * Scalar(1));
  EXPECT_LT((plain.components() - expr.components()).cwiseAbs().maxCoeff(),
            tol<Scalar>(1e-5, 1e-12));
}

TYPED_TEST(EvaTyped, RankRedistributionRecoversAPlantedSplit) {
  using Scalar = TypeParam;
  // Layer "a" has 6 strong directions, layer "b" 2; r = 4 each, ρ = 2: 8 components each, a
  // budget of 8, and the explained variance sends 6 to "a" and 2 to "b".
  const Index q = lora::init::evaMaxComponents(4, 2.0);
  ASSERT_EQ(q, 8);
  EvaCollector<Scalar> a(20, q), b(20, q);
  const Eigen::MatrixXd Qa = basis(20, 6, 9), Qb = basis(20, 2, 10);
  for (std::uint64_t k = 0; k < 3; ++k) {
    a.update(planted<Scalar>(40, Qa, {5, 5, 4.8, 4.6, 4.4, 4.2}, 0.01, 900 + k));
    b.update(planted<Scalar>(40, Qb, {3, 2.8}, 0.01, 950 + k));
  }
  const auto dist = lora::init::evaRankDistribution(
      {lora::init::evaSpectrum("a", 4, a), lora::init::evaSpectrum("b", 4, b)}, 2.0);
  EXPECT_EQ(dist.budget, 8);
  EXPECT_EQ(dist.rankOf("a"), 6);
  EXPECT_EQ(dist.rankOf("b"), 2);
  EXPECT_EQ(dist.ranks(), (std::map<std::string, Index>{{"a", 6}, {"b", 2}}));
  EXPECT_EQ(dist.layers[0].maxComponents, 8);
  EXPECT_EQ(dist.layers[0].configuredRank, 4);
  EXPECT_NEAR(dist.layers[0].explainedVarianceRatio, a.explainedVarianceRatio().head(6).sum(),
              1e-12);
  EXPECT_GT(dist.layers[1].explainedVarianceRatio, 0.99);
  // The adapters built with those ranks span the planted directions.
  lora::Layer<Scalar> la(7, 20, {.rank = dist.rankOf("a"), .alpha = 8}, Eva::fromCollector(a));
  EXPECT_GE(lora::linalg::subspaceSimilarity(la.A().template cast<double>().transpose(), Qa, 6, 6),
            0.99);
}

TYPED_TEST(EvaTyped, LayerBuiltWithEvaHasZeroBAndTheTopComponents) {
  using Scalar = TypeParam;
  const Eigen::MatrixXd Q = basis(16, 3, 11);
  EvaCollector<Scalar> stats(16, 6);
  for (std::uint64_t k = 0; k < 3; ++k)
    stats.update(planted<Scalar>(30, Q, {6, 4, 3}, 0.01, 1100 + k));
  Mat<Scalar> W = gaussian<Scalar>(10, 16, 12);
  const Mat<Scalar> original = W;
  lora::Layer<Scalar> layer(W, {.rank = 3, .alpha = 6}, Eva::fromCollector(stats));
  EXPECT_TRUE((W.array() == original.array()).all()) << "EVA must not touch the base weight";
  EXPECT_TRUE(layer.B().isZero(0));
  ASSERT_EQ(layer.A().rows(), 3);
  EXPECT_TRUE((layer.A().array() == stats.components().topRows(3).array()).all());
  const Eigen::MatrixXd A = layer.A().template cast<double>();
  EXPECT_LT((A * A.transpose() - Eigen::MatrixXd::Identity(3, 3)).cwiseAbs().maxCoeff(),
            tol<Scalar>(1e-5, 1e-12));
  EXPECT_GE(lora::linalg::subspaceSimilarity(A.transpose(), Q, 3, 3), 0.99);
  // Without a base weight too; the output at step 0 is the base model's (B = 0).
  lora::Layer<Scalar> noBase(10, 16, {.rank = 2, .alpha = 6}, Eva::fromCollector(stats));
  EXPECT_TRUE(noBase.B().isZero(0));
  EXPECT_EQ(noBase.A().rows(), 2);
}

TYPED_TEST(EvaTyped, WhitenDividesRowsBySqrtOfTheSingularValues) {
  using Scalar = TypeParam;
  const Eigen::MatrixXd Q = basis(12, 2, 13);
  EvaCollector<Scalar> stats(12, 4);
  stats.update(planted<Scalar>(20, Q, {5, 2}, 0.05, 1300));
  Eva policy = Eva::fromCollector(stats, /*whitenRows=*/true);
  lora::init::Request<Scalar> request;
  request.outFeatures = 5;
  request.inFeatures = 12;
  request.rank = 3;
  lora::Rng rng(0);
  const auto f = policy.initialize(request, rng);
  EXPECT_EQ(f.baseUpdate, lora::init::BaseUpdate::Keep);
  for (Index i = 0; i < 3; ++i) {
    const auto expected = (stats.components().row(i).template cast<double>() /
                           std::sqrt(static_cast<double>(stats.singularValues()(i))))
                              .eval();
    EXPECT_LT((f.A.row(i).template cast<double>() - expected).cwiseAbs().maxCoeff(),
              tol<Scalar>(1e-6, 1e-14));
  }
  EXPECT_TRUE(f.B.isZero(0));
}

static_assert(lora::init::Initializer<Eva, float>);
static_assert(lora::init::Initializer<Eva, double>);
static_assert(lora::init::DataDependent<Eva>);

TEST(EvaPolicy, CopiesShareTheComponents) {
  EvaCollector<double> stats(8, 3);
  stats.update(gaussian<double>(10, 8, 14));
  const Eva policy = Eva::fromCollector(stats);
  const Eva copy = policy;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(copy.state.get(), policy.state.get());
  EXPECT_EQ(copy.componentCount(), 3);
  EXPECT_EQ(Eva::name(), "eva");
  // The held components are a snapshot: later batches do not change the policy.
  const Eigen::MatrixXd before = policy.state->components;
  stats.update(gaussian<double>(10, 8, 15));
  EXPECT_TRUE((policy.state->components.array() == before.array()).all());
}

TEST(EvaRankDistribution, TiesGoToTheLayerListedFirstAndALayerCanGetZero) {
  Eigen::VectorXd a(2), b(2);
  a << 0.6, 0.2;
  b << 0.2, 0.1;
  // r = 1 each, ρ = 2: two offers each, budget 2. The 0.2s tie: the first listed wins.
  auto dist = lora::init::evaRankDistribution({{"a", 1, a}, {"b", 1, b}}, 2.0);
  EXPECT_EQ(dist.rankOf("a"), 2);
  EXPECT_EQ(dist.rankOf("b"), 0);
  EXPECT_NEAR(dist.layers[0].explainedVarianceRatio, 0.8, 1e-15);
  EXPECT_EQ(dist.layers[1].explainedVarianceRatio, 0.0);
  dist = lora::init::evaRankDistribution({{"b", 1, b}, {"a", 1, a}}, 2.0);
  EXPECT_EQ(dist.rankOf("a"), 1);
  EXPECT_EQ(dist.rankOf("b"), 1);
  EXPECT_EQ(dist.layers[0].name, "b");  // input order
}

TEST(EvaRankDistribution, PerLayerRanksRhoOneAndOnlyTheFirstComponentsCompete) {
  Eigen::VectorXd a(4), b(4);
  a << 0.5, 0.3, 0.1, 0.05;
  b << 0.9, 0.05, 0.04, 0.01;
  // ρ = 1: every layer offers exactly r and gets r back.
  auto dist = lora::init::evaRankDistribution({{"a", 3, a}, {"b", 1, b}}, 1.0);
  EXPECT_EQ(dist.rankOf("a"), 3);
  EXPECT_EQ(dist.rankOf("b"), 1);
  EXPECT_EQ(dist.budget, 4);
  // ρ = 1.5: a offers round(4.5) = 4, b offers round(1.5) = 2; top 4 of
  // {0.9, 0.5, 0.3, 0.1, 0.05, 0.05(b)} are 0.9, 0.5, 0.3, 0.1.
  dist = lora::init::evaRankDistribution({{"a", 3, a}, {"b", 1, b}}, 1.5);
  EXPECT_EQ(dist.layers[0].maxComponents, 4);
  EXPECT_EQ(dist.layers[1].maxComponents, 2);
  EXPECT_EQ(dist.rankOf("a"), 3);
  EXPECT_EQ(dist.rankOf("b"), 1);
  // More ratios than round(r·ρ) are ignored: b's third (0.04) never competes.
  Eigen::VectorXd c(3);
  c << 0.2, 0.2, 0.2;
  dist = lora::init::evaRankDistribution({{"c", 1, c}, {"b", 1, b}}, 2.0);
  EXPECT_EQ(dist.rankOf("b"), 1);
  EXPECT_EQ(dist.rankOf("c"), 1);
}

TEST(EvaHelpers, MaxComponentsRoundsLikePythonAndAlphaIsAdjusted) {
  EXPECT_EQ(lora::init::evaMaxComponents(4, 2.0), 8);
  EXPECT_EQ(lora::init::evaMaxComponents(16, 1.0), 16);
  EXPECT_EQ(lora::init::evaMaxComponents(5, 1.5), 8);   // 7.5 -> 8
  EXPECT_EQ(lora::init::evaMaxComponents(3, 1.5), 4);   // 4.5 -> 4
  EXPECT_EQ(lora::init::evaMaxComponents(7, 1.5), 10);  // 10.5 -> 10
  EXPECT_EQ(lora::init::evaMaxComponents(1, 2.5), 2);
  EXPECT_EQ(lora::init::evaMaxComponents(3, 1.1), 3);
  EXPECT_EQ(lora::init::evaAdjustedAlpha(32.0, 6, 4), 48.0);
  EXPECT_EQ(lora::init::evaAdjustedAlpha(32.0, 0, 4), 0.0);
}

TEST(EvaErrors, CollectorRejectsBadInputsAndStaysUnchanged) {
  EXPECT_CONTAINS(errorOf([] { EvaCollector<double>(8, 9); }), "EvaCollector::EvaCollector");
  EXPECT_CONTAINS(errorOf([] { EvaCollector<double>(8, 0); }), "components");
  EXPECT_CONTAINS(errorOf([] { EvaCollector<float>(8, 2, {.tau = 1.5}); }), "tau");
  EXPECT_CONTAINS(errorOf([] { EvaCollector<double>(8, 4, {.sketchSize = 3}); }), "sketchSize");

  EvaCollector<double> stats(8, 3);
  EXPECT_CONTAINS(errorOf([&] { (void)stats.components(); }), "EvaCollector::components");
  EXPECT_CONTAINS(errorOf([&] { stats.update(gaussian<double>(2, 8, 1)); }),
                  "expected a first batch of at least 3 rows");
  stats.update(gaussian<double>(6, 8, 16));
  const Eigen::MatrixXd V = stats.components();
  const Eigen::VectorXd mean = stats.mean();
  const std::string wrong = errorOf([&] { stats.update(gaussian<double>(6, 7, 1)); });
  EXPECT_CONTAINS(wrong, "EvaCollector::update");
  EXPECT_CONTAINS(wrong, "8 columns");
  EXPECT_CONTAINS(errorOf([&] { stats.update(Eigen::MatrixXd(0, 8)); }), "non-empty batch");
  Eigen::MatrixXd bad = gaussian<double>(4, 8, 2);
  bad(1, 1) = std::nan("");
  EXPECT_CONTAINS(errorOf([&] { stats.update(bad); }), "finite");
  EXPECT_TRUE((stats.components().array() == V.array()).all());
  EXPECT_TRUE((stats.mean().array() == mean.array()).all());
  EXPECT_EQ(stats.samplesSeen(), 6);
  EXPECT_EQ(stats.batches(), 1);
  EXPECT_CONTAINS(errorOf([&] { (void)stats.converged(4); }), "EvaCollector::converged");
  // After the first batch, a batch smaller than q is fine.
  stats.update(gaussian<double>(1, 8, 3));
  EXPECT_EQ(stats.samplesSeen(), 7);
}

TEST(EvaErrors, PolicyRejectsBadRequests) {
  EvaCollector<float> stats(8, 3);
  stats.update(gaussian<float>(6, 8, 17));
  const Eva policy = Eva::fromCollector(stats);
  const std::string tooBig =
      errorOf([&] { lora::Layer<float>(4, 8, {.rank = 4, .alpha = 4}, policy); });
  EXPECT_CONTAINS(tooBig, "Eva::initialize");
  EXPECT_CONTAINS(tooBig, "rank in [1, 3]");
  EXPECT_CONTAINS(errorOf([&] { lora::Layer<float>(4, 9, {.rank = 2, .alpha = 4}, policy); }),
                  "8 in features");
  EXPECT_CONTAINS(errorOf([] { lora::Layer<double>(4, 8, {.rank = 2, .alpha = 4}, Eva{}); }),
                  "Eva::initialize");
  EXPECT_CONTAINS(errorOf([] { (void)Eva::fromCollector(EvaCollector<double>(8, 2)); }),
                  "Eva::fromCollector");
  EXPECT_CONTAINS(errorOf([] { Eva(Eigen::MatrixXd::Identity(2, 4), Eigen::VectorXd::Ones(3)); }),
                  "Eva::Eva");
  // Whitening by a zero singular value.
  Eigen::VectorXd s(2);
  s << 1.0, 0.0;
  const Eva zero(Eigen::MatrixXd::Identity(2, 4), s, true);
  EXPECT_CONTAINS(errorOf([&] { lora::Layer<double>(3, 4, {.rank = 2, .alpha = 4}, zero); }),
                  "positive singular values");
}

TEST(EvaErrors, RedistributionRejectsBadInputs) {
  Eigen::VectorXd r(2);
  r << 0.5, 0.2;
  EXPECT_CONTAINS(errorOf([] { (void)lora::init::evaMaxComponents(4, 0.5); }),
                  "evaMaxComponents(): expected a finite rho >= 1");
  EXPECT_CONTAINS(errorOf([&] {
                    (void)lora::init::evaRankDistribution({{"a", 1, r}}, 0.9);
                  }),
                  "evaRankDistribution(): expected a finite rho >= 1");
  EXPECT_CONTAINS(errorOf([] { (void)lora::init::evaRankDistribution({}, 2.0); }),
                  "at least one layer");
  EXPECT_CONTAINS(errorOf([&] {
                    (void)lora::init::evaRankDistribution({{"a", 2, r}}, 2.0);
                  }),
                  "at least round(r·ρ) = 4");
  EXPECT_CONTAINS(errorOf([&] {
                    (void)lora::init::evaRankDistribution({{"a", 1, r}, {"a", 1, r}}, 1.0);
                  }),
                  "unique");
  EXPECT_CONTAINS(errorOf([&] {
                    (void)lora::init::evaRankDistribution({{"a", 0, r}}, 1.0);
                  }),
                  "rank >= 1");
  Eigen::VectorXd up(2);
  up << 0.1, 0.2;
  EXPECT_CONTAINS(errorOf([&] {
                    (void)lora::init::evaRankDistribution({{"a", 1, up}}, 2.0);
                  }),
                  "non-increasing");
  const auto dist = lora::init::evaRankDistribution({{"a", 1, r}}, 1.0);
  EXPECT_CONTAINS(errorOf([&] { (void)dist.rankOf("z"); }), "EvaRankDistribution::rankOf");
  EXPECT_CONTAINS(errorOf([] { (void)lora::init::evaAdjustedAlpha(-1.0, 1, 1); }),
                  "evaAdjustedAlpha");
}

}  // namespace
