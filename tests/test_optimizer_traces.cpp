// The library's optimizers reproduce PEFT + torch training traces in float64: every loss and the
// final adapter of trace_sgd (torch.optim.SGD) and trace_adamw_rslora (torch.optim.AdamW, rsLoRA)
// within 1e-10 relative. Reads LORA_PEFT_FIXTURES; the model layout, modules, ranks, alpha,
// scaling mode and hyperparameters all come from the files.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lora/io/safetensors.hpp"
#include "lora/layer.hpp"
#include "lora/train/optimizer.hpp"
#include "support/fixtures.hpp"
#include "support/matrices.hpp"

namespace {

namespace fs = std::filesystem;
using MatD = Eigen::MatrixXd;

using lora::test::relErr;

// A trace: the two-layer model outer(relu(inner(x))), both layers LoRA-adapted.
struct Trace {
  nlohmann::json meta;
  std::vector<std::string> names;  // {inner, outer}
  std::vector<MatD> W;
  std::vector<Eigen::VectorXd> b;
  std::vector<lora::Layer<double>> layers;
  MatD x, y;
  fs::path dir;
};

Trace loadTrace(const std::string& variant) {
  Trace t;
  t.dir = lora::test::fixtureDir() / variant;
  std::ifstream in(t.dir / "meta.json");
  if (!in) throw std::runtime_error("no " + (t.dir / "meta.json").string());
  t.meta = nlohmann::json::parse(in);
  // "fc2(relu(fc1(x))), ..." names the modules and their order.
  std::smatch m;
  const std::string model = t.meta["model"].get<std::string>();
  if (!std::regex_search(model, m, std::regex(R"(([\w.]+)\(relu\(([\w.]+)\(x\)\)\))")))
    throw std::runtime_error("unrecognised model description: " + model);
  t.names = {m[2].str(), m[1].str()};
  const auto mode =
      t.meta["use_rslora"].get<bool>() ? lora::ScalingMode::RsLora : lora::ScalingMode::Standard;
  const double alpha = t.meta["lora_alpha"].get<double>();
  const auto base = lora::SafeTensorsReader::open(t.dir / "base_model.safetensors");
  const auto init = lora::SafeTensorsReader::open(t.dir / "init_adapter.safetensors");
  const auto data = lora::SafeTensorsReader::open(t.dir / "data.safetensors");
  t.x = data.matrix<double>("x");
  t.y = data.matrix<double>("y");
  for (const auto& n : t.names) {
    t.W.push_back(base.matrix<double>(n + ".weight"));
    t.b.push_back(base.vector<double>(n + ".bias"));
    t.layers.push_back(lora::Layer<double>::fromFactors(init.matrix<double>(n + ".lora_A.weight"),
                                                        init.matrix<double>(n + ".lora_B.weight"),
                                                        alpha, mode));
  }
  for (std::size_t i = 0; i < t.names.size(); ++i) t.layers[i].bindBase(t.W[i], t.b[i]);
  return t;
}

// Trains with opt as torch did (zero_grad, loss, backward, step) and checks every loss and the
// final adapter against the trace.
template <typename Opt>
void reproduce(Trace& t, Opt& opt) {
  ASSERT_NEAR(t.layers[0].scaling(), t.meta["scaling"].get<double>(), 1e-15);
  for (std::size_t i = 0; i < t.layers.size(); ++i) opt.add(t.layers[i], t.names[i]);
  const auto losses = t.meta["losses"].get<std::vector<double>>();
  const int steps = t.meta["steps"].get<int>();
  ASSERT_EQ(static_cast<int>(losses.size()), steps + 1);
  MatD pre, h, out, dH;
  double worstLoss = 0, worstFactor = 0;
  for (int step = 0; step <= steps; ++step) {
    pre = t.layers[0].forward(t.x);
    h = pre.cwiseMax(0.0);
    out = t.layers[1].forward(h);
    const double loss = (out - t.y).squaredNorm() / static_cast<double>(out.size());
    EXPECT_NEAR(loss, losses[step], 1e-10 * losses[step]) << "step " << step;
    worstLoss = std::max(worstLoss, std::abs(loss - losses[step]) / losses[step]);
    if (step == steps) break;
    const MatD dOut = (2.0 / static_cast<double>(out.size())) * (out - t.y);
    t.layers[1].backward(h, dOut, dH, lora::GradMode::Overwrite);
    const MatD dPre = dH.cwiseProduct((pre.array() > 0.0).cast<double>().matrix());
    t.layers[0].backward(t.x, dPre, lora::GradMode::Overwrite);
    const auto report = opt.step(loss);
    EXPECT_EQ(report.step, step + 1);
  }
  const auto finalAdapter = lora::SafeTensorsReader::open(t.dir / "final_adapter.safetensors");
  for (std::size_t i = 0; i < t.names.size(); ++i) {
    SCOPED_TRACE(t.names[i]);
    const double errA =
        relErr(t.layers[i].A(), finalAdapter.matrix<double>(t.names[i] + ".lora_A.weight"));
    const double errB =
        relErr(t.layers[i].B(), finalAdapter.matrix<double>(t.names[i] + ".lora_B.weight"));
    EXPECT_LE(errA, 1e-10);
    EXPECT_LE(errB, 1e-10);
    worstFactor = std::max({worstFactor, errA, errB});
  }
  std::printf(
      "  %d steps: worst loss relative error %.3g, worst final factor relative error %.3g\n", steps,
      worstLoss, worstFactor);
  ::testing::Test::RecordProperty("worst_loss_rel_err", std::to_string(worstLoss));
  ::testing::Test::RecordProperty("worst_factor_rel_err", std::to_string(worstFactor));
}

double hyper(const nlohmann::json& meta, const char* key, double fallback) {
  const auto& h = meta["hyper"];
  return h.contains(key) ? h[key].get<double>() : fallback;
}

TEST(OptimizerTrace, SgdReproducesTorchSgd) {
  Trace t = loadTrace("trace_sgd");
  ASSERT_EQ(t.meta["hyper"]["optimizer"], "SGD");
  lora::train::Sgd rule{.lr = hyper(t.meta, "lr", 0),
                        .momentum = hyper(t.meta, "momentum", 0),
                        .dampening = hyper(t.meta, "dampening", 0),
                        .weightDecay = hyper(t.meta, "weight_decay", 0),
                        .nesterov = t.meta["hyper"].value("nesterov", false)};
  lora::train::Optimizer<double, lora::train::Sgd> opt(rule);
  reproduce(t, opt);
}

TEST(OptimizerTrace, AdamWReproducesTorchAdamW) {
  Trace t = loadTrace("trace_adamw_rslora");
  ASSERT_EQ(t.meta["hyper"]["optimizer"], "AdamW");
  const auto betas = t.meta["hyper"]["betas"].get<std::vector<double>>();
  ASSERT_EQ(betas.size(), 2u);
  lora::train::AdamW rule{.lr = hyper(t.meta, "lr", 0),
                          .beta1 = betas[0],
                          .beta2 = betas[1],
                          .eps = hyper(t.meta, "eps", 1e-8),
                          .weightDecay = hyper(t.meta, "weight_decay", 1e-2)};
  lora::train::Optimizer<double, lora::train::AdamW> opt(rule);
  reproduce(t, opt);
}

// Clipping with a threshold above the trace's gradient norms, and LoRA+ with ratio 1, change
// nothing: the same trace, to the same tolerance.
TEST(OptimizerTrace, InactiveClippingAndUnitLoraPlusKeepTheAdamWTrace) {
  Trace t = loadTrace("trace_adamw_rslora");
  const auto betas = t.meta["hyper"]["betas"].get<std::vector<double>>();
  lora::train::AdamW rule{.lr = hyper(t.meta, "lr", 0),
                          .beta1 = betas[0],
                          .beta2 = betas[1],
                          .eps = hyper(t.meta, "eps", 1e-8),
                          .weightDecay = hyper(t.meta, "weight_decay", 1e-2)};
  lora::train::Optimizer<double, lora::train::AdamW> opt(
      rule, {.maxGradNorm = 1e30, .loraPlusRatio = 1.0});
  reproduce(t, opt);
}

}  // namespace
