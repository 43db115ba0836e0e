// Uses the public API through the installed (or added) target; exits non-zero on a wrong result.
#include <cstdio>

#include <lora/io/adapter_config.hpp>
#include <lora/lora.hpp>

int main() {
  lora::setNumThreads(2);  // links the thread setting (OpenMP, OpenBLAS) as a consumer does
  const bool threadsOk = lora::numThreads() == 2;
  Eigen::MatrixXf W = Eigen::MatrixXf::Identity(8, 6);
  auto layer = lora::Layer<float>::fromFactors(Eigen::MatrixXf::Ones(2, 6),
                                               Eigen::MatrixXf::Ones(8, 2), 4.0);
  layer.bindBase(W);
  const Eigen::MatrixXf y = layer.forward(Eigen::MatrixXf::Ones(1, 6));
  // y = 1 (identity part, for the first 6 outputs) + s * 2 * 6 with s = 4 / 2.
  const bool forwardOk = std::abs(y(0, 0) - 25.0f) < 1e-4f && std::abs(y(0, 7) - 24.0f) < 1e-4f;
  layer.resize(1);
  const bool resizeOk = layer.rank() == 1 &&
                        std::abs(layer.forward(Eigen::MatrixXf::Ones(1, 6))(0, 7) - 24.0f) < 1e-3f;
  const auto cfg =
      lora::AdapterConfig::parse(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8})", "inline");
  const bool configOk = cfg.rankFor("layers.0.q_proj") == 4;
  const Eigen::VectorXf sigma =
      lora::linalg::singularValues(Eigen::MatrixXf::Identity(5, 3) * 3.0f);
  const bool svdOk = std::abs(sigma(0) - 3.0f) < 1e-5f && std::abs(sigma(2) - 3.0f) < 1e-5f;
  std::printf("consumer: threads %s, forward %s, resize %s, config %s, svd %s\n",
              threadsOk ? "ok" : "WRONG", forwardOk ? "ok" : "WRONG", resizeOk ? "ok" : "WRONG",
              configOk ? "ok" : "WRONG", svdOk ? "ok" : "WRONG");
  return threadsOk && forwardOk && resizeOk && configOk && svdOk ? 0 : 1;
}
