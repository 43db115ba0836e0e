// Layers loaded from the PEFT fixtures compute what PEFT computed: forward on the recorded cases,
// merge_and_unload, and an 8-step float64 SGD trace. Reads LORA_PEFT_FIXTURES; discovers modules,
// shapes, ranks and values from the files.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/init/gaussian.hpp"
#include "lora/io/peft_adapter.hpp"
#include "support/fixtures.hpp"
#include "support/json.hpp"
#include "support/matrices.hpp"

namespace {

namespace fs = std::filesystem;
using Mat = Eigen::MatrixXf;
using Vec = Eigen::VectorXf;

using lora::test::relErr;

using lora::test::readJson;

class PeftVariant : public ::testing::TestWithParam<std::string> {
 protected:
  fs::path dir() const { return lora::test::fixtureDir() / GetParam(); }
};

// The base weight and bias of a module from a state-dict file (bias may be absent).
struct Linear {
  Mat W;
  Vec b;
};
Linear linearOf(const lora::SafeTensorsReader& st, const std::string& module) {
  Linear l;
  l.W = st.matrix<float>(module + ".weight");
  if (st.contains(module + ".bias")) l.b = st.vector<float>(module + ".bias");
  return l;
}
void bind(lora::Layer<float>& layer, Linear& l) {
  if (l.b.size() > 0) {
    layer.bindBase(l.W, l.b);
  } else {
    layer.bindBase(l.W);
  }
}

TEST_P(PeftVariant, ForwardMatchesPeftOnEveryModule) {
  ASSERT_TRUE(fs::exists(dir() / "adapter_config.json"))
      << "no variant " << GetParam() << " in " << lora::test::fixtureDir();
  auto adapter = lora::PeftAdapter<float>::load(dir());
  const auto base =
      lora::SafeTensorsReader::open(lora::test::fixtureDir() / "base_model.safetensors");
  const auto residual = lora::SafeTensorsReader::open(dir() / "residual.safetensors");
  const auto cases = lora::SafeTensorsReader::open(dir() / "cases.safetensors");
  const auto meta = readJson(dir() / "meta.json");
  ASSERT_EQ(adapter.size(), meta["ranks"].size());
  for (auto& [name, layer] : adapter) {
    SCOPED_TRACE(name);
    EXPECT_EQ(layer.rank(), meta["ranks"][name].get<int>());
    EXPECT_NEAR(layer.scaling(), meta["scalings"][name].get<double>(), 1e-12 * layer.scaling());
    EXPECT_EQ(layer.isDora(), adapter.config().useDora);
    Linear l = linearOf(base, name);
    l.W = residual.matrix<float>(name + ".weight");  // the base weight PEFT's layer held
    bind(layer, l);
    const Mat x = cases.matrix<float>(name + ".x");
    const Mat y = cases.matrix<float>(name + ".y");
    const Mat got = layer.forward(x);
    EXPECT_LE(relErr(got.cast<double>(), y.cast<double>()), 1e-5);
  }
}

TEST_P(PeftVariant, MergeMatchesMergeAndUnload) {
  ASSERT_TRUE(fs::exists(dir() / "adapter_config.json"))
      << "no variant " << GetParam() << " in " << lora::test::fixtureDir();
  auto adapter = lora::PeftAdapter<float>::load(dir());
  const auto residual = lora::SafeTensorsReader::open(dir() / "residual.safetensors");
  const auto base =
      lora::SafeTensorsReader::open(lora::test::fixtureDir() / "base_model.safetensors");
  const auto merged = lora::SafeTensorsReader::open(dir() / "merged.safetensors");
  int checked = 0;
  for (const std::string& key : merged.names()) {
    const std::string suffix = ".weight";
    if (!key.ends_with(suffix)) continue;
    const std::string module = key.substr(0, key.size() - suffix.size());
    const Mat want = merged.matrix<float>(key);
    if (!adapter.contains(module)) {  // not adapted: merge leaves it as it was
      EXPECT_EQ(base.matrix<float>(key), want) << key;
      continue;
    }
    SCOPED_TRACE(module);
    Linear l = linearOf(base, module);
    l.W = residual.matrix<float>(key);
    auto& layer = adapter.layer(module);
    bind(layer, l);
    layer.merge();
    EXPECT_LE(relErr(l.W.cast<double>(), want.cast<double>()), 1e-5);
    // The merged layer's forward (merged W, bound bias) is PEFT's merged model's linear map.
    const Mat x = lora::test::gaussian<float>(3, want.cols(), 11);
    Mat wantY = x * want.transpose();
    if (merged.contains(module + ".bias"))
      wantY.rowwise() += merged.vector<float>(module + ".bias").transpose();
    EXPECT_LE(relErr(layer.forward(x).cast<double>(), wantY.cast<double>()), 1e-5);
    layer.unmerge();
    EXPECT_LE(relErr(l.W.cast<double>(), residual.matrix<double>(key)), 1e-5);
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(adapter.size()));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PeftVariant,
                         ::testing::Values("default", "default_trained", "rslora_patterns",
                                           "gaussian", "dora"));

TEST(PeftTrace, SgdReproducesEveryLossAndTheFinalAdapter) {
  const fs::path dir = lora::test::fixtureDir() / "trace_sgd";
  const auto meta = readJson(dir / "meta.json");
  ASSERT_EQ(meta["hyper"]["optimizer"], "SGD");
  ASSERT_EQ(meta["hyper"]["momentum"].get<double>(), 0.0);
  ASSERT_EQ(meta["hyper"]["weight_decay"].get<double>(), 0.0);
  const double lr = meta["hyper"]["lr"].get<double>();
  const auto mode =
      meta["use_rslora"].get<bool>() ? lora::ScalingMode::RsLora : lora::ScalingMode::Standard;
  const double alpha = meta["lora_alpha"].get<double>();
  const auto base = lora::SafeTensorsReader::open(dir / "base_model.safetensors");
  const auto init = lora::SafeTensorsReader::open(dir / "init_adapter.safetensors");
  const auto finalAdapter = lora::SafeTensorsReader::open(dir / "final_adapter.safetensors");
  const auto data = lora::SafeTensorsReader::open(dir / "data.safetensors");
  const Eigen::MatrixXd x = data.matrix<double>("x"), y = data.matrix<double>("y");

  const std::vector<std::string> names = {"fc1", "fc2"};
  std::vector<Eigen::MatrixXd> W;
  std::vector<Eigen::VectorXd> b;
  std::vector<lora::Layer<double>> layers;
  for (const auto& n : names) {
    W.push_back(base.matrix<double>(n + ".weight"));
    b.push_back(base.vector<double>(n + ".bias"));
    layers.push_back(lora::Layer<double>::fromFactors(init.matrix<double>(n + ".lora_A.weight"),
                                                      init.matrix<double>(n + ".lora_B.weight"),
                                                      alpha, mode));
  }
  for (size_t i = 0; i < names.size(); ++i) layers[i].bindBase(W[i], b[i]);
  EXPECT_NEAR(layers[0].scaling(), meta["scaling"].get<double>(), 1e-15);

  const auto losses = meta["losses"].get<std::vector<double>>();
  const int steps = meta["steps"].get<int>();
  ASSERT_EQ(static_cast<int>(losses.size()), steps + 1);
  const auto lossAt = [&](Eigen::MatrixXd& pre, Eigen::MatrixXd& h, Eigen::MatrixXd& out) {
    pre = layers[0].forward(x);
    h = pre.cwiseMax(0.0);
    out = layers[1].forward(h);
    return (out - y).squaredNorm() / static_cast<double>(out.size());
  };
  Eigen::MatrixXd pre, h, out, dH;
  for (int step = 0; step <= steps; ++step) {
    const double loss = lossAt(pre, h, out);
    EXPECT_NEAR(loss, losses[step], 1e-10 * losses[step]) << "step " << step;
    if (step == steps) break;
    const Eigen::MatrixXd dOut = (2.0 / static_cast<double>(out.size())) * (out - y);
    layers[1].backward(h, dOut, dH, lora::GradMode::Overwrite);
    const Eigen::MatrixXd dPre = dH.cwiseProduct((pre.array() > 0.0).cast<double>().matrix());
    layers[0].backward(x, dPre, lora::GradMode::Overwrite);
    for (auto& l : layers) l.updateFactors(-lr * l.gradA(), -lr * l.gradB());
  }
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_LE(relErr(layers[i].A(), finalAdapter.matrix<double>(names[i] + ".lora_A.weight")),
              1e-10);
    EXPECT_LE(relErr(layers[i].B(), finalAdapter.matrix<double>(names[i] + ".lora_B.weight")),
              1e-10);
  }
}

}  // namespace

namespace {

// PEFT's init_lora_weights="gaussian" right after initialisation: A ~ N(0, (1/r)²), B = 0, and
// the base weight untouched. Pooled over every module (A·r is standard normal): the pooled std is
// within 6 standard errors of 1, so 1/r is told apart from e.g. kaiming's 1/sqrt(3·in).
// init::Gaussian's draws for the same shapes pass the same check.
TEST(PeftLayerInit, GaussianInitStatisticsMatchPeft) {
  const fs::path dir = lora::test::fixtureDir() / "gaussian";
  const auto config = lora::AdapterConfig::load(dir);
  const auto init = lora::SafeTensorsReader::open(dir / "init_adapter.safetensors");
  const auto base =
      lora::SafeTensorsReader::open(lora::test::fixtureDir() / "base_model.safetensors");
  const auto residual = lora::SafeTensorsReader::open(dir / "residual.safetensors");
  const std::string suffix = ".lora_A.weight";
  std::vector<double> peft, ours;
  lora::Rng rng(2024);
  for (const std::string& key : init.names()) {
    if (key.size() <= suffix.size() ||
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string module = key.substr(0, key.size() - suffix.size());
    SCOPED_TRACE(module);
    const int r = config.rankFor(module);
    const Eigen::MatrixXd A = init.matrix<double>(key);
    const Eigen::MatrixXd B = init.matrix<double>(module + ".lora_B.weight");
    const Eigen::MatrixXd W = base.matrix<double>(module + ".weight");
    ASSERT_EQ(A.rows(), r);
    ASSERT_EQ(A.cols(), W.cols());
    ASSERT_EQ(B.rows(), W.rows());
    EXPECT_EQ(B.norm(), 0.0);
    EXPECT_TRUE(residual.matrix<double>(module + ".weight") == W);
    for (Eigen::Index i = 0; i < A.size(); ++i) peft.push_back(A.data()[i] * r);
    lora::init::Request<double> req;
    req.outFeatures = W.rows();
    req.inFeatures = W.cols();
    req.rank = r;
    const auto f = lora::init::Gaussian{}.initialize(req, rng);
    EXPECT_EQ(f.B.norm(), 0.0);
    for (Eigen::Index i = 0; i < f.A.size(); ++i) ours.push_back(f.A.data()[i] * r);
  }
  ASSERT_GE(peft.size(), 1000u) << "too few draws in the fixture to test a distribution";
  for (const auto* sample : {&peft, &ours}) {
    const Eigen::Map<const Eigen::ArrayXd> x(sample->data(),
                                             static_cast<Eigen::Index>(sample->size()));
    const double n = static_cast<double>(x.size());
    const double mean = x.mean();
    const double std = std::sqrt((x - mean).square().sum() / n);
    EXPECT_NEAR(mean, 0.0, 6 / std::sqrt(n));
    EXPECT_NEAR(std, 1.0, 6 / std::sqrt(2 * n));
  }
}

}  // namespace
