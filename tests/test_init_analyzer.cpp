// Tests of lora::analysis::InitializationAnalyzer: its statistics against a dense hand computation
// on tiny layers, the degenerate fake loss, error rows, determinism, CSV/JSON output and bad
// configuration.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/linalg/dense_svd.hpp"
#include "lora/analysis/initialization_analyzer.hpp"
#include "lora/init/init.hpp"
#include "lora/layer.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

using lora::analysis::InitializationAnalyzer;
using lora::analysis::InitializationAnalyzerOptions;
using lora::analysis::InitializationReport;
using lora::analysis::InitializationResult;
using lora::analysis::Statistic;
using MatD = Eigen::MatrixXd;

/// A policy that needs the base weight (as PiSSA does): it throws without one.
struct NeedsWeight {
  static std::string name() { return "needs_weight"; }
  template <typename Scalar>
  lora::init::Factors<Scalar> initialize(const lora::init::Request<Scalar>& request,
                                         lora::Rng& rng) const {
    lora::init::requireWeight(request, "NeedsWeight::initialize");
    return lora::init::Gaussian{}.initialize(request, rng);
  }
};

/// B with identical columns: s·B·A has rank 1 < r, so its condition number is undefined.
struct TwinColumns {
  static std::string name() { return "twin_columns"; }
  template <typename Scalar>
  lora::init::Factors<Scalar> initialize(const lora::init::Request<Scalar>& request,
                                         lora::Rng& rng) const {
    lora::init::Factors<Scalar> f;
    f.A.resize(request.rank, request.inFeatures);
    lora::fillNormal(f.A, rng, 0.0, 1.0);
    f.B.resize(request.outFeatures, request.rank);
    Eigen::Matrix<Scalar, Eigen::Dynamic, 1> column(request.outFeatures);
    lora::fillNormal(column, rng, 0.0, 1.0);
    f.B.colwise() = column;
    return f;
  }
};

/// B·A = 0 exactly with both factors non-zero (rows a and −a of A, columns b and b of B), as
/// PEFT's orthogonal init gives up to rounding: no spectrum, no condition number.
struct CancellingFactors {
  static std::string name() { return "cancelling"; }
  template <typename Scalar>
  lora::init::Factors<Scalar> initialize(const lora::init::Request<Scalar>& request,
                                         lora::Rng& rng) const {
    lora::init::Factors<Scalar> f;
    f.A.resize(request.rank, request.inFeatures);
    f.B.resize(request.outFeatures, request.rank);
    Eigen::Matrix<Scalar, 1, Eigen::Dynamic> a(request.inFeatures);
    Eigen::Matrix<Scalar, Eigen::Dynamic, 1> b(request.outFeatures);
    lora::fillNormal(a, rng, 0.0, 1.0);
    lora::fillNormal(b, rng, 0.0, 1.0);
    for (Eigen::Index j = 0; j < request.rank; ++j) {
      f.A.row(j) = (j % 2 == 0 ? Scalar(1) : Scalar(-1)) * a;
      f.B.col(j) = b;
    }
    return f;
  }
};

InitializationAnalyzerOptions tinyOptions() {
  return {.outFeatures = 6,
          .inFeatures = 5,
          .rank = 2,
          .alpha = 4.0,  // s = 2
          .trials = 3,
          .seed = 11,
          .batchSize = 7,
          .targetRank = 2,
          .targetScale = 1.5,
          .dataSeed = 5};
}

/// Every quantity of one trial, computed densely from the layer the analyzer would build.
struct Dense {
  double deltaNorm, deltaStd, normA, normB, spectral, cond, fakeA, fakeB, loss, gradA, gradB,
      baseChange, outMax, outRel;
};

template <typename Scalar>
Dense denseTrial(const InitializationAnalyzerOptions& o,
                 const lora::init::AnyInitializer<Scalar>& init, std::uint64_t seed,
                 const Eigen::Matrix<Scalar, -1, -1>* W0,
                 const lora::analysis::RegressionProblem<Scalar>& p) {
  using Mat = Eigen::Matrix<Scalar, -1, -1>;
  const lora::LayerOptions lo{.rank = o.rank, .alpha = o.alpha, .scaling = o.scaling, .seed = seed};
  Mat W = W0 ? *W0 : Mat::Zero(o.outFeatures, o.inFeatures);
  lora::Layer<Scalar> layer = W0 ? lora::Layer<Scalar>(W, lo, init)
                                 : lora::Layer<Scalar>(o.outFeatures, o.inFeatures, lo, init);
  if (!W0) layer.bindBase(W);
  const double s = layer.scaling();
  const MatD A = layer.A().template cast<double>(), B = layer.B().template cast<double>();
  const MatD D = s * B * A;  // dense ΔW
  Dense d{};
  d.deltaNorm = D.norm();
  const double n = static_cast<double>(D.size());
  d.deltaStd = std::sqrt((D.array() - D.mean()).square().sum() / (n - 1.0));
  d.normA = A.norm();
  d.normB = B.norm();
  const Eigen::VectorXd sigma = lora::linalg::singularValues(D);
  const Eigen::Index k = std::min({o.rank, o.outFeatures, o.inFeatures});
  d.spectral = sigma(0);
  const double tol = static_cast<double>(std::max(o.outFeatures, o.inFeatures)) *
                     std::numeric_limits<Scalar>::epsilon() * sigma(0);
  d.cond = (sigma(0) > 0 && sigma(k - 1) > tol) ? sigma(0) / sigma(k - 1)
                                                : std::numeric_limits<double>::quiet_NaN();
  // L = ‖D‖², dL/dD = 2D; D = sBA: dL/dA = s Bᵀ (2D), dL/dB = s (2D) Aᵀ
  d.fakeA = (s * B.transpose() * (2.0 * D)).norm();
  d.fakeB = (s * (2.0 * D) * A.transpose()).norm();
  // MSE and its gradients, densely: E = X (W + D)ᵀ − Y, dY = 2E/(N·out)
  const MatD X = p.X.template cast<double>();
  const MatD Wd = W.template cast<double>();
  const MatD E = X * (Wd + D).transpose() - p.Y.template cast<double>();
  d.loss = E.squaredNorm() / static_cast<double>(E.size());
  const MatD dY = (2.0 / static_cast<double>(E.size())) * E;
  d.gradA = (s * (dY * B).transpose() * X).norm();
  d.gradB = (s * dY.transpose() * (X * A.transpose())).norm();
  const MatD W0d = W0 ? MatD(W0->template cast<double>()) : MatD::Zero(o.outFeatures, o.inFeatures);
  d.baseChange = W0 ? (Wd - W0d).norm() : std::numeric_limits<double>::quiet_NaN();
  const MatD base = X * W0d.transpose();
  d.outMax = (X * (Wd + D).transpose() - base).cwiseAbs().maxCoeff();
  const double baseMax = base.cwiseAbs().maxCoeff();
  d.outRel = baseMax > 0 ? d.outMax / baseMax : std::numeric_limits<double>::quiet_NaN();
  return d;
}

/// Expects \p st to be the statistic of \p values (relative tolerance \p tol, absolute near 0).
void expectStatistic(const Statistic& st, const std::vector<double>& values, double tol,
                     const std::string& what) {
  SCOPED_TRACE(what);
  std::vector<double> kept;
  for (double v : values)
    if (!std::isnan(v)) kept.push_back(v);
  ASSERT_EQ(st.count, static_cast<Eigen::Index>(kept.size()));
  if (kept.empty()) {
    EXPECT_TRUE(std::isnan(st.mean) && std::isnan(st.stddev) && std::isnan(st.min) &&
                std::isnan(st.max));
    return;
  }
  double mean = 0, lo = kept[0], hi = kept[0];
  for (double v : kept) {
    mean += v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  mean /= static_cast<double>(kept.size());
  double var = 0;
  for (double v : kept) var += (v - mean) * (v - mean);
  const double sd = std::sqrt(var / static_cast<double>(kept.size()));
  const double scale = std::max(1.0, std::abs(hi) + std::abs(lo));
  EXPECT_NEAR(st.mean, mean, tol * scale);
  EXPECT_NEAR(st.min, lo, tol * scale);
  EXPECT_NEAR(st.max, hi, tol * scale);
  EXPECT_NEAR(st.stddev, sd, tol * scale);
}

template <typename Scalar>
void expectMatchesDense(const InitializationAnalyzer<Scalar>& analyzer,
                        const InitializationReport& report, const Eigen::Matrix<Scalar, -1, -1>* W0,
                        double tol) {
  const auto& o = analyzer.options();
  const auto problem = analyzer.regressionProblem();
  for (const auto& named : analyzer.initializers()) {
    const InitializationResult& r = report.at(named.name);
    ASSERT_TRUE(r.ok()) << r.error;
    std::vector<Dense> trials;
    for (Eigen::Index t = 0; t < o.trials; ++t)
      trials.push_back(denseTrial<Scalar>(o, named.initializer, o.seed + t, W0, problem));
    auto column = [&](double Dense::*field) {
      std::vector<double> v;
      for (const auto& d : trials) v.push_back(d.*field);
      return v;
    };
    const std::string n = named.name + ": ";
    expectStatistic(r.deltaNorm, column(&Dense::deltaNorm), tol, n + "deltaNorm");
    expectStatistic(r.deltaStd, column(&Dense::deltaStd), tol, n + "deltaStd");
    expectStatistic(r.normA, column(&Dense::normA), tol, n + "normA");
    expectStatistic(r.normB, column(&Dense::normB), tol, n + "normB");
    expectStatistic(r.spectralNorm, column(&Dense::spectral), tol, n + "spectral");
    expectStatistic(r.conditionNumber, column(&Dense::cond), 100 * tol, n + "cond");
    expectStatistic(r.fakeGradA, column(&Dense::fakeA), tol, n + "fakeA");
    expectStatistic(r.fakeGradB, column(&Dense::fakeB), tol, n + "fakeB");
    expectStatistic(r.regressionLoss, column(&Dense::loss), tol, n + "loss");
    expectStatistic(r.regressionGradA, column(&Dense::gradA), tol, n + "gradA");
    expectStatistic(r.regressionGradB, column(&Dense::gradB), tol, n + "gradB");
    expectStatistic(r.baseChange, column(&Dense::baseChange), tol, n + "baseChange");
    expectStatistic(r.outputChangeMax, column(&Dense::outMax), tol, n + "outMax");
    expectStatistic(r.outputChangeRel, column(&Dense::outRel), tol, n + "outRel");
  }
}

template <typename Scalar>
class InitAnalyzerTyped : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(InitAnalyzerTyped, Scalars);

// PEFT's default by hand: B = 0, so ΔW = 0, its std and spectral norm are 0, the condition number
// is undefined, the fake loss has exactly zero gradients, and the real MSE moves B but not A.
TYPED_TEST(InitAnalyzerTyped, PeftDefaultByHand) {
  using Scalar = TypeParam;
  const auto o = tinyOptions();
  InitializationAnalyzer<Scalar> analyzer(o);
  analyzer.add(lora::init::PeftDefault{});
  const InitializationReport report = analyzer.compute();
  ASSERT_EQ(report.results.size(), 1u);
  const InitializationResult& r = report.results[0];
  EXPECT_EQ(r.name, "peft_default");
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.trials, 3);
  ASSERT_EQ(r.measurements.size(), 3u);
  for (const auto* st : {&r.deltaNorm, &r.deltaStd, &r.normB, &r.spectralNorm, &r.fakeGradA,
                         &r.fakeGradB, &r.regressionGradA, &r.outputChangeMax}) {
    EXPECT_EQ(st->count, 3);
    EXPECT_EQ(st->mean, 0.0);
    EXPECT_EQ(st->max, 0.0);
  }
  EXPECT_EQ(r.conditionNumber.count, 0);
  EXPECT_TRUE(std::isnan(r.conditionNumber.mean));
  EXPECT_GT(r.regressionGradB.min, 0.0);
  // Without a base weight: nothing to change, and the base output X·0ᵀ is 0.
  EXPECT_EQ(r.baseChange.count, 0);
  EXPECT_EQ(r.outputChangeRel.count, 0);

  // ‖A‖ by hand: A ~ U(-1/sqrt(in), 1/sqrt(in)) drawn row by row from Rng(seed + t).
  std::vector<double> norms;
  for (Eigen::Index t = 0; t < o.trials; ++t) {
    lora::Rng rng(o.seed + static_cast<std::uint64_t>(t));
    Eigen::Matrix<Scalar, -1, -1> A(o.rank, o.inFeatures);
    const double bound = 1.0 / std::sqrt(static_cast<double>(o.inFeatures));
    lora::fillUniform(A, rng, -bound, bound);
    norms.push_back(A.template cast<double>().norm());
    EXPECT_DOUBLE_EQ(r.measurements[static_cast<std::size_t>(t)].normA, norms.back());
    EXPECT_EQ(r.measurements[static_cast<std::size_t>(t)].seed,
              o.seed + static_cast<std::uint64_t>(t));
  }
  expectStatistic(r.normA, norms, 1e-15, "normA");

  // The step-0 MSE is the base model's (B = 0): the base is 0 here, so it is mean(Y²).
  const auto p = analyzer.regressionProblem();
  const double meanY2 = p.Y.template cast<double>().squaredNorm() / static_cast<double>(p.Y.size());
  EXPECT_NEAR(r.regressionLoss.mean, meanY2, 1e-12 * meanY2);
  EXPECT_EQ(r.regressionLoss.stddev, 0.0);
  EXPECT_NEAR(report.baseLoss, meanY2, 1e-12 * meanY2);
}

// Every statistic equals its dense computation (ΔW formed, JacobiSVD, gradients by formula).
TYPED_TEST(InitAnalyzerTyped, MatchesDenseComputationWithoutWeight) {
  using Scalar = TypeParam;
  InitializationAnalyzer<Scalar> analyzer(tinyOptions());
  analyzer.add(lora::init::PeftDefault{})
      .add(lora::init::Gaussian{})
      .add(lora::init::XavierLora{})
      .add(lora::init::KaimingLora{})
      .add(lora::init::Orthogonal{})
      .add("layer_adaptive_6_12", lora::init::LayerAdaptive{.depth = 6, .totalLayers = 12})
      .add(TwinColumns{});
  const InitializationReport report = analyzer.compute();
  expectMatchesDense<Scalar>(analyzer, report, nullptr,
                             std::is_same_v<Scalar, float> ? 2e-5 : 1e-11);
  // The rank-deficient delta has no condition number; a full-rank one has it in every trial.
  EXPECT_EQ(report.at("twin_columns").conditionNumber.count, 0);
  EXPECT_EQ(report.at("xavier_lora").conditionNumber.count, 3);
  EXPECT_GT(report.at("xavier_lora").conditionNumber.min, 1.0);
}

TYPED_TEST(InitAnalyzerTyped, MatchesDenseComputationWithWeight) {
  using Scalar = TypeParam;
  const auto o = tinyOptions();
  const Eigen::Matrix<Scalar, -1, -1> W =
      lora::test::gaussian<Scalar>(o.outFeatures, o.inFeatures, 3);
  InitializationAnalyzer<Scalar> analyzer(o);
  analyzer.setBaseWeight(W);
  analyzer.add(lora::init::PeftDefault{})
      .add(lora::init::XavierLora{})
      .add(lora::init::SubtractDelta{lora::init::XavierLora{}})
      .add(lora::init::SubtractDelta{lora::init::Orthogonal{}})
      .add(NeedsWeight{});
  const InitializationReport report = analyzer.compute();
  expectMatchesDense<Scalar>(analyzer, report, &W, std::is_same_v<Scalar, float> ? 2e-5 : 1e-11);

  // Keep: W untouched, output moved by ΔW. SubtractDelta: W changed by exactly ΔW, output kept.
  const auto& keep = report.at("xavier_lora");
  const auto& subtract = report.at("xavier_lora+subtract_delta");
  EXPECT_EQ(keep.baseChange.max, 0.0);
  EXPECT_GT(keep.outputChangeRel.min, 1e-3);
  EXPECT_NEAR(subtract.baseChange.mean, subtract.deltaNorm.mean, 1e-4 * subtract.deltaNorm.mean);
  const double keptBound = std::is_same_v<Scalar, float> ? 1e-5 : 1e-13;
  EXPECT_LT(subtract.outputChangeRel.max, keptBound);
  // Same seeds, same factors: the wrapper changes W, not A and B.
  EXPECT_EQ(keep.normA.mean, subtract.normA.mean);
  EXPECT_EQ(keep.deltaNorm.mean, subtract.deltaNorm.mean);
  EXPECT_TRUE(report.at("needs_weight").ok());
  EXPECT_TRUE(report.hasBaseWeight);
}

// B·A = 0 with non-zero factors: the delta's statistics are 0 up to rounding and it has no
// condition number, though its factor norms are not 0; the fake loss again has zero gradients.
TYPED_TEST(InitAnalyzerTyped, CancellingFactorsHaveNoConditionNumber) {
  using Scalar = TypeParam;
  InitializationAnalyzer<Scalar> analyzer(tinyOptions());
  analyzer.add(CancellingFactors{});
  const InitializationResult r = analyzer.compute().at("cancelling");
  EXPECT_EQ(r.conditionNumber.count, 0);
  EXPECT_GT(r.normA.min, 1.0);
  EXPECT_GT(r.normB.min, 1.0);
  const double tiny = 1e3 * std::numeric_limits<Scalar>::epsilon();
  EXPECT_LT(r.deltaNorm.max, tiny * r.normA.max * r.normB.max);
  EXPECT_LT(r.spectralNorm.max, tiny * r.normA.max * r.normB.max);
  EXPECT_LT(r.outputChangeMax.max, tiny * r.normA.max * r.normB.max);
}

// PEFT's orthogonal init: B·A = 0 up to rounding. ‖ΔW‖_F comes from the factored SVD, so it stays
// at the rounding level (a Gram-matrix formula would leave sqrt(ε)·‖B‖‖A‖ of cancellation noise).
TYPED_TEST(InitAnalyzerTyped, PeftOrthogonalDeltaIsZeroToRounding) {
  using Scalar = TypeParam;
  auto o = tinyOptions();
  o.rank = 4;
  InitializationAnalyzer<Scalar> analyzer(o);
  analyzer.add(lora::init::PeftOrthogonal{});
  const InitializationResult r = analyzer.compute().at("peft_orthogonal");
  ASSERT_TRUE(r.ok()) << r.error;
  const double scale = r.normA.max * r.normB.max;
  EXPECT_GT(scale, 0.0);
  EXPECT_LT(r.deltaNorm.max, 1e3 * std::numeric_limits<Scalar>::epsilon() * scale);
  EXPECT_EQ(r.conditionNumber.count, 0);
  for (const auto& m : r.measurements) {
    EXPECT_GE(m.deltaNorm, m.spectralNorm * (1 - 1e-12));
    EXPECT_LE(m.deltaNorm, 2.0 * m.spectralNorm * (1 + 1e-12));  // k = min(4, 6, 5) = 4 values
  }
}

// A policy that needs a base weight, analyzed without one: an error row, the rest unaffected.
TEST(InitAnalyzer, PolicyThatThrowsIsAnErrorRow) {
  InitializationAnalyzer<double> analyzer(tinyOptions());
  analyzer.add(lora::init::PeftDefault{}).add(NeedsWeight{}).add(lora::init::XavierLora{});
  const InitializationReport report = analyzer.compute();
  ASSERT_EQ(report.results.size(), 3u);
  const auto& bad = report.at("needs_weight");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.failedTrials, 3);
  EXPECT_EQ(bad.succeededTrials(), 0);
  EXPECT_TRUE(bad.measurements.empty());
  EXPECT_CONTAINS(bad.error, "NeedsWeight::initialize");
  EXPECT_CONTAINS(bad.error, "base weight");
  EXPECT_EQ(bad.deltaNorm.count, 0);
  EXPECT_TRUE(report.at("peft_default").ok());
  EXPECT_TRUE(report.at("xavier_lora").ok());
  const std::string text = report.format();
  EXPECT_CONTAINS(text, "Errors:");
  EXPECT_CONTAINS(text, "needs_weight: failed in 3 of 3 trials");
  EXPECT_EQ(report.toJson()["results"][1]["error"].get<std::string>(), bad.error);
  EXPECT_TRUE(report.toJson()["results"][0]["error"].is_null());
}

TEST(InitAnalyzer, DeterministicPerSeed) {
  auto run = [](std::uint64_t seed, std::uint64_t dataSeed) {
    auto o = tinyOptions();
    o.seed = seed;
    o.dataSeed = dataSeed;
    InitializationAnalyzer<double> analyzer(o);
    analyzer.add(lora::init::PeftDefault{})
        .add(lora::init::XavierLora{})
        .add(lora::init::Orthogonal{});
    return analyzer.compute();
  };
  const auto a = run(11, 5), b = run(11, 5), c = run(12, 5), d = run(11, 6);
  EXPECT_EQ(a.toCsv(), b.toCsv());
  EXPECT_EQ(a.toJson(), b.toJson());
  EXPECT_NE(a.at("xavier_lora").normA.mean, c.at("xavier_lora").normA.mean);
  // The data seed changes the regression problem, not the factors.
  EXPECT_EQ(a.at("xavier_lora").normA.mean, d.at("xavier_lora").normA.mean);
  EXPECT_NE(a.at("xavier_lora").regressionLoss.mean, d.at("xavier_lora").regressionLoss.mean);
}

TEST(InitAnalyzer, GivenTargetIsUsed) {
  const auto o = tinyOptions();
  const MatD T = lora::test::gaussian<double>(o.outFeatures, o.inFeatures, 9);
  InitializationAnalyzer<double> analyzer(o);
  analyzer.setTarget(T).add(lora::init::PeftDefault{});
  const auto p = analyzer.regressionProblem();
  EXPECT_TRUE(p.target.isApprox(T));
  EXPECT_TRUE(p.Y.isApprox(p.X * T.transpose()));
  const auto report = analyzer.compute();
  EXPECT_TRUE(report.hasTarget);
  EXPECT_EQ(report.targetRank, 0);
  EXPECT_NEAR(report.baseLoss, p.Y.squaredNorm() / static_cast<double>(p.Y.size()), 1e-12);
}

TEST(InitAnalyzer, PlantedTargetHasTheRequestedRank) {
  auto o = tinyOptions();
  o.targetRank = 3;
  o.targetScale = 2.0;
  const MatD W = lora::test::gaussian<double>(o.outFeatures, o.inFeatures, 4);
  InitializationAnalyzer<double> analyzer(o);
  analyzer.setBaseWeight(W);
  const auto p = analyzer.regressionProblem();
  const Eigen::VectorXd sigma = lora::linalg::singularValues(p.target - W);
  EXPECT_NEAR(sigma(0), 2.0, 1e-12);
  EXPECT_NEAR(sigma(2), 2.0, 1e-12);
  EXPECT_LT(sigma(3), 1e-12);
  EXPECT_TRUE(p.weight.isApprox(W));
}

// CSV: one header and one row per init, every row with the header's columns, every metric's
// five columns present; error messages with commas are quoted. JSON: the same rows and keys, and
// the numbers survive a dump/parse round trip.
TEST(InitAnalyzer, CsvAndJsonHoldEveryRowAndColumn) {
  InitializationAnalyzer<double> analyzer(tinyOptions());
  analyzer.add(lora::init::PeftDefault{}).add(lora::init::XavierLora{}).add(NeedsWeight{});
  const auto report = analyzer.compute();

  const std::string csv = report.toCsv();
  // Split into records and fields (RFC 4180: quoted fields may hold commas and doubled quotes).
  std::vector<std::vector<std::string>> records(1);
  std::string field;
  bool quoted = false;
  for (std::size_t i = 0; i < csv.size(); ++i) {
    const char c = csv[i];
    if (quoted) {
      if (c == '"' && i + 1 < csv.size() && csv[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      records.back().push_back(field);
      field.clear();
    } else if (c == '\n') {
      records.back().push_back(field);
      field.clear();
      records.emplace_back();
    } else {
      field += c;
    }
  }
  ASSERT_TRUE(records.back().empty());
  records.pop_back();
  ASSERT_EQ(records.size(), 4u);
  const auto& header = records[0];
  const auto& metrics = lora::analysis::initializationMetrics();
  ASSERT_EQ(header.size(), 6u + 5u * metrics.size());
  for (const auto& row : records) EXPECT_EQ(row.size(), header.size());
  auto col = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    EXPECT_NE(it, header.end()) << name;
    return static_cast<std::size_t>(it - header.begin());
  };
  for (const auto& m : metrics)
    for (const char* f : {"_mean", "_std", "_min", "_max", "_count"}) col(std::string(m.key) + f);
  EXPECT_EQ(records[1][col("name")], "peft_default");
  EXPECT_EQ(records[2][col("name")], "xavier_lora");
  EXPECT_EQ(records[3][col("name")], "needs_weight");
  EXPECT_EQ(records[3][col("error")], report.at("needs_weight").error);  // commas survived
  EXPECT_EQ(records[3][col("failed_trials")], "3");
  EXPECT_EQ(records[1][col("condition_number_count")], "0");
  EXPECT_EQ(records[1][col("condition_number_mean")], "nan");
  EXPECT_EQ(std::stod(records[2][col("norm_a_mean")]), report.at("xavier_lora").normA.mean);
  EXPECT_EQ(std::stod(records[2][col("delta_norm_max")]), report.at("xavier_lora").deltaNorm.max);

  const nlohmann::json j = report.toJson();
  const nlohmann::json back = nlohmann::json::parse(j.dump());
  EXPECT_EQ(back, j);
  ASSERT_EQ(back["results"].size(), 3u);
  EXPECT_EQ(back["config"]["rank"], 2);
  EXPECT_EQ(back["config"]["trials"], 3);
  EXPECT_EQ(back["metrics"].size(), metrics.size());
  for (std::size_t i = 0; i < report.results.size(); ++i) {
    const auto& r = report.results[i];
    const auto& row = back["results"][i];
    EXPECT_EQ(row["name"], r.name);
    EXPECT_EQ(row["failed_trials"], r.failedTrials);
    EXPECT_EQ(row["measurements"].size(), r.measurements.size());
    for (const auto& m : metrics) {
      const auto& st = row["statistics"][std::string(m.key)];
      const Statistic& expected = r.*(m.statistic);
      EXPECT_EQ(st["count"], expected.count) << r.name << " " << m.key;
      if (expected.defined()) {
        EXPECT_EQ(st["mean"].get<double>(), expected.mean);
        EXPECT_EQ(st["max"].get<double>(), expected.max);
      } else {
        EXPECT_TRUE(st["mean"].is_null());
      }
    }
  }
}

TEST(InitAnalyzer, FormatPrintsBothTables) {
  InitializationAnalyzer<float> analyzer(tinyOptions());
  analyzer.add(lora::init::PeftDefault{}).add(lora::init::XavierLora{});
  const std::string text = analyzer.compute().format();
  EXPECT_CONTAINS(text, "| init ");
  EXPECT_CONTAINS(text, "‖ΔW‖_F");
  EXPECT_CONTAINS(text, "MSE ‖∂B‖");
  EXPECT_CONTAINS(text, "n/a (0/3)");  // peft_default's condition number
  EXPECT_CONTAINS(text, "(float)");
  EXPECT_EQ(text.find("Errors:"), std::string::npos);
}

TEST(InitAnalyzer, StatisticSkipsUndefinedValues) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Statistic st = Statistic::of({1.0, nan, 3.0});
  EXPECT_EQ(st.count, 2);
  EXPECT_EQ(st.mean, 2.0);
  EXPECT_EQ(st.stddev, 1.0);
  EXPECT_EQ(st.min, 1.0);
  EXPECT_EQ(st.max, 3.0);
  EXPECT_FALSE(Statistic::of({nan}).defined());
}

TEST(InitAnalyzer, BadConfigurationThrows) {
  using lora::test::errorOf;
  auto with = [](auto change) {
    auto o = tinyOptions();
    change(o);
    return errorOf([&] { InitializationAnalyzer<double> a(o); });
  };
  EXPECT_CONTAINS(with([](auto& o) { o.trials = 0; }), "expected trials >= 1, got 0");
  EXPECT_CONTAINS(with([](auto& o) { o.rank = 0; }), "expected a rank >= 1, got 0");
  EXPECT_CONTAINS(with([](auto& o) { o.outFeatures = 0; }), "expected out and in features >= 1");
  EXPECT_CONTAINS(with([](auto& o) { o.alpha = -1; }), "expected alpha to be a positive finite");
  EXPECT_CONTAINS(with([](auto& o) { o.batchSize = 0; }), "expected a batch size >= 1, got 0");
  EXPECT_CONTAINS(with([](auto& o) { o.targetRank = 6; }),
                  "expected 0 <= targetRank <= min(out, in) = 5, got 6");
  EXPECT_CONTAINS(with([](auto& o) { o.targetScale = -1; }), "expected a finite targetScale");
  EXPECT_CONTAINS(with([](auto& o) { o.trials = 0; }),
                  "InitializationAnalyzer::InitializationAnalyzer(): ");

  InitializationAnalyzer<double> analyzer(tinyOptions());
  EXPECT_CONTAINS(errorOf([&] { analyzer.compute(); }),
                  "InitializationAnalyzer::compute(): expected at least one initializer");
  EXPECT_CONTAINS(
      errorOf([&] { analyzer.setBaseWeight(MatD::Zero(5, 6)); }),
      "InitializationAnalyzer::setBaseWeight(): expected a 6x5 (out x in) matrix, got 5x6");
  EXPECT_CONTAINS(errorOf([&] { analyzer.setTarget(MatD::Zero(6, 4)); }),
                  "InitializationAnalyzer::setTarget(): expected a 6x5");
  MatD bad = MatD::Zero(6, 5);
  bad(1, 1) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_CONTAINS(errorOf([&] { analyzer.setBaseWeight(bad); }), "expected finite entries");
  EXPECT_FALSE(analyzer.hasBaseWeight());  // nothing was kept
  analyzer.add(lora::init::PeftDefault{});
  EXPECT_CONTAINS(errorOf([&] { analyzer.add(lora::init::PeftDefault{}); }),
                  "expected a new name, got 'peft_default' twice");
  EXPECT_CONTAINS(errorOf([&] { analyzer.add("", lora::init::Gaussian{}); }),
                  "expected a non-empty name");
  EXPECT_EQ(analyzer.initializers().size(), 1u);
  EXPECT_CONTAINS(
      errorOf([&] { (void)analyzer.compute().at("nope"); }),
      "InitializationReport::at(): expected the name of an analyzed initializer, got 'nope'");
}

TEST(InitAnalyzer, MarkdownTableAlignsAndRejectsBadCells) {
  lora::analysis::MarkdownTable t({"init", "‖ΔW‖"});
  t.addRow({"a", "1"}).addRow({"long_name", "22"});
  EXPECT_EQ(t.format(),
            "| init      | ‖ΔW‖ |\n"
            "| --------- | ---: |\n"
            "| a         |    1 |\n"
            "| long_name |   22 |\n");
  EXPECT_CONTAINS(lora::test::errorOf([&] { t.addRow({"x"}); }),
                  "expected a row of 2 cells, got 1");
  EXPECT_CONTAINS(lora::test::errorOf([&] { t.addRow({"x|y", "1"}); }), "without '|'");
}

}  // namespace
