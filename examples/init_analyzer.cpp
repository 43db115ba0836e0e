// The article's comparison of LoRA initializations (`compare_initialization_methods` and
// `InitializationAnalyzer`: d_model = 768, r = 16), measured with
// lora::analysis::InitializationAnalyzer over every initializer LoRA++ has.
//
//   init_analyzer [--trials N] [--seed S] [--dim D] [--rank R] [--batch N] [--float]
//                 [--csv PATH] [--json PATH]
//
// Prints the two tables; --csv and --json also write the full statistics (mean, std, min, max and
// count of every quantity, and every trial's values in the JSON) to PATH ("-" for stdout).
//
// The base weight is synthetic: W = U·diag(σ)·Vᵀ with random orthonormal U, V and a power-law
// spectrum σ_i ∝ i^(-1/2), scaled so that ‖W‖_F² = out (the size of a N(0, 1/in) matrix's).
// Data-dependent inits read it (statistics_adaptive, svd_based(W), PiSSA, MiLoRA, OLoRA), and
// every layer is built on a fresh copy of it, so the inits that subtract s·B·A can change it.
// The analyzer's regression batch X (N x in, N(0, 1) entries) doubles as the layer's activations
// for EVA (being isotropic, it gives EVA random directions, not the structure real activations
// have), and LoRA-GA gets the full-weight gradient of the analyzer's MSE at W.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "init_catalog.hpp"
#include "lora/analysis/initialization_analyzer.hpp"
#include "lora/linalg/detail/orthogonal.hpp"
#include "lora/init/init.hpp"
#include "lora/io/atomic_file.hpp"
#include "lora/linalg/weight_statistics.hpp"

namespace {

using Index = Eigen::Index;

struct Args {
  Index trials = 10;
  std::uint64_t seed = 0;
  Index dim = 768;
  Index rank = 16;
  Index batch = 256;
  bool useFloat = false;
  std::string csv, json;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw lora::Error(fmt::format("init_analyzer: {} needs a value", arg));
      return argv[++i];
    };
    if (arg == "--trials")
      a.trials = std::stol(value());
    else if (arg == "--seed")
      a.seed = std::stoull(value());
    else if (arg == "--dim")
      a.dim = std::stol(value());
    else if (arg == "--rank")
      a.rank = std::stol(value());
    else if (arg == "--batch")
      a.batch = std::stol(value());
    else if (arg == "--float")
      a.useFloat = true;
    else if (arg == "--csv")
      a.csv = value();
    else if (arg == "--json")
      a.json = value();
    else
      throw lora::Error(fmt::format(
          "init_analyzer: unknown argument '{}' (use --trials N --seed S --dim D --rank R "
          "--batch N --float --csv PATH --json PATH)",
          arg));
  }
  return a;
}

/// A synthetic out x in "pretrained" weight: power-law spectrum σ_i ∝ i^(-1/2), ‖W‖_F² = out.
template <typename Scalar>
Eigen::Matrix<Scalar, -1, -1> syntheticWeight(Index out, Index in, std::uint64_t seed) {
  lora::Rng rng(seed);
  const Index k = std::min(out, in);
  const Eigen::MatrixXd U = lora::detail::orthogonalMatrix<double>(out, k, 1.0, rng);
  const Eigen::MatrixXd V = lora::detail::orthogonalMatrix<double>(in, k, 1.0, rng);
  Eigen::VectorXd sigma(k);
  for (Index i = 0; i < k; ++i) sigma(i) = 1.0 / std::sqrt(static_cast<double>(i + 1));
  sigma *= std::sqrt(static_cast<double>(out)) / sigma.norm();
  return (U * sigma.asDiagonal() * V.transpose()).cast<Scalar>();
}

/// What the data-dependent initializers read: the base weight W (out x in), the layer's input
/// activations X (N x in; EVA's PCA) and the full-weight gradient G = ∂MSE/∂W at W (LoRA-GA).
struct InitData {
  Eigen::MatrixXd W, X, G;
  Index rank = 0;
};

/// Every initializer to compare (examples/init_catalog.hpp).
template <typename Scalar>
std::vector<lora::analysis::NamedInitializer<Scalar>> initializers(const InitData& data) {
  return lora::examples::initCatalog<Scalar>(data.W, data.X, data.G, data.rank);
}

void write(const std::string& path, const std::string& text) {
  if (path == "-") {
    fmt::print("{}", text);
    return;
  }
  lora::train::writeFileAtomically(path, text, "init_analyzer");
  fmt::print("wrote {}\n", path);
}

template <typename Scalar>
int run(const Args& a) {
  lora::analysis::InitializationAnalyzerOptions options{.outFeatures = a.dim,
                                                        .inFeatures = a.dim,
                                                        .rank = a.rank,
                                                        .alpha = static_cast<double>(a.rank),
                                                        .trials = a.trials,
                                                        .seed = a.seed,
                                                        .batchSize = a.batch};
  const Eigen::MatrixXd W = syntheticWeight<double>(a.dim, a.dim, 2026);
  lora::analysis::InitializationAnalyzer<Scalar> analyzer(options);
  analyzer.setBaseWeight(W);
  const auto problem = analyzer.regressionProblem();
  InitData data{.W = W, .X = problem.X.template cast<double>(), .G = {}, .rank = a.rank};
  // G = ∂/∂W mean((X·Wᵀ − Y)²) = 2/(N·out) · (X·Wᵀ − Y)ᵀ·X
  const Eigen::MatrixXd E = data.X * W.transpose() - problem.Y.template cast<double>();
  data.G = (2.0 / static_cast<double>(E.size())) * E.transpose() * data.X;
  for (auto& named : initializers<Scalar>(data))
    analyzer.add(std::move(named.name), std::move(named.initializer));
  const auto report = analyzer.compute();
  report.print();
  if (!a.csv.empty()) write(a.csv, report.toCsv());
  if (!a.json.empty()) write(a.json, report.toJson().dump(2) + "\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    return a.useFloat ? run<float>(a) : run<double>(a);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 1;
  }
}
