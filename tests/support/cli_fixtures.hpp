#pragma once
// Test support for the `lora` subcommand tests on the PEFT fixtures: fixture discovery, dense
// reference computations, synthetic adapters, and the checks every error case shares.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <Eigen/Core>

#include "lora/io/adapter_config.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/io/peft_writer.hpp"
#include "lora/io/safetensors.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "support/cli.hpp"
#include "support/fixtures.hpp"

namespace lora::test::cli_fixtures {

namespace fs = std::filesystem;
using lora::AdapterConfig;
using lora::DType;
using lora::PeftAdapterFile;
using lora::SafeTensorsReader;

inline std::string q(const fs::path& p) {
  return shellQuote(p.string());
}

using lora::test::variantDirs;

inline fs::path baseModel() {
  return lora::test::fixtureDir() / "base_model.safetensors";
}

inline bool mutatesBase(const AdapterConfig& c) {
  return c.initLoraWeights.starts_with("pissa") || c.initLoraWeights == "olora";
}

inline Eigen::MatrixXd denseDelta(const PeftAdapterFile& f, const PeftAdapterFile::Module& m) {
  return f.scaling(m) * f.B<double>(m) * f.A<double>(m);
}

inline Eigen::VectorXd denseSpectrum(const Eigen::MatrixXd& M, Eigen::Index count) {
  const auto svd = lora::linalg::denseSVD(M, 0u);
  return svd.S.head(count);
}

// Max |a - b| / max(1, |b|) over every tensor; names and shapes must agree.
inline double maxRelativeDifference(const fs::path& a, const fs::path& b) {
  const auto x = SafeTensorsReader::open(a), y = SafeTensorsReader::open(b);
  std::vector<std::string> nx = x.names(), ny = y.names();
  std::sort(nx.begin(), nx.end());
  std::sort(ny.begin(), ny.end());
  EXPECT_EQ(nx, ny);
  double worst = 0;
  for (const std::string& n : ny) {
    if (!x.contains(n)) continue;
    EXPECT_EQ(x.info(n).shape, y.info(n).shape) << n;
    const Eigen::VectorXd u = x.flat<double>(n), v = y.flat<double>(n);
    if (u.size() != v.size()) return 1e30;
    worst = std::max(worst, ((u - v).array().abs() / v.array().abs().max(1.0)).maxCoeff());
  }
  return worst;
}

inline void expectOneErrorLine(const CliResult& r) {
  EXPECT_EQ(r.status, 1) << r.err;
  const auto lines = r.errLines();
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_TRUE(lines[0].starts_with("lora: error: ")) << lines[0];
}

// The base model with the weights of <variant>/residual.safetensors put in.
inline fs::path residualBase(const fs::path& variant, const fs::path& folder) {
  const auto base = SafeTensorsReader::open(baseModel());
  const auto residual = SafeTensorsReader::open(variant / "residual.safetensors");
  lora::SafeTensorsWriter w;
  for (const std::string& n : base.names()) {
    const auto& src = residual.contains(n) ? residual : base;
    const auto& info = src.info(n);
    w.addRaw(n, info.dtype, info.shape, src.rawBytes(n));
  }
  const fs::path out = folder / "residual_base.safetensors";
  w.write(out);
  return out;
}

template <typename F>
inline void writeAdapter(const fs::path& dir, const std::string& config, DType dtype, F&& factors) {
  lora::PeftAdapterWriter w(AdapterConfig::parse(config, "test config"), dtype);
  factors(w);
  w.write(dir);
}

/// Whether the tests run under AddressSanitizer (resident memory is then meaningless).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

}  // namespace lora::test::cli_fixtures
