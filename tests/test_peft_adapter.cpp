// lora::PeftAdapter on adapter folders built in the test: what loads, and every inconsistency
// that must be refused with a message naming the module.
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "lora/io/peft_adapter.hpp"
#include "support/matrices.hpp"

namespace {

namespace fs = std::filesystem;
using lora::test::gaussian;
using MatF = Eigen::MatrixXf;

class PeftAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    m_dir = fs::temp_directory_path() /
            ("lorapp_adapter_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
             "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(m_dir);
    fs::create_directories(m_dir);
  }
  void TearDown() override { fs::remove_all(m_dir); }

  void writeConfig(const std::string& json) const {
    std::ofstream(m_dir / "adapter_config.json") << json;
  }
  void expectLoadError(std::initializer_list<std::string> fragments) const {
    try {
      (void)lora::PeftAdapter<float>::load(m_dir);
      ADD_FAILURE() << "loaded an inconsistent adapter";
    } catch (const lora::Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("PeftAdapter::load()"), std::string::npos) << what;
      for (const auto& f : fragments) EXPECT_NE(what.find(f), std::string::npos) << what;
    }
  }
  static std::string key(const std::string& module, const std::string& part) {
    return "base_model.model." + module + "." + part;
  }

  fs::path m_dir;
};

constexpr const char* kConfig =
    R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_rslora": false,
  "target_modules": ["q_proj", "v_proj"], "rank_pattern": {"v_proj": 2}, "alpha_pattern": {}})";

TEST_F(PeftAdapterTest, LoadsModulesWithPatternRanks) {
  writeConfig(kConfig);
  const MatF qA = gaussian<float>(4, 6, 1), qB = gaussian<float>(5, 4, 2);
  const MatF vA = gaussian<float>(2, 6, 3), vB = gaussian<float>(3, 2, 4);
  lora::SafeTensorsWriter w;
  w.add(key("layers.0.attn.q_proj", "lora_A.weight"), qA);
  w.add(key("layers.0.attn.q_proj", "lora_B.weight"), qB);
  w.add(key("layers.0.attn.v_proj", "lora_A.weight"), vA);
  w.add(key("layers.0.attn.v_proj", "lora_B.weight"), vB);
  w.write(m_dir / "adapter_model.safetensors");
  auto adapter = lora::PeftAdapter<float>::load(m_dir);
  ASSERT_EQ(adapter.size(), 2u);
  const auto& q = adapter.layer("layers.0.attn.q_proj");
  EXPECT_EQ(q.A(), qA);
  EXPECT_EQ(q.B(), qB);
  EXPECT_DOUBLE_EQ(q.scaling(), 2.0);
  const auto& v = adapter.layer("base_model.model.layers.0.attn.v_proj");
  EXPECT_EQ(v.rank(), 2);
  EXPECT_DOUBLE_EQ(v.scaling(), 4.0);
  EXPECT_FALSE(v.isDora());
  try {
    (void)adapter.layer("layers.0.attn.k_proj");
    ADD_FAILURE() << "expected lora::Error for a module the adapter does not have";
  } catch (const lora::Error& e) {
    EXPECT_NE(std::string(e.what()).find("PeftAdapter::layer(): expected a module of this "
                                         "adapter, got 'layers.0.attn.k_proj'"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(PeftAdapterTest, RefusesInconsistentFolders) {
  writeConfig(kConfig);
  const auto write = [&](const std::function<void(lora::SafeTensorsWriter&)>& fill) {
    lora::SafeTensorsWriter w;
    fill(w);
    w.write(m_dir / "adapter_model.safetensors");
  };
  write([&](auto& w) { w.add(key("m.q_proj", "lora_A.weight"), gaussian<float>(4, 6, 1)); });
  expectLoadError({"m.q_proj", "lora_B"});

  write([&](auto& w) {
    w.add(key("m.q_proj", "lora_A.weight"), gaussian<float>(3, 6, 1));
    w.add(key("m.q_proj", "lora_B.weight"), gaussian<float>(5, 3, 1));
  });
  expectLoadError({"rank 4", "m.q_proj", "rank 3"});

  write([&](auto& w) {
    w.add(key("m.q_proj", "lora_A.weight"), gaussian<float>(4, 6, 1));
    w.add(key("m.q_proj", "lora_B.weight"), gaussian<float>(5, 3, 1));
  });
  expectLoadError({"same r", "4x6", "5x3"});

  write([&](auto& w) {
    w.add(key("m.q_proj", "lora_A.weight"), gaussian<float>(4, 6, 1));
    w.add(key("m.q_proj", "lora_B.weight"), gaussian<float>(5, 4, 1));
    w.addVector(key("m.q_proj", "lora_magnitude_vector"), gaussian<float>(5, 1, 1));
  });
  expectLoadError({"use_dora", "m.q_proj"});

  write([&](auto& w) { w.add(key("m.embed", "lora_embedding_A"), gaussian<float>(4, 6, 1)); });
  expectLoadError({"lora_embedding_A", "not supported"});

  write([&](auto& w) { w.add("m.q_proj.lora_A.weight", gaussian<float>(4, 6, 1)); });
  expectLoadError({"base_model.model.", "m.q_proj.lora_A.weight"});

  writeConfig(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_dora": true})");
  write([&](auto& w) {
    w.add(key("m.q_proj", "lora_A.weight"), gaussian<float>(4, 6, 1));
    w.add(key("m.q_proj", "lora_B.weight"), gaussian<float>(5, 4, 1));
  });
  expectLoadError({"lora_magnitude_vector", "m.q_proj"});

  fs::remove(m_dir / "adapter_model.safetensors");
  EXPECT_THROW((void)lora::PeftAdapter<float>::load(m_dir), lora::Error);
}

}  // namespace
