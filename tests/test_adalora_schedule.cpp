// AdaLoRA's budget schedule against PEFT's RankAllocator.budget_schedule (fixture
// adalora_schedule.json, read from LORA_PEFT_FIXTURES).
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/rank/adalora_schedule.hpp"
#include "support/errors.hpp"
#include "support/fixtures.hpp"

namespace {

using lora::test::errorOf;

TEST(AdaLoraSchedule, MatchesPeftAtEveryStep) {
  std::ifstream in(lora::test::fixtureDir() / "adalora_schedule.json");
  ASSERT_TRUE(in) << "no adalora_schedule.json in " << lora::test::fixtureDir();
  const auto j = nlohmann::json::parse(in);
  const auto& c = j["config"];
  lora::rank::AdaLoraSchedule s{.initRank = c["init_r"].get<Eigen::Index>(),
                                .targetRank = c["target_r"].get<Eigen::Index>(),
                                .tinit = c["tinit"].get<Eigen::Index>(),
                                .tfinal = c["tfinal"].get<Eigen::Index>(),
                                .deltaT = c["deltaT"].get<Eigen::Index>(),
                                .totalStep = c["total_step"].get<Eigen::Index>(),
                                .modules = 1};
  // The number of adapted modules is what PEFT's initial budget implies.
  s.modules = j["init_bgt"].get<Eigen::Index>() / s.initRank;
  ASSERT_EQ(s.initialBudget(), j["init_bgt"].get<Eigen::Index>());
  ASSERT_EQ(s.targetBudget(), j["target_bgt"].get<Eigen::Index>());
  ASSERT_FALSE(j["schedule"].empty());
  for (const auto& row : j["schedule"]) {
    const auto step = row[0].get<Eigen::Index>();
    const auto got = s.at(step);
    EXPECT_EQ(got.budget, row[1].get<Eigen::Index>()) << "step " << step;
    EXPECT_EQ(got.mask, row[2].get<bool>()) << "step " << step;
  }
}

TEST(AdaLoraScheduleErrors, RefusesImpossibleSchedules) {
  lora::rank::AdaLoraSchedule s{.initRank = 12,
                                .targetRank = 4,
                                .tinit = 50,
                                .tfinal = 50,
                                .deltaT = 5,
                                .totalStep = 100,
                                .modules = 3};
  EXPECT_CONTAINS(errorOf([&] { (void)s.at(3); }),
                  "AdaLoraSchedule::validate(): expected totalStep > tinit + tfinal");
  s.tinit = 10;
  EXPECT_CONTAINS(errorOf([&] { (void)s.at(-1); }),
                  "AdaLoraSchedule::at(): expected a step >= 0, got -1");
  s.deltaT = 0;
  EXPECT_CONTAINS(errorOf([&] { (void)s.at(3); }), "deltaT >= 1, got 0");
}

}  // namespace
