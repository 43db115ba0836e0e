#include "lora/threads.hpp"

#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <Eigen/Core>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "lora/error.hpp"

#if defined(LORA_WITH_OPENBLAS)
extern "C" void openblas_set_num_threads(int n);
#endif
#if defined(LORA_WITH_BLIS)
extern "C" void bli_thread_set_num_threads(long n);
#endif

namespace lora {
namespace {

struct ThreadState {
  std::once_flag once;
  int fallback = 1;  // LORA_NUM_THREADS, else hardwareThreads()
  int current = 1;
  std::string environmentError;
};

ThreadState& state() {
  static ThreadState s;
  return s;
}

void applyToBackends(int n) {
  Eigen::setNbThreads(n);
#if defined(LORA_WITH_OPENBLAS)
#if defined(EIGEN_USE_BLAS)
  openblas_set_num_threads(n);  // OpenBLAS runs Eigen's products
#else
  // OpenBLAS serves only LAPACK calls here, on one thread: its worker threads spin after each call
  // and took the second core from the OpenMP threads (FactoredSVD 4096 x 64 on two threads: 90th
  // percentile 6.9 ms with OpenBLAS on two threads, 2.9 ms on one; docs/performance.md).
  (void)n;
  openblas_set_num_threads(1);
#endif
#endif
#if defined(LORA_WITH_BLIS)
  bli_thread_set_num_threads(n);
#endif
}

void initialize() {
  ThreadState& s = state();
  std::call_once(s.once, [&s] {
    s.fallback = hardwareThreads();
    if (const char* text = std::getenv("LORA_NUM_THREADS"); text != nullptr) {
      if (const int n = detail::parseThreadCount(text, s.environmentError); n > 0) s.fallback = n;
    }
    s.current = s.fallback;
    applyToBackends(s.current);
  });
}

}  // namespace

int hardwareThreads() noexcept {
#if defined(_OPENMP)
  const int n = omp_get_num_procs();  // the CPU affinity mask, unlike hardware_concurrency
#else
  const int n = static_cast<int>(std::thread::hardware_concurrency());
#endif
  return n > 0 ? n : 1;
}

int numThreads() noexcept {
  initialize();
  return state().current;
}

void setNumThreads(int n) {
  if (n < 0)
    detail::fail("lora::setNumThreads", "expected a thread count >= 0 (0: the default), got {}", n);
  initialize();
  ThreadState& s = state();
  s.current = n == 0 ? s.fallback : n;
  applyToBackends(s.current);
}

const std::string& threadEnvironmentError() noexcept {
  initialize();
  return state().environmentError;
}

namespace detail {
int parseThreadCount(const char* text, std::string& error) {
  error.clear();
  char* end = nullptr;
  errno = 0;
  const bool digitsOnly = text != nullptr && *text >= '0' && *text <= '9';
  const long value = digitsOnly ? std::strtol(text, &end, 10) : 0;
  if (!digitsOnly || errno != 0 || *end != '\0' || value < 1 || value > 65536) {
    error = fmt::format("LORA_NUM_THREADS: expected an integer from 1 to 65536, got '{}'",
                        text == nullptr ? "" : text);
    return 0;
  }
  return static_cast<int>(value);
}

int applyThreadEnvironment() noexcept {
  return numThreads();
}
}  // namespace detail

}  // namespace lora
