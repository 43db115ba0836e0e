#pragma once
/// \file threads.hpp
/// \brief How many threads LoRA++ uses: lora::setNumThreads and the LORA_NUM_THREADS variable.
///
/// LoRA++ runs its heavy work on several threads: the layer's products and every GEMM inside the
/// SVDs and initializers (Eigen's OpenMP-parallel kernels), the dense SVD and symmetric
/// eigendecomposition (LAPACK, when built with `LORA_LAPACK`), and the `lora` tool. The count is
/// one process-wide setting:
///
/// - at start-up it is `LORA_NUM_THREADS` when that environment variable holds an integer >= 1,
///   and otherwise every core the process may run on;
/// - lora::setNumThreads changes it at any time (0 restores the default), and
///   lora::ScopedNumThreads changes it for one scope.
///
/// The setting is Eigen's (Eigen::setNbThreads), and OpenBLAS's when OpenBLAS runs Eigen's
/// products (`LORA_BLAS=openblas`); OpenBLAS's LAPACK alone (the default build) runs on one thread.
/// A host program that runs LoRA++ from its own thread pool should set 1 here and parallelize
/// across its workers (see docs/performance.md). Inside an OpenMP parallel region Eigen runs on
/// the calling thread only.

#include <string>

namespace lora {

/// The number of cores this process may run on (its CPU affinity), at least 1.
int hardwareThreads() noexcept;

/// The number of threads LoRA++'s heavy paths use now, at least 1.
int numThreads() noexcept;

/// Sets the number of threads for every heavy path of LoRA++; \p n = 0 restores the default
/// (LORA_NUM_THREADS, else lora::hardwareThreads()). A negative \p n throws lora::Error.
/// Not meant to be called while another thread is inside LoRA++.
void setNumThreads(int n);

/// What was wrong with LORA_NUM_THREADS at start-up (empty when it was unset or valid). An
/// invalid value is ignored (the default applies), as OpenMP ignores a bad OMP_NUM_THREADS; the
/// `lora` tool reports it as an error.
const std::string& threadEnvironmentError() noexcept;

/// \brief Sets the thread count for one scope and restores the previous one when it ends.
class ScopedNumThreads {
 public:
  explicit ScopedNumThreads(int n) : previous_(numThreads()) { setNumThreads(n); }
  ~ScopedNumThreads() { setNumThreads(previous_); }
  ScopedNumThreads(const ScopedNumThreads&) = delete;
  ScopedNumThreads& operator=(const ScopedNumThreads&) = delete;

 private:
  int previous_;
};

namespace detail {
/// Parses a LORA_NUM_THREADS value: an integer from 1 to 65536 (surrounding text, signs other than
/// none, and empty strings are errors). Returns the count, or 0 with \p error set.
int parseThreadCount(const char* text, std::string& error);
/// Applies LORA_NUM_THREADS (or the default) once per process; returns the count.
int applyThreadEnvironment() noexcept;
/// Initialized in every program that includes a LoRA++ header with heavy code, before main (the
/// pattern of std::ios_base::Init): the environment's setting is in force from the first call.
inline const int threadEnvironmentApplied = applyThreadEnvironment();
}  // namespace detail

}  // namespace lora
