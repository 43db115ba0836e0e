#include "common.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <exception>
#include <fstream>
#include <mutex>
#include <thread>

#include <sys/resource.h>

#include <fmt/format.h>

#include "lora/error.hpp"
#include "lora/io/gguf.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/threads.hpp"

namespace lora::cli {

void addCommonOptions(CLI::App* cmd, CommonOptions& options, bool withJson) {
  cmd->add_option("--threads", options.threads,
                  "threads, >= 1 (default: LORA_NUM_THREADS, else every core)");
  cmd->add_flag("--quiet,-q", options.quiet, "no progress bar (it is drawn only on a terminal)");
  if (withJson) cmd->add_flag("--json", options.json, "print JSON on stdout instead of a table");
}

unsigned threadCount(const CLI::App* cmd, const CommonOptions& options) {
  if (cmd->count("--threads") > 0) {
    if (options.threads < 1) {
      detail::fail(cmd->get_name(), "expected --threads >= 1, got {}", options.threads);
    }
    return static_cast<unsigned>(options.threads);
  }
  return static_cast<unsigned>(lora::numThreads());
}

void parallelFor(std::size_t n, unsigned threads, const std::function<void(std::size_t)>& fn,
                 io::Progress* progress) {
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex errorMutex;
  std::size_t errorIndex = n;
  std::exception_ptr error;
  const auto work = [&] {
    for (;;) {
      if (failed.load()) return;
      const std::size_t i = next.fetch_add(1);
      if (i >= n) return;
      try {
        fn(i);
        if (progress != nullptr) progress->tick();
      } catch (...) {
        std::lock_guard lock(errorMutex);
        if (i < errorIndex) {
          errorIndex = i;
          error = std::current_exception();
        }
        failed.store(true);
      }
    }
  };
  const std::size_t workers = std::min<std::size_t>(threads, n);
  const std::size_t helpers = workers - (n > 0 && threads > 0 ? 1 : 0);
  // Modules in parallel, each on one thread; or one module at a time on all of them.
  const ScopedNumThreads inner(workers > 1 ? 1 : static_cast<int>(std::max(1u, threads)));
  std::vector<std::thread> pool;
  pool.reserve(helpers);
  try {
    for (std::size_t t = 0; t < helpers; ++t) pool.emplace_back(work);
  } catch (...) {
    // Could not start a thread: the ones running and this one finish the work.
  }
  work();
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

DType parseDTypeName(std::string_view name, std::string_view where) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "f32" || lower == "float32") return DType::F32;
  if (lower == "f16" || lower == "float16") return DType::F16;
  if (lower == "bf16" || lower == "bfloat16") return DType::BF16;
  if (lower == "f64" || lower == "float64") return DType::F64;
  detail::fail(where, "expected --dtype f32, f16, bf16 or f64, got '{}'", name);
}

void Table::print(std::FILE* out) const {
  std::vector<std::size_t> width;
  for (const auto& row : m_rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : m_rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (c > 0) line += "  ";
      const std::size_t pad = width[c] - row[c].size();
      if (c == 0) {
        line += row[c];
        if (row.size() > 1) line += std::string(pad, ' ');
      } else {
        line += std::string(pad, ' ') + row[c];
      }
    }
    fmt::print(out, "{}\n", line);
  }
}

std::size_t peakRssBytes() {
  // VmHWM: this process image's own peak. getrusage's ru_maxrss also carries the peak of the
  // process that spawned it (Linux keeps it across execve after vfork/posix_spawn), so it is only
  // the fallback.
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmHWM:")) {
      std::size_t kb = 0;
      if (std::sscanf(line.c_str(), "VmHWM: %zu kB", &kb) == 1) return kb * 1024;
    }
  }
  struct rusage usage {};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<std::size_t>(usage.ru_maxrss) * 1024;  // Linux: kilobytes
}

bool mutatesBase(const AdapterConfig& config) {
  std::string init = config.initLoraWeights;
  std::transform(init.begin(), init.end(), init.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return init.starts_with("pissa") || init == "olora" || init == "corda" || init == "loftq";
}

bool isKohyaFile(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) && !GgufReader::looksLikeGguf(path);
}

void refuseKohyaFile(const char* where, const std::filesystem::path& path) {
  if (isKohyaFile(path)) {
    detail::fail(where,
                 "expected a PEFT adapter folder or a GGUF adapter file, got the file '{}' (a "
                 "kohya LoRA? `lora inspect` and `lora resize` read those)",
                 path.string());
  }
}

Eigen::VectorXd moduleSpectrum(const PeftAdapterFile& file, const PeftAdapterFile::Module& m) {
  const Eigen::MatrixXd A = file.A<double>(m);
  const Eigen::MatrixXd B = file.B<double>(m);
  const linalg::FactoredSVD<double> svd(B, A, file.scaling(m), 0);
  if (svd.info() != Eigen::Success) {
    detail::fail("moduleSpectrum",
                 "expected the SVD of s·B·A for '{}' to converge, got no convergence", m.name);
  }
  return svd.singularValues();
}

double energyShare(const Eigen::VectorXd& sigma, Eigen::Index k) {
  const double total = sigma.squaredNorm();
  if (total == 0.0 || k >= sigma.size()) return 1.0;
  return sigma.head(k).squaredNorm() / total;
}

std::string num(double v) {
  return fmt::format("{:.4g}", v);
}

}  // namespace lora::cli
