#pragma once
// Helpers shared by the adapter subcommands of `lora`: threads (with lora::io::Progress), tables,
// dtype names, spectra and resource use.

#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <Eigen/Core>

#include "lora/io/peft_file.hpp"
#include "lora/io/progress.hpp"
#include "lora/io/safetensors.hpp"

namespace lora::cli {

/// Options every adapter subcommand has.
struct CommonOptions {
  int threads = 0;     ///< 0: lora::numThreads() (LORA_NUM_THREADS, else every core)
  bool quiet = false;  ///< no progress bar
  bool json = false;   ///< JSON on stdout instead of a table
};

/// Adds --threads and --quiet (and --json when \p withJson) to \p cmd.
void addCommonOptions(CLI::App* cmd, CommonOptions& options, bool withJson);

/// The number of threads: --threads when given (must be >= 1), else lora::numThreads().
unsigned threadCount(const CLI::App* cmd, const CommonOptions& options);

/// Runs fn(i) for every i in [0, n) on up to \p threads threads (the caller's included); while
/// several run, each uses one thread inside LoRA++ (lora::setNumThreads(1)), and a single worker
/// gets all \p threads, so the machine is never oversubscribed. After
/// a failure no new index starts; once all running calls return, the exception of the lowest
/// failing index is rethrown, so the error does not depend on scheduling.
void parallelFor(std::size_t n, unsigned threads, const std::function<void(std::size_t)>& fn,
                 io::Progress* progress = nullptr);

/// "f32", "f16", "bf16" (also "f64") -> DType; anything else throws lora::Error.
DType parseDTypeName(std::string_view name, std::string_view where);

/// A text table: left-aligned first column, right-aligned others.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : m_rows{std::move(header)} {}
  void add(std::vector<std::string> row) { m_rows.push_back(std::move(row)); }
  void print(std::FILE* out) const;

 private:
  std::vector<std::vector<std::string>> m_rows;
};

/// Peak resident memory of this process so far, in bytes (0 where unknown).
std::size_t peakRssBytes();

/// Whether an adapter's factors apply to a base weight changed at initialisation (PiSSA, OLoRA,
/// CorDA, LoftQ: `init_lora_weights` "pissa...", "olora", "corda", "loftq").
bool mutatesBase(const AdapterConfig& config);

/// Whether \p path is a file that is not a GGUF adapter: what inspect and resize read as a kohya
/// LoRA (a safetensors file).
bool isKohyaFile(const std::filesystem::path& path);

/// Fails (lora::Error naming \p where) when \p path is such a file: for the subcommands that
/// read PEFT folders and GGUF files only.
void refuseKohyaFile(const char* where, const std::filesystem::path& path);

/// The singular values of s·B·A for module \p m, from the factors (FactoredSVD, values only).
Eigen::VectorXd moduleSpectrum(const PeftAdapterFile& file, const PeftAdapterFile::Module& m);

/// Σσ²_{i<k} / Σσ² (1 for an all-zero spectrum or k >= size).
double energyShare(const Eigen::VectorXd& sigma, Eigen::Index k);

/// fmt "{:.4g}" of v.
std::string num(double v);

}  // namespace lora::cli
