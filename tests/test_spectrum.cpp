// Rank rules on a spectrum.
#include <limits>

#include <gtest/gtest.h>

#include "lora/linalg/spectrum.hpp"

namespace {

TEST(EnergyRank, SmallestPrefixWithTheEnergy) {
  Eigen::VectorXd sigma(4);
  sigma << 3, 2, 1, 0.5;                                // energies 9, 4, 1, 0.25 of 14.25
  EXPECT_EQ(lora::linalg::energyRank(sigma, 0.5), 1);   // 9 / 14.25 = 0.63
  EXPECT_EQ(lora::linalg::energyRank(sigma, 0.9), 2);   // 13 / 14.25 = 0.912
  EXPECT_EQ(lora::linalg::energyRank(sigma, 0.95), 3);  // 14 / 14.25 = 0.982
  EXPECT_EQ(lora::linalg::energyRank(sigma, 0.99), 4);
  EXPECT_EQ(lora::linalg::energyRank(sigma, 1.0), 4);
  EXPECT_EQ(lora::linalg::energyRank(Eigen::VectorXf::Zero(3), 0.9), 1);
}

TEST(EnergyRank, BadInput) {
  Eigen::VectorXd sigma(2);
  sigma << 1, 0.5;
  EXPECT_THROW(lora::linalg::energyRank(sigma, 0.0), lora::Error);
  EXPECT_THROW(lora::linalg::energyRank(sigma, 1.5), lora::Error);
  EXPECT_THROW(lora::linalg::energyRank(Eigen::VectorXd(), 0.9), lora::Error);
  sigma(1) = std::numeric_limits<double>::quiet_NaN();
  try {
    lora::linalg::energyRank(sigma, 0.9);
    FAIL();
  } catch (const lora::Error& e) {
    EXPECT_NE(std::string(e.what()).find("energyRank(): expected finite non-negative"),
              std::string::npos);
  }
}

}  // namespace
