// Which backend for the products and the dense decompositions: scripts/backend_choice.sh compiles
// this file three times (Eigen's own kernels with OpenMP; Eigen routed to OpenBLAS; to BLIS, both
// through EIGEN_USE_BLAS) and runs each on the same shapes. Not part of the CMake build: the
// choice is made once per machine, the result is in docs/performance.md.
//
//   BM_Gemm/N/in/out/T         Y = W X for W (out x in), X (in x N), float, T threads
//   BM_LoraForward/N/in/out/r/T  Y = W X + s B (A X), r the adapter's rank
//   BM_EigenSVD/n/T, BM_LapackSVD/n/T      thin SVD of an n x n float matrix: Eigen::BDCSVD,
//                                          LAPACK sgesdd (OpenBLAS's LAPACK)
//   BM_EigenSymEig/n/T, BM_LapackSymEig/n/T  eigenvectors of an n x n symmetric float matrix:
//                                            Eigen::SelfAdjointEigenSolver, LAPACK ssyevd
#include <benchmark/benchmark.h>

#include <vector>

#include <Eigen/Dense>

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(BACKEND_OPENBLAS)
extern "C" void openblas_set_num_threads(int n);
#endif
#if defined(BACKEND_BLIS)
extern "C" void bli_thread_set_num_threads(long n);
#endif
#if defined(WITH_LAPACK)
extern "C" void sgesdd_(const char*, const int*, const int*, float*, const int*, float*, float*,
                        const int*, float*, const int*, float*, const int*, int*, int*,
                        std::size_t);
extern "C" void ssyevd_(const char*, const char*, const int*, float*, const int*, float*, float*,
                        const int*, int*, const int*, int*, std::size_t, std::size_t);
#endif

namespace {

using Mat = Eigen::MatrixXf;

void setThreads(int n) {
  Eigen::setNbThreads(n);
#if defined(BACKEND_OPENBLAS)
  openblas_set_num_threads(n);
#endif
#if defined(BACKEND_BLIS)
  bli_thread_set_num_threads(n);
#endif
}

Mat random(Eigen::Index rows, Eigen::Index cols, unsigned seed) {
  std::srand(seed);
  return Mat::Random(rows, cols);
}

void BM_Gemm(benchmark::State& state) {
  const Eigen::Index n = state.range(0), in = state.range(1), out = state.range(2);
  setThreads(static_cast<int>(state.range(3)));
  const Mat W = random(out, in, 1), X = random(in, n, 2);
  Mat Y(out, n);
  for (auto _ : state) {
    Y.noalias() = W * X;
    benchmark::DoNotOptimize(Y.data());
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * double(n) * double(in) * double(out),
                                                benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
}

void BM_LoraForward(benchmark::State& state) {
  const Eigen::Index n = state.range(0), in = state.range(1), out = state.range(2),
                     r = state.range(3);
  setThreads(static_cast<int>(state.range(4)));
  const Mat W = random(out, in, 1), X = random(in, n, 2), A = random(r, in, 3),
            B = random(out, r, 4);
  Mat Y(out, n), T(r, n);
  for (auto _ : state) {
    Y.noalias() = W * X;
    T.noalias() = A * X;
    Y.noalias() += 0.5f * (B * T);
    benchmark::DoNotOptimize(Y.data());
  }
}

void BM_EigenSVD(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  setThreads(static_cast<int>(state.range(1)));
  const Mat M = random(n, n, 5);
  for (auto _ : state) {
    const Eigen::BDCSVD<Mat> svd(M, Eigen::ComputeThinU | Eigen::ComputeThinV);
    benchmark::DoNotOptimize(svd.singularValues().data());
  }
}

void BM_EigenSymEig(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  setThreads(static_cast<int>(state.range(1)));
  const Mat G = random(n, n, 6);
  const Mat S = G * G.transpose();
  for (auto _ : state) {
    const Eigen::SelfAdjointEigenSolver<Mat> eig(S);
    benchmark::DoNotOptimize(eig.eigenvalues().data());
  }
}

#if defined(WITH_LAPACK)
void BM_LapackSVD(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  setThreads(static_cast<int>(state.range(1)));
  const Mat M = random(n, n, 5);
  Mat a(n, n), U(n, n), Vt(n, n);
  Eigen::VectorXf s(n);
  std::vector<int> iwork(8 * static_cast<std::size_t>(n));
  int info = 0, lwork = -1;
  float query = 0;
  sgesdd_("S", &n, &n, a.data(), &n, s.data(), U.data(), &n, Vt.data(), &n, &query, &lwork,
          iwork.data(), &info, 1);
  lwork = static_cast<int>(query) + 1;
  std::vector<float> work(static_cast<std::size_t>(lwork));
  for (auto _ : state) {
    a = M;
    sgesdd_("S", &n, &n, a.data(), &n, s.data(), U.data(), &n, Vt.data(), &n, work.data(), &lwork,
            iwork.data(), &info, 1);
    benchmark::DoNotOptimize(s.data());
  }
}

void BM_LapackSymEig(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  setThreads(static_cast<int>(state.range(1)));
  const Mat G = random(n, n, 6);
  const Mat S = G * G.transpose();
  Mat a(n, n);
  Eigen::VectorXf w(n);
  int info = 0, lwork = -1, liwork = -1, iquery = 0;
  float query = 0;
  ssyevd_("V", "L", &n, a.data(), &n, w.data(), &query, &lwork, &iquery, &liwork, &info, 1, 1);
  lwork = static_cast<int>(query) + 1;
  liwork = iquery;
  std::vector<float> work(static_cast<std::size_t>(lwork));
  std::vector<int> iwork(static_cast<std::size_t>(liwork));
  for (auto _ : state) {
    a = S;
    ssyevd_("V", "L", &n, a.data(), &n, w.data(), work.data(), &lwork, iwork.data(), &liwork, &info,
            1, 1);
    benchmark::DoNotOptimize(w.data());
  }
}
#endif

void gemmShapes(benchmark::internal::Benchmark* b) {
  for (int t : {1, 2}) {
    b->Args({64, 1024, 1024, t});
    b->Args({512, 4096, 4096, t});
    b->Args({4096, 1024, 1024, t});
    b->Args({512, 4096, 11008, t});
    b->Args({64, 4096, 4096, t});
  }
}
void loraShapes(benchmark::internal::Benchmark* b) {
  for (int t : {1, 2}) {
    b->Args({64, 1024, 1024, 8, t});
    b->Args({512, 4096, 4096, 16, t});
    b->Args({4096, 1024, 1024, 64, t});
    b->Args({2048, 4096, 4096, 128, t});
  }
}
void decompositionShapes(benchmark::internal::Benchmark* b) {
  for (int t : {1, 2}) {
    b->Args({256, t});
    b->Args({1024, t});
  }
}

BENCHMARK(BM_Gemm)->Apply(gemmShapes)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LoraForward)->Apply(loraShapes)->UseRealTime()->Unit(benchmark::kMillisecond);
#if defined(BACKEND_NONE)
BENCHMARK(BM_EigenSVD)->Apply(decompositionShapes)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EigenSymEig)->Apply(decompositionShapes)->UseRealTime()->Unit(benchmark::kMillisecond);
#endif
#if defined(WITH_LAPACK)
BENCHMARK(BM_LapackSVD)->Apply(decompositionShapes)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LapackSymEig)
    ->Apply(decompositionShapes)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
#endif

}  // namespace

BENCHMARK_MAIN();
