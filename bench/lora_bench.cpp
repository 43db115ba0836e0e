// LoRA++ benchmarks (float32). Each target is paired with the baseline it is judged against,
// measured in the same run: see docs/performance.md for the ratios. The last argument T of every
// benchmark is the thread count (lora::setNumThreads), run at 1 and at all cores; names follow
// bench/torch_baseline.py's JSON: BM_LayerForward/512/4096/16/2 is N = 512, 4096 -> 4096, r = 16,
// two threads.
#include <benchmark/benchmark.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <vector>

#include "lora/layer.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/random.hpp"
#include "lora/threads.hpp"

namespace {

using Mat = Eigen::MatrixXf;

// The thread counts every benchmark runs at: 1 and all cores.
std::vector<int> threadCounts() {
  const int all = lora::hardwareThreads();
  return all > 1 ? std::vector<int>{1, all} : std::vector<int>{1};
}

// Registers every argument list of Lists, each followed by each thread count.
template <const auto& Lists>
void withThreads(benchmark::internal::Benchmark* b) {
  for (const auto& list : Lists) {
    for (int t : threadCounts()) {
      std::vector<std::int64_t> args(list.begin(), list.end());
      args.push_back(t);
      b->Args(args);
    }
  }
}

template <std::size_t N, std::size_t K>
using ArgLists = std::array<std::array<std::int64_t, K>, N>;
constexpr ArgLists<1, 2> kFactoredLarge{{{4096, 64}}};
constexpr ArgLists<4, 2> kFactoredSmall{{{1024, 8}, {1024, 16}, {1024, 64}, {1024, 256}}};
constexpr ArgLists<5, 2> kFactoredAll{{{4096, 64}, {1024, 8}, {1024, 16}, {1024, 64}, {1024, 256}}};
constexpr ArgLists<1, 3> kShrink{{{4096, 64, 16}}};
constexpr ArgLists<1, 3> kLayer{{{512, 4096, 16}}};

// Sets the thread count from the benchmark's last argument.
void useThreads(const benchmark::State& state, int index) {
  lora::setNumThreads(static_cast<int>(state.range(index)));
}

Mat gaussian(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed, double stddev = 1.0) {
  Mat m(rows, cols);
  lora::Rng rng(seed);
  lora::fillNormal(m, rng, 0.0, stddev);
  return m;
}

// ---- SVD of B·A: factored vs the dense SVD (linalg::denseSVD) of the materialized product ------

void BM_FactoredSVD(benchmark::State& state) {
  const Eigen::Index n = state.range(0), r = state.range(1);
  useThreads(state, 2);
  const Mat B = gaussian(n, r, 1), A = gaussian(r, n, 2);
  for (auto _ : state) {
    lora::linalg::FactoredSVD<float> svd(B, A, 2.0f);
    benchmark::DoNotOptimize(svd.singularValues().data());
  }
  state.counters["out=in"] = static_cast<double>(n);
  state.counters["r"] = static_cast<double>(r);
}
BENCHMARK(BM_FactoredSVD)
    ->Apply(withThreads<kFactoredAll>)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Baseline: what PEFT's convert_to_lora / kohya's resize_lora.py do: form s·B·A, dense SVD.
void BM_DenseSVD(benchmark::State& state) {
  const Eigen::Index n = state.range(0), r = state.range(1);
  useThreads(state, 2);
  const Mat B = gaussian(n, r, 1), A = gaussian(r, n, 2);
  for (auto _ : state) {
    const Mat delta = 2.0f * (B * A);
    const auto svd = lora::linalg::denseSVD(delta);
    benchmark::DoNotOptimize(svd.S.data());
  }
  state.counters["out=in"] = static_cast<double>(n);
  state.counters["r"] = static_cast<double>(r);
}
BENCHMARK(BM_DenseSVD)
    ->Apply(withThreads<kFactoredLarge>)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DenseSVD)
    ->Apply(withThreads<kFactoredSmall>)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- resize: shrink 4096 x 4096, r 64 -> 16
// ------------------------------------------------------

void BM_ResizeShrink(benchmark::State& state) {
  const Eigen::Index n = state.range(0), r = state.range(1), k = state.range(2);
  useThreads(state, 3);
  const auto original =
      lora::Layer<float>::fromFactors(gaussian(r, n, 3, 0.02), gaussian(n, r, 4, 0.02), 2.0 * r);
  for (auto _ : state) {
    state.PauseTiming();
    auto layer = original;
    state.ResumeTiming();
    auto report = layer.resize(k);
    benchmark::DoNotOptimize(report.retainedEnergy);
  }
}
BENCHMARK(BM_ResizeShrink)
    ->Apply(withThreads<kShrink>)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Baseline: the dense resize (materialize, linalg::denseSVD, keep the top k).
void BM_DenseResizeShrink(benchmark::State& state) {
  const Eigen::Index n = state.range(0), r = state.range(1), k = state.range(2);
  useThreads(state, 3);
  const Mat A = gaussian(r, n, 3, 0.02), B = gaussian(n, r, 4, 0.02);
  for (auto _ : state) {
    const Mat delta = 2.0f * (B * A);
    const auto svd = lora::linalg::denseSVD(delta);
    const Eigen::VectorXf root = svd.S.head(k).cwiseSqrt();
    Mat newB = svd.U.leftCols(k) * root.asDiagonal();
    Mat newA = root.asDiagonal() * svd.V.leftCols(k).transpose();
    benchmark::DoNotOptimize(newA.data());
    benchmark::DoNotOptimize(newB.data());
  }
}
BENCHMARK(BM_DenseResizeShrink)
    ->Apply(withThreads<kShrink>)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- forward / backward: N = 512, 4096 -> 4096, r = 16 -----------------------------------------

struct LayerFixture {
  Eigen::Index n, in, out, r;
  Mat W, X, Y, dY, dX;
  Eigen::VectorXf b;
  lora::Layer<float> layer;
  // Arguments N, D (in = out), r, then the thread count (and the pass, for the ratios).
  explicit LayerFixture(const benchmark::State& state)
      : n((useThreads(state, 3), state.range(0))),
        in(state.range(1)),
        out(state.range(1)),
        r(state.range(2)),
        W(gaussian(out, in, 5, 0.02)),
        X(gaussian(n, in, 6)),
        Y(n, out),
        dY(gaussian(n, out, 7)),
        dX(n, in),
        b(gaussian(out, 1, 8)),
        layer(lora::Layer<float>::fromFactors(gaussian(r, in, 9, 0.02), gaussian(out, r, 10, 0.02),
                                              2.0 * r)) {
    layer.bindBase(W, b);
  }
  void setCounters(benchmark::State& state, double gemms) const {
    // Useful GFLOP per second of the base GEMMs (LoRA terms not counted): prints "GFLOP=90/s".
    state.counters["GFLOP"] =
        benchmark::Counter(gemms * 2e-9 * double(n) * double(in) * double(out),
                           benchmark::Counter::kIsIterationInvariantRate);
  }
};

enum class Pass { Forward, ForwardBackward, ForwardBackwardInput };

// One call of the layer: forward, plus backward for dA and dB, plus dX.
void runPass(LayerFixture& f, Pass pass) {
  f.layer.forward(f.X, f.Y);
  if (pass == Pass::ForwardBackward) f.layer.backward(f.X, f.dY, lora::GradMode::Overwrite);
  if (pass == Pass::ForwardBackwardInput)
    f.layer.backward(f.X, f.dY, f.dX, lora::GradMode::Overwrite);
  benchmark::DoNotOptimize(f.Y.data());
  benchmark::DoNotOptimize(f.dX.data());
  benchmark::DoNotOptimize(f.layer.gradA().data());
}

// Baseline: the frozen layer alone, Y = X W^T.
void BM_BaseGemm(benchmark::State& state) {
  LayerFixture f(state);
  for (auto _ : state) {
    f.Y.noalias() = f.X * f.W.transpose();
    benchmark::DoNotOptimize(f.Y.data());
  }
  f.setCounters(state, 1);
}

template <Pass P>
void BM_Layer(benchmark::State& state) {
  LayerFixture f(state);
  for (auto _ : state) runPass(f, P);
  f.setCounters(state, P == Pass::ForwardBackwardInput ? 2 : 1);
}

BENCHMARK(BM_BaseGemm)->Apply(withThreads<kLayer>)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Layer<Pass::Forward>)
    ->Name("BM_LayerForward")
    ->Apply(withThreads<kLayer>)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Layer<Pass::ForwardBackward>)
    ->Name("BM_LayerForwardBackward")
    ->Apply(withThreads<kLayer>)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Layer<Pass::ForwardBackwardInput>)
    ->Name("BM_LayerForwardBackwardInput")
    ->Apply(withThreads<kLayer>)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- the same ratios, measured interleaved ------------------------------------------------------
// On a shared machine the clock drifts by several percent between benchmarks run one after the
// other. Here every iteration times the base GEMM and then the layer call back to back, and the
// counter `ratio` is Σ t_layer / Σ t_base over all iterations: the figure docs/performance.md uses.

void BM_RatioToBaseGemm(benchmark::State& state) {
  LayerFixture f(state);
  const auto pass = static_cast<Pass>(state.range(4));
  using Clock = std::chrono::steady_clock;
  double base = 0, layer = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    f.Y.noalias() = f.X * f.W.transpose();
    benchmark::DoNotOptimize(f.Y.data());
    const auto t1 = Clock::now();
    runPass(f, pass);
    const auto t2 = Clock::now();
    base += std::chrono::duration<double>(t1 - t0).count();
    layer += std::chrono::duration<double>(t2 - t1).count();
  }
  state.counters["ratio"] = layer / base;
  state.counters["base_ms"] = 1e3 * base / static_cast<double>(state.iterations());
  state.counters["layer_ms"] = 1e3 * layer / static_cast<double>(state.iterations());
  state.SetLabel(pass == Pass::Forward           ? "LayerForward / BaseGemm"
                 : pass == Pass::ForwardBackward ? "LayerForwardBackward / BaseGemm"
                                                 : "LayerForwardBackwardInput / BaseGemm");
}
// Arguments N, D, r, T, pass.
void ratioArgs(benchmark::internal::Benchmark* b) {
  for (int t : threadCounts()) {
    for (Pass p : {Pass::Forward, Pass::ForwardBackward, Pass::ForwardBackwardInput})
      b->Args({512, 4096, 16, t, static_cast<int>(p)});
  }
}
BENCHMARK(BM_RatioToBaseGemm)
    ->Apply(ratioArgs)
    ->MinTime(5.0)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
