// lora/threads.hpp: the thread count (setNumThreads, ScopedNumThreads, LORA_NUM_THREADS) reaches
// Eigen, bad counts are errors, and the heavy paths give the same answers on one thread and on
// several. (The tool's --threads and LORA_NUM_THREADS: test_cli_usage.cpp.)

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "lora/error.hpp"
#include "lora/layer.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/linalg/symmetric_eigen.hpp"
#include "lora/threads.hpp"
#include "support/matrices.hpp"

namespace {

using lora::test::gaussian;

// The default count: LORA_NUM_THREADS when valid, else every core.
int expectedDefault() {
  const char* text = std::getenv("LORA_NUM_THREADS");
  std::string error;
  const int n = text != nullptr ? lora::detail::parseThreadCount(text, error) : 0;
  return n > 0 ? n : lora::hardwareThreads();
}

TEST(Threads, ParseAcceptsOnlyAPositiveCount) {
  std::string error;
  EXPECT_EQ(lora::detail::parseThreadCount("4", error), 4);
  EXPECT_TRUE(error.empty());
  EXPECT_EQ(lora::detail::parseThreadCount("1", error), 1);
  EXPECT_EQ(lora::detail::parseThreadCount("65536", error), 65536);
  for (const char* bad :
       {"", "0", "-2", "+3", " 3", "3 ", "3x", "abc", "1.5", "65537", "99999999999999999999999"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(lora::detail::parseThreadCount(bad, error), 0);
    EXPECT_NE(error.find("LORA_NUM_THREADS: expected an integer from 1 to 65536"),
              std::string::npos)
        << error;
    EXPECT_NE(error.find(std::string("got '") + bad + "'"), std::string::npos) << error;
  }
}

TEST(Threads, SetReachesEigenAndZeroRestoresTheDefault) {
  const int before = lora::numThreads();
  EXPECT_GE(lora::hardwareThreads(), 1);
  lora::setNumThreads(1);
  EXPECT_EQ(lora::numThreads(), 1);
  EXPECT_EQ(Eigen::nbThreads(), 1);
  lora::setNumThreads(3);
  EXPECT_EQ(lora::numThreads(), 3);
#if defined(_OPENMP)
  EXPECT_EQ(Eigen::nbThreads(), 3);
#endif
  lora::setNumThreads(0);
  EXPECT_EQ(lora::numThreads(), expectedDefault());
  lora::setNumThreads(before);
}

TEST(Threads, NegativeCountIsAnErrorAndChangesNothing) {
  lora::ScopedNumThreads scope(2);
  try {
    lora::setNumThreads(-1);
    FAIL() << "no error";
  } catch (const lora::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("lora::setNumThreads(): expected a thread count >= 0"), std::string::npos)
        << m;
    EXPECT_NE(m.find("got -1"), std::string::npos) << m;
  }
  EXPECT_EQ(lora::numThreads(), 2);
}

TEST(Threads, ScopesNestAndRestore) {
  const int before = lora::numThreads();
  {
    lora::ScopedNumThreads outer(1);
    EXPECT_EQ(lora::numThreads(), 1);
    {
      lora::ScopedNumThreads inner(2);
      EXPECT_EQ(lora::numThreads(), 2);
    }
    EXPECT_EQ(lora::numThreads(), 1);
  }
  EXPECT_EQ(lora::numThreads(), before);
  EXPECT_TRUE(lora::threadEnvironmentError().empty() || std::getenv("LORA_NUM_THREADS") != nullptr);
}

// Products big enough for Eigen to split them across threads; the answers must not depend on it.
TEST(Threads, HeavyPathsAgreeOnOneAndTwoThreads) {
  const Eigen::MatrixXf W = gaussian<float>(384, 320, 1);
  const Eigen::MatrixXf X = gaussian<float>(256, 320, 2);
  const Eigen::MatrixXf G = gaussian<float>(256, 384, 3);
  const Eigen::MatrixXf A = gaussian<float>(24, 320, 4, 0.1);
  const Eigen::MatrixXf B = gaussian<float>(384, 24, 5, 0.1);
  struct Result {
    Eigen::MatrixXf Y, dX, gA, gB, S;
    Eigen::VectorXd sigma, eig;
  };
  auto run = [&](int threads) {
    lora::ScopedNumThreads scope(threads);
    auto layer = lora::Layer<float>::fromFactors(A, B, 16.0);
    layer.bindBase(W);
    Result r;
    r.Y = layer.forward(X);
    layer.backward(X, G, r.dX);
    r.gA = layer.gradA();
    r.gB = layer.gradB();
    const Eigen::MatrixXd M = gaussian<double>(300, 200, 6);
    r.sigma = lora::linalg::denseSVD(M).S;
    r.eig = lora::linalg::symmetricEigen(Eigen::MatrixXd(M.transpose() * M), false).values;
    r.S = lora::linalg::FactoredSVD<float>(B, A, 2.0f).singularValues();
    return r;
  };
  const Result one = run(1), two = run(2);
  auto close = [](const auto& a, const auto& b, double tol) {
    return (a - b).norm() <= tol * std::max(1.0, double(b.norm()));
  };
  EXPECT_TRUE(close(one.Y, two.Y, 1e-5));
  EXPECT_TRUE(close(one.dX, two.dX, 1e-5));
  EXPECT_TRUE(close(one.gA, two.gA, 1e-5));
  EXPECT_TRUE(close(one.gB, two.gB, 1e-5));
  EXPECT_TRUE(close(one.S, two.S, 1e-5));
  EXPECT_TRUE(close(one.sigma, two.sigma, 1e-12));
  EXPECT_TRUE(close(one.eig, two.eig, 1e-12));
}

}  // namespace
