// lora::Rng: the same seed gives the same bits everywhere. The expected values come from an
// independent Python implementation of SplitMix64 + xoshiro256** and the polar method
// (with the C library's log), not from this code.
#include <cmath>
#include <cstdint>
#include <limits>

#include <gtest/gtest.h>

#include "lora/detail/portable_math.hpp"
#include "lora/random.hpp"

namespace {

TEST(Rng, RawOutputMatchesReference) {
  lora::Rng rng(42);
  EXPECT_EQ(rng(), 0x15780b2e0c2ec716ULL);
  EXPECT_EQ(rng(), 0x6104d9866d113a7eULL);
  EXPECT_EQ(rng(), 0xae17533239e499a1ULL);
  EXPECT_EQ(rng(), 0xecb8ad4703b360a1ULL);
}

TEST(Rng, UniformBitsMatchReference) {
  lora::Rng rng(7);
  EXPECT_EQ(rng.uniform01(), 0x1.66b1f5ee9df2ep-1);
  EXPECT_EQ(rng.uniform01(), 0x1.1d70f6593d20ap-2);
  EXPECT_EQ(rng.uniform01(), 0x1.ade3a6932a58fp-1);
}

TEST(Rng, NormalBitsMatchReference) {
  lora::Rng rng(11);
  const double expected[] = {-0x1.6539cafab4c81p-4, -0x1.0a6b7d8b68811p-3, -0x1.93446ac0afd85p+0,
                             -0x1.6407b1dc54509p-2, -0x1.144de0c3c9a4cp-1, -0x1.0196fb1c2115ap-2};
  for (double e : expected) EXPECT_EQ(rng.normal(), e);
}

TEST(Rng, ReseedRestartsTheStream) {
  lora::Rng a(5), b(9);
  const double first = a.normal();
  b.reseed(5);
  EXPECT_EQ(b.normal(), first);
}

TEST(Rng, MomentsOfTheDistributions) {
  lora::Rng rng(123);
  const int n = 200000;
  double su = 0, su2 = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform(-2.0, 3.0);
    ASSERT_GE(u, -2.0);
    ASSERT_LT(u, 3.0);
    su += u;
    su2 += u * u;
    const double z = rng.normal(1.5, 2.0);
    sn += z;
    sn2 += z * z;
  }
  const double mu = su / n, vu = su2 / n - mu * mu;
  EXPECT_NEAR(mu, 0.5, 0.02);
  EXPECT_NEAR(vu, 25.0 / 12.0, 0.03);
  const double mn = sn / n, vn = sn2 / n - mn * mn;
  EXPECT_NEAR(mn, 1.5, 0.02);
  EXPECT_NEAR(vn, 4.0, 0.05);
}

TEST(Rng, FillRejectsBadParameters) {
  lora::Rng rng(1);
  Eigen::MatrixXd m(2, 3);
  m.setConstant(7.0);
  EXPECT_THROW(lora::fillUniform(m, rng, 1.0, -1.0), lora::Error);
  EXPECT_THROW(lora::fillNormal(m, rng, 0.0, -1.0), lora::Error);
  EXPECT_THROW(lora::fillNormal(m, rng, std::numeric_limits<double>::quiet_NaN(), 1.0),
               lora::Error);
  EXPECT_TRUE((m.array() == 7.0).all());  // untouched
  lora::fillUniform(m, rng, -1.0, 1.0);
  EXPECT_TRUE((m.array().abs() < 1.0).all());
}

TEST(PortableLog, AgreesWithTheLibraryToAnUlp) {
  lora::Rng rng(3);
  for (int i = 0; i < 100000; ++i) {
    const double x = std::ldexp(rng.uniform(0.5, 1.0), static_cast<int>(rng() % 200) - 100);
    const double ours = lora::detail::portableLog(x);
    const double ref = std::log(x);
    EXPECT_NEAR(ours, ref,
                2.0 * std::numeric_limits<double>::epsilon() * std::max(1.0, std::abs(ref)))
        << "x = " << x;
  }
  EXPECT_EQ(lora::detail::portableLog(1.0), 0.0);
  EXPECT_TRUE(std::isinf(lora::detail::portableLog(0.0)));
  EXPECT_TRUE(std::isnan(lora::detail::portableLog(-1.0)));
}

}  // namespace
