// Initialization benchmarks: the SVDs behind PiSSA on a 4096 x 4096 float weight, r = 16.
//
//   BM_RandomizedSVD  linalg::randomizedSVD(W, 16, niter 4), PiSSA fast (pissa_niter_4); its
//                     baseline is torch.svd_lowrank(W, q=16, niter=4) (bench/torch_svd_lowrank.py)
//   BM_PartialSVD     linalg::PartialSVD(W, 16): PiSSA exact, BlockKrylov and Lanczos (Spectra)
//   BM_DenseSVD       linalg::denseSVD of W with thin U and V, the full SVD PEFT's "pissa" runs:
//                     the baseline of PiSSA exact (one iteration, it takes seconds)
//
// Two weights, both seeded:
//   planted   W = U diag(σ) V^T + ν G with σ_i = 100/√i for i = 1..512, U and V orthonormal
//             4096 x 512 (QR of Gaussians), G standard Gaussian and ν = 0.05: a power-law top
//             (σ_16/σ_17 = 1.03, as small a gap as in real weights) sinking into a noise bulk
//             whose edge is ν(√4096 + √4096) = 6.4
//   gaussian  W = G, flat at the top (the Marchenko–Pastur edge): the hard case for both methods
//
// Accuracy counters, against the top 17 triplets of W computed in double (PartialSVD<double>,
// residual <= 1e-12·σ_1): sigmaErr = max_i |σ_i − σ_i*|/σ_i*, resid = max_i max(‖W v_i − σ_i u_i‖,
// ‖W^T u_i − σ_i v_i‖)/σ_1, sinU/sinV = sine of the largest principal angle between the computed
// and the exact 16-dimensional singular subspaces, truncErr = ‖U S V^T − W_16‖_F / ‖W_16‖_F (the
// PiSSA delta against the best rank-16 approximation).
//
// `init_bench --dump_w=PREFIX` also writes PREFIX_planted.f32 and PREFIX_gaussian.f32 (row-major
// float32, 4096 x 4096) and PREFIX_<name>.sigma.txt (the 17 exact σ) for the torch script.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/partial_svd.hpp"
#include "lora/linalg/randomized_svd.hpp"

namespace {

using Eigen::Index;
using Mat = Eigen::MatrixXf;
using Vec = Eigen::VectorXf;
using MatD = Eigen::MatrixXd;

constexpr Index kN = 4096;
constexpr Index kR = 16;

enum Spectrum : int { kPlanted = 0, kGaussian = 1 };
const char* spectrumName(int s) {
  return s == kPlanted ? "planted" : "gaussian";
}

Mat makeWeight(int spectrum) {
  Mat W(kN, kN);
  lora::Rng rng(spectrum == kPlanted ? 1 : 2);
  if (spectrum == kGaussian) {
    lora::fillNormal(W, rng, 0.0, 1.0);
    return W;
  }
  constexpr Index kPlantedRank = 512;
  Mat U(kN, kPlantedRank), V(kN, kPlantedRank);
  lora::fillNormal(U, rng, 0.0, 1.0);
  lora::fillNormal(V, rng, 0.0, 1.0);
  lora::detail::orthonormalizeColumns(U);
  lora::detail::orthonormalizeColumns(V);
  Vec sigma(kPlantedRank);
  for (Index i = 0; i < kPlantedRank; ++i)
    sigma(i) = static_cast<float>(100.0 / std::sqrt(static_cast<double>(i + 1)));
  lora::fillNormal(W, rng, 0.0, 0.05);
  W.noalias() += U * sigma.asDiagonal() * V.transpose();
  return W;
}

const Mat& weight(int spectrum) {
  static std::map<int, Mat> cache;
  auto it = cache.find(spectrum);
  if (it == cache.end()) it = cache.emplace(spectrum, makeWeight(spectrum)).first;
  return it->second;
}

// The top kR + 1 triplets of W in double, certified to 1e-12·σ_1.
struct Reference {
  Eigen::VectorXd sigma;
  MatD U, V;
  double residual = 0.0;
};
const Reference& reference(int spectrum) {
  static std::map<int, Reference> cache;
  auto it = cache.find(spectrum);
  if (it == cache.end()) {
    const MatD Wd = weight(spectrum).cast<double>();
    const lora::linalg::PartialSVD<double> svd(Wd, kR + 1, {.tolerance = 1e-12, .seed = 99});
    Reference ref{svd.singularValues(), svd.matrixU(), svd.matrixV(), svd.residual()};
    it = cache.emplace(spectrum, std::move(ref)).first;
  }
  return it->second;
}

double sineOfLargestAngle(const MatD& exact, const MatD& got) {
  const Eigen::VectorXd c = lora::linalg::singularValues(exact.transpose() * got);
  const double cmin = std::min(1.0, c.minCoeff());
  return std::sqrt(std::max(0.0, 1.0 - cmin * cmin));
}

// Sets the accuracy counters of \p state for the triplets (U, S, V) of weight(spectrum).
void setAccuracy(benchmark::State& state, int spectrum, const Mat& U, const Vec& S, const Mat& V) {
  const Mat& W = weight(spectrum);
  const Reference& ref = reference(spectrum);
  const MatD Ud = U.cast<double>(), Vd = V.cast<double>();
  const Eigen::VectorXd Sd = S.cast<double>();
  const Eigen::VectorXd exact = ref.sigma.head(kR);
  const MatD Ur = ref.U.leftCols(kR), Vr = ref.V.leftCols(kR);
  state.counters["sigmaErr"] = ((Sd - exact).cwiseQuotient(exact)).cwiseAbs().maxCoeff();
  const Mat R1 = W * V - U * S.asDiagonal();
  const Mat R2 = W.transpose() * U - V * S.asDiagonal();
  state.counters["resid"] =
      std::max(R1.colwise().norm().maxCoeff(), R2.colwise().norm().maxCoeff()) / S(0);
  state.counters["sinU"] = sineOfLargestAngle(Ur, Ud);
  state.counters["sinV"] = sineOfLargestAngle(Vr, Vd);
  // ‖X‖_F² for X = [U S, −U_r S_r] [V, V_r]^T = trace((C^T C)(D^T D)), from k x k Gram blocks.
  MatD C(kN, 2 * kR), D(kN, 2 * kR);
  C << Ud * Sd.asDiagonal(), -Ur * exact.asDiagonal();
  D << Vd, Vr;
  const double diff2 = ((C.transpose() * C).cwiseProduct(D.transpose() * D)).sum();
  state.counters["truncErr"] = std::sqrt(std::max(0.0, diff2)) / exact.norm();
  state.counters["threads"] = Eigen::nbThreads();
}

// ---- PiSSA fast: randomized SVD, q = 16, niter = 4 --------------------------------------------

void BM_RandomizedSVD(benchmark::State& state) {
  const int spectrum = static_cast<int>(state.range(0));
  const Mat& W = weight(spectrum);
  reference(spectrum);
  lora::linalg::RandomizedSVDResult<float> svd;
  for (auto _ : state) {
    lora::Rng rng(7);
    svd = lora::linalg::randomizedSVD(W, kR, 4, rng);
    benchmark::DoNotOptimize(svd.S.data());
  }
  setAccuracy(state, spectrum, svd.U, svd.S, svd.V);
  state.SetLabel(spectrumName(spectrum));
}
BENCHMARK(BM_RandomizedSVD)
    ->Arg(kPlanted)
    ->Arg(kGaussian)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- PiSSA exact: the top 16 triplets to 1e-5·σ_1 ----------------------------------------------

void BM_PartialSVD(benchmark::State& state) {
  const int spectrum = static_cast<int>(state.range(0));
  const auto method = static_cast<lora::linalg::PartialSVDMethod>(state.range(1));
  const Mat& W = weight(spectrum);
  reference(spectrum);
  lora::linalg::PartialSVD<float> svd;
  for (auto _ : state) {
    svd.compute(W, kR, {.method = method, .seed = 3});
    benchmark::DoNotOptimize(svd.singularValues().data());
  }
  setAccuracy(state, spectrum, svd.matrixU(), svd.singularValues(), svd.matrixV());
  state.counters["converged"] = svd.info() == Eigen::Success ? 1 : 0;
  state.counters["iterations"] = static_cast<double>(svd.iterations());
  state.counters["products"] = static_cast<double>(svd.matrixProducts());
  state.SetLabel(std::string(spectrumName(spectrum)) +
                 (method == lora::linalg::PartialSVDMethod::Lanczos ? " lanczos" : " block"));
}
BENCHMARK(BM_PartialSVD)
    ->Args({kPlanted, static_cast<int>(lora::linalg::PartialSVDMethod::BlockKrylov)})
    ->Args({kPlanted, static_cast<int>(lora::linalg::PartialSVDMethod::Lanczos)})
    ->Args({kGaussian, static_cast<int>(lora::linalg::PartialSVDMethod::BlockKrylov)})
    ->Args({kGaussian, static_cast<int>(lora::linalg::PartialSVDMethod::Lanczos)})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- Baseline: the full SVD (what PEFT's init_lora_weights="pissa" computes) -------------------

void BM_DenseSVD(benchmark::State& state) {
  const int spectrum = static_cast<int>(state.range(0));
  const Mat& W = weight(spectrum);
  reference(spectrum);
  Mat U, V;
  Vec S;
  for (auto _ : state) {
    const auto svd = lora::linalg::denseSVD(W);
    U = svd.U.leftCols(kR);
    V = svd.V.leftCols(kR);
    S = svd.S.head(kR);
    benchmark::DoNotOptimize(S.data());
  }
  setAccuracy(state, spectrum, U, S, V);
  state.SetLabel(spectrumName(spectrum));
}
BENCHMARK(BM_DenseSVD)->Arg(kPlanted)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

// Writes the weights (row-major float32) and their exact σ for bench/torch_svd_lowrank.py.
void dumpWeights(const std::string& prefix) {
  for (int spectrum : {kPlanted, kGaussian}) {
    const std::string base = prefix + "_" + spectrumName(spectrum);
    const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rowMajor =
        weight(spectrum);
    std::ofstream out(base + ".f32", std::ios::binary);
    out.write(reinterpret_cast<const char*>(rowMajor.data()),
              static_cast<std::streamsize>(sizeof(float) * rowMajor.size()));
    std::ofstream sigma(base + ".sigma.txt");
    sigma.precision(17);
    for (Index i = 0; i < reference(spectrum).sigma.size(); ++i)
      sigma << reference(spectrum).sigma(i) << "\n";
    std::printf("wrote %s.f32 and %s.sigma.txt (reference residual %.1e)\n", base.c_str(),
                base.c_str(), reference(spectrum).residual);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    constexpr const char* flag = "--dump_w=";
    if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0) {
      dumpWeights(argv[i] + std::strlen(flag));
      continue;
    }
    args.push_back(argv[i]);
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
