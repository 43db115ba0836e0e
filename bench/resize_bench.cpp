// `lora resize --energy 0.9` on a 7B-shaped adapter, end to end, against the dense approach.
//
//   BM_LoraResize7B   runs build/bin/lora resize DIR OUT --energy 0.9 as a child process (read,
//                     factored SVD of every module, write) and reports its wall time and its peak
//                     resident memory (wait4's ru_maxrss) next to the adapter's file size
//   BM_LoraConvert7B  `lora convert` of the same adapter to a GGUF F16 file for llama.cpp
//   BM_LoraInspect7B  `lora inspect` of the adapter as a PEFT folder and as a GGUF F32 file
//   BM_AdapterIO7B    the I/O floor of a resize: copies the adapter's tensors file (pread, pwrite
//                     in 8 MiB chunks on T threads, then fsync), as much reading and writing as
//                     a resize that kept every rank would do, without decoding or computing
//   BM_DenseModule    what PEFT's convert_to_lora and kohya's resize_lora.py do for one module:
//                     materialize s·B·A (out x in) and run a dense SVD of it (linalg::denseSVD,
//                     thin U and V: LAPACK's gesdd, or Eigen's BDCSVD without LORA_LAPACK); one
//                     4096 x 4096 (q/k/v/o) and one 11008 x 4096 (gate/up; down is its
//                     transpose) module, extrapolated to the whole adapter
//
// The adapter (generated once per run into a temporary folder, removed at exit) has the shapes
// of Llama-2-7B: 32 layers, q/k/v/o_proj 4096 x 4096, gate/up_proj 11008 x 4096, down_proj
// 4096 x 11008, r = 64, lora_alpha 128, float32 factors with standard Gaussian entries
// (A scaled by 1/sqrt(in)): 224 modules, 160 M parameters, 640 MB. The child runs after the
// file was written, so it reads from the page cache, as a second resize of an adapter would.
#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "lora/io/peft_writer.hpp"
#include "lora/io/safetensors.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "lora/random.hpp"
#include "lora/threads.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Eigen::Index;

constexpr Index kLayers = 32, kHidden = 4096, kInter = 11008, kRank = 64;
constexpr double kAlpha = 128;

struct Shape {
  const char* name;
  Index out, in;
};
constexpr Shape kModules[] = {
    {"self_attn.q_proj", kHidden, kHidden}, {"self_attn.k_proj", kHidden, kHidden},
    {"self_attn.v_proj", kHidden, kHidden}, {"self_attn.o_proj", kHidden, kHidden},
    {"mlp.gate_proj", kInter, kHidden},     {"mlp.up_proj", kInter, kHidden},
    {"mlp.down_proj", kHidden, kInter}};

void randomFactors(Index out, Index in, std::uint64_t seed, Eigen::MatrixXf& A,
                   Eigen::MatrixXf& B) {
  lora::Rng rng(seed);
  A.resize(kRank, in);
  B.resize(out, kRank);
  lora::fillNormal(A, rng, 0.0, 1.0 / std::sqrt(static_cast<double>(in)));
  lora::fillNormal(B, rng, 0.0, 1.0);
}

// Runs \p work in a child process and waits for it; a failure throws naming \p what.
void inChildProcess(const std::function<void()>& work, const std::string& what) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 0;
    try {
      work();
    } catch (...) {
      rc = 1;
    }
    std::_Exit(rc);
  }
  int status = 1;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0)
    throw std::runtime_error("resize_bench: " + what + " failed");
}

// The 7B-shaped adapter, written once; removed when the program ends.
struct Adapter {
  fs::path root, dir;
  std::uintmax_t bytes = 0;
  Adapter() {
    root = fs::temp_directory_path() / ("lorapp_resize_bench_" + std::to_string(::getpid()));
    dir = root / "adapter";
    // Written by a child process: Linux hands a spawned child the peak resident memory of its
    // parent (ru_maxrss survives execve after posix_spawn), so this process stays small for the
    // resize's peak to be the resize's own.
    inChildProcess([this] { write(); }, "writing the 7B-shaped adapter");
    bytes = fs::file_size(dir / "adapter_model.safetensors");
  }
  void write() const {
    lora::AdapterConfig config;
    config.r = kRank;
    config.loraAlpha = kAlpha;
    config.baseModelNameOrPath = "meta-llama/Llama-2-7b-hf (shapes only; random factors)";
    lora::PeftAdapterWriter writer(config, lora::DType::F32);
    Eigen::MatrixXf A, B;
    std::uint64_t seed = 1;
    for (Index layer = 0; layer < kLayers; ++layer)
      for (const Shape& s : kModules) {
        randomFactors(s.out, s.in, seed++, A, B);
        writer.add("model.layers." + std::to_string(layer) + "." + s.name, A, B, kAlpha);
      }
    writer.write(dir);
  }
  ~Adapter() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};

const Adapter& adapter() {
  static const Adapter a;
  return a;
}

// Runs argv as a child; returns its exit status and peak resident set size (bytes).
int runChild(const std::vector<std::string>& args, long& peakBytes) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // The child's per-module table goes to /dev/null; its errors stay on stderr.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return -1;
  int status = 0;
  rusage usage{};
  if (wait4(pid, &status, 0, &usage) != pid) return -1;
  peakBytes = usage.ru_maxrss * 1024L;  // this process stays small: see Adapter()
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void BM_LoraResize7B(benchmark::State& state) {
  const Adapter& a = adapter();
  const fs::path out = a.root / "resized";
  long peak = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const int rc = runChild({LORA_CLI, "resize", a.dir.string(), out.string(), "--energy", "0.9",
                             "--threads", std::to_string(state.range(0)), "--quiet"},
                            peak);
    const auto t1 = std::chrono::steady_clock::now();
    if (rc != 0) {
      state.SkipWithError("lora resize failed");
      break;
    }
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    state.counters["out_MB"] =
        static_cast<double>(fs::file_size(out / "adapter_model.safetensors")) / 1e6;
    fs::remove_all(out);
  }
  state.counters["adapter_MB"] = static_cast<double>(a.bytes) / 1e6;
  state.counters["peak_rss_MB"] = static_cast<double>(peak) / 1e6;
  state.counters["peak_over_adapter"] = static_cast<double>(peak) / static_cast<double>(a.bytes);
}
BENCHMARK(BM_LoraResize7B)
    ->Arg(2)
    ->Arg(1)
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);

// `lora convert DIR OUT.gguf --dtype f16` (llama, 32 heads: q and k permuted), T threads.
void BM_LoraConvert7B(benchmark::State& state) {
  const Adapter& a = adapter();
  const fs::path out = a.root / "converted.gguf";
  long peak = 0;
  for (auto _ : state) {
    fs::remove(out);
    const auto t0 = std::chrono::steady_clock::now();
    const int rc = runChild({LORA_CLI, "convert", a.dir.string(), out.string(), "--arch", "llama",
                             "--n-head", "32", "--n-head-kv", "32", "--dtype", "f16", "--threads",
                             std::to_string(state.range(0)), "--quiet"},
                            peak);
    const auto t1 = std::chrono::steady_clock::now();
    if (rc != 0) {
      state.SkipWithError("lora convert failed");
      break;
    }
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    state.counters["out_MB"] = static_cast<double>(fs::file_size(out)) / 1e6;
  }
  fs::remove(out);
  state.counters["adapter_MB"] = static_cast<double>(a.bytes) / 1e6;
  state.counters["peak_rss_MB"] = static_cast<double>(peak) / 1e6;
  state.counters["peak_over_adapter"] = static_cast<double>(peak) / static_cast<double>(a.bytes);
}
BENCHMARK(BM_LoraConvert7B)
    ->Arg(2)
    ->Arg(1)
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);

// `lora inspect` of the adapter as a PEFT folder (0) and as an F32 GGUF file (1), all threads.
void BM_LoraInspect7B(benchmark::State& state) {
  const Adapter& a = adapter();
  const fs::path gguf = a.root / "inspect.gguf";
  long peak = 0;
  if (state.range(0) == 1 && !fs::exists(gguf) &&
      runChild({LORA_CLI, "convert", a.dir.string(), gguf.string(), "--arch", "llama", "--n-head",
                "32", "--dtype", "f32", "--quiet"},
               peak) != 0) {
    state.SkipWithError("lora convert failed");
    return;
  }
  const std::string input = state.range(0) == 1 ? gguf.string() : a.dir.string();
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const int rc = runChild({LORA_CLI, "inspect", input, "--quiet"}, peak);
    const auto t1 = std::chrono::steady_clock::now();
    if (rc != 0) {
      state.SkipWithError("lora inspect failed");
      break;
    }
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
  }
  state.counters["peak_rss_MB"] = static_cast<double>(peak) / 1e6;
}
BENCHMARK(BM_LoraInspect7B)
    ->ArgName("gguf")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(5)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);

// The I/O floor: read the tensors file and write a copy of it, synced, on T threads.
void BM_AdapterIO7B(benchmark::State& state) {
  const Adapter& a = adapter();
  const fs::path src = a.dir / "adapter_model.safetensors";
  const fs::path dst = a.root / "io_copy.safetensors";
  const int threads = static_cast<int>(state.range(0));
  constexpr std::size_t kChunk = std::size_t{8} << 20;
  const std::size_t size = static_cast<std::size_t>(a.bytes);
  const std::size_t chunks = (size + kChunk - 1) / kChunk;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
    const int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    std::atomic<bool> ok{in >= 0 && out >= 0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        std::vector<char> buffer(kChunk);
        for (std::size_t c = static_cast<std::size_t>(t); ok && c < chunks;
             c += static_cast<std::size_t>(threads)) {
          const std::size_t n = std::min(kChunk, size - c * kChunk);
          const auto offset = static_cast<off_t>(c * kChunk);
          if (::pread(in, buffer.data(), n, offset) != static_cast<ssize_t>(n) ||
              ::pwrite(out, buffer.data(), n, offset) != static_cast<ssize_t>(n))
            ok = false;
        }
      });
    }
    for (std::thread& t : pool) t.join();
    if (ok && ::fsync(out) != 0) ok = false;
    if (in >= 0) ::close(in);
    if (out >= 0) ::close(out);
    const auto t1 = std::chrono::steady_clock::now();
    if (!ok) {
      state.SkipWithError("copying the adapter failed");
      break;
    }
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    fs::remove(dst);
  }
  state.counters["adapter_MB"] = static_cast<double>(a.bytes) / 1e6;
}
BENCHMARK(BM_AdapterIO7B)->Arg(2)->Arg(1)->Iterations(3)->UseManualTime()->Unit(benchmark::kSecond);

// One module the dense way: materialize s·B·A, linalg::denseSVD, energy rank at 0.9.
void BM_DenseModule(benchmark::State& state) {
  const Index out = state.range(0), in = state.range(1);
  Eigen::MatrixXf A, B;
  randomFactors(out, in, 7, A, B);
  const float s = static_cast<float>(kAlpha / kRank);
  Index keep = 0;
  for (auto _ : state) {
    const Eigen::MatrixXf delta = s * (B * A);
    const auto svd = lora::linalg::denseSVD(delta);
    const Eigen::VectorXd e = svd.S.cast<double>().array().square().matrix();
    double acc = 0;
    for (keep = 0; keep < e.size() && acc < 0.9 * e.sum(); ++keep) acc += e(keep);
    benchmark::DoNotOptimize(svd.U.data());
  }
  // Modules of this shape in the adapter: 4 per layer for 4096 x 4096, 3 for the MLP shapes.
  const double perLayer = out == in ? 4.0 : 3.0;
  state.counters["kept_rank"] = static_cast<double>(keep);
  state.counters["delta_MB"] = static_cast<double>(out * in) * 4 / 1e6;
  state.counters["modules_in_adapter"] = perLayer * kLayers;
}
BENCHMARK(BM_DenseModule)
    ->Args({kHidden, kHidden})
    ->Args({kInter, kHidden})
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kSecond);

// ---------------------------------------------------------------------------------------------
// The SDXL-sized kohya LoRA.

struct KohyaShape {
  std::string name;
  Index out, in, kernel;  // kernel 0: linear
  Index cols() const { return kernel > 0 ? in * kernel * kernel : in; }
};

std::vector<KohyaShape> sdxlModules() {
  std::vector<KohyaShape> m;
  const auto attention = [&](const std::string& prefix, Index c, int depth) {
    m.push_back({prefix + "_proj_in", c, c, 0});
    m.push_back({prefix + "_proj_out", c, c, 0});
    for (int b = 0; b < depth; ++b) {
      const std::string t = prefix + "_transformer_blocks_" + std::to_string(b);
      for (const char* p : {"_attn1_to_q", "_attn1_to_k", "_attn1_to_v", "_attn1_to_out_0",
                            "_attn2_to_q", "_attn2_to_out_0"})
        m.push_back({t + p, c, c, 0});
      m.push_back({t + "_attn2_to_k", c, 2048, 0});
      m.push_back({t + "_attn2_to_v", c, 2048, 0});
      m.push_back({t + "_ff_net_0_proj", 8 * c, c, 0});
      m.push_back({t + "_ff_net_2", c, 4 * c, 0});
    }
  };
  const auto resnet = [&](const std::string& prefix, Index in, Index out) {
    m.push_back({prefix + "_in_layers_2", out, in, 3});
    m.push_back({prefix + "_out_layers_3", out, out, 3});
  };
  const std::string u = "lora_unet_";
  resnet(u + "input_blocks_1_0", 320, 320);
  resnet(u + "input_blocks_2_0", 320, 320);
  m.push_back({u + "input_blocks_3_0_op", 320, 320, 3});
  resnet(u + "input_blocks_4_0", 320, 640);
  attention(u + "input_blocks_4_1", 640, 2);
  resnet(u + "input_blocks_5_0", 640, 640);
  attention(u + "input_blocks_5_1", 640, 2);
  m.push_back({u + "input_blocks_6_0_op", 640, 640, 3});
  resnet(u + "input_blocks_7_0", 640, 1280);
  attention(u + "input_blocks_7_1", 1280, 10);
  resnet(u + "input_blocks_8_0", 1280, 1280);
  attention(u + "input_blocks_8_1", 1280, 10);
  resnet(u + "middle_block_0", 1280, 1280);
  attention(u + "middle_block_1", 1280, 10);
  resnet(u + "middle_block_2", 1280, 1280);
  const Index upIn[9] = {2560, 2560, 1920, 1920, 1280, 960, 960, 640, 640};
  const Index upOut[9] = {1280, 1280, 1280, 640, 640, 640, 320, 320, 320};
  for (int i = 0; i < 9; ++i) {
    const std::string block = u + "output_blocks_" + std::to_string(i);
    resnet(block + "_0", upIn[i], upOut[i]);
    if (i < 6) attention(block + "_1", upOut[i], i < 3 ? 10 : 2);
    if (i == 2) m.push_back({block + "_2_conv", 1280, 1280, 3});
    if (i == 5) m.push_back({block + "_2_conv", 640, 640, 3});
  }
  return m;
}

constexpr Index kSdxlRank = 32;

// up (out x r) with column j scaled by 0.85^j, down (r x cols) Gaussian / sqrt(cols).
void sdxlFactors(const KohyaShape& s, std::uint64_t seed, Eigen::MatrixXf& up,
                 Eigen::MatrixXf& down) {
  lora::Rng rng(seed);
  up.resize(s.out, kSdxlRank);
  down.resize(kSdxlRank, s.cols());
  lora::fillNormal(up, rng, 0.0, 0.01);
  lora::fillNormal(down, rng, 0.0, 1.0 / std::sqrt(static_cast<double>(s.cols())));
  for (Index j = 0; j < kSdxlRank; ++j) up.col(j) *= static_cast<float>(std::pow(0.85, j));
}

struct SdxlLora {
  fs::path root, file;
  std::uintmax_t bytes = 0;
  std::size_t modules = 0;
  SdxlLora() {
    root = fs::temp_directory_path() / ("lorapp_kohya_bench_" + std::to_string(::getpid()));
    file = root / "sdxl_lora.safetensors";
    // Written by a child, as Adapter() explains.
    inChildProcess([this] { write(); }, "writing the SDXL-sized kohya LoRA");
    bytes = fs::file_size(file);
    modules = sdxlModules().size();
  }
  void write() const {
    fs::create_directories(root);
    lora::SafeTensorsWriter w;
    Eigen::MatrixXf up, down;
    std::uint64_t seed = 100;
    for (const KohyaShape& s : sdxlModules()) {
      sdxlFactors(s, seed++, up, down);
      std::vector<std::int64_t> downShape{kSdxlRank, s.in}, upShape{s.out, kSdxlRank};
      if (s.kernel > 0) {
        downShape = {kSdxlRank, s.in, s.kernel, s.kernel};
        upShape = {s.out, kSdxlRank, 1, 1};
      }
      w.addFlat(s.name + ".lora_down.weight", downShape, down.transpose().reshaped(),
                lora::DType::F16);
      w.addFlat(s.name + ".lora_up.weight", upShape, up.transpose().reshaped(), lora::DType::F16);
      w.addFlat(s.name + ".alpha", {}, Eigen::VectorXf::Constant(1, 16.0f), lora::DType::F16);
    }
    w.setMetadata("ss_network_dim", "32");
    w.setMetadata("ss_network_alpha", "16.0");
    w.setMetadata("ss_network_module", "networks.lora");
    w.sortAsReference();
    w.write(file);
  }
  ~SdxlLora() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};

const SdxlLora& sdxlLora() {
  static const SdxlLora l;
  return l;
}

// The dense way, extrapolated: seconds to form and decompose every module's delta, from one
// module of each distinct shape (measured once per run, on the threads lora::numThreads() gives).
double denseSdxlSeconds() {
  static const double seconds = [] {
    std::map<std::tuple<Index, Index>, int> count;
    for (const KohyaShape& s : sdxlModules()) ++count[{s.out, s.cols()}];
    double total = 0;
    std::uint64_t seed = 7;
    for (const auto& [shape, n] : count) {
      KohyaShape s{"dense", std::get<0>(shape), std::get<1>(shape), 0};
      Eigen::MatrixXf up, down;
      sdxlFactors(s, seed++, up, down);
      const auto t0 = std::chrono::steady_clock::now();
      const Eigen::MatrixXf delta = up * down;
      const auto svd = lora::linalg::denseSVD(delta);
      benchmark::DoNotOptimize(svd.U.data());
      const auto t1 = std::chrono::steady_clock::now();
      const double each = std::chrono::duration<double>(t1 - t0).count();
      std::fprintf(stderr, "dense: %5ld x %5ld  %3d module(s)  %7.3f s each\n",
                   static_cast<long>(s.out), static_cast<long>(s.in), n, each);
      total += n * each;
    }
    return total;
  }();
  return seconds;
}

void BM_LoraResizeSdxlKohya(benchmark::State& state) {
  const SdxlLora& l = sdxlLora();
  const fs::path out = l.root / "resized.safetensors";
  long peak = 0;
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const int rc = runChild({LORA_CLI, "resize", l.file.string(), out.string(), "--sv-fro", "0.9",
                             "--threads", std::to_string(state.range(0)), "--quiet", "--force"},
                            peak);
    const auto t1 = std::chrono::steady_clock::now();
    if (rc != 0) {
      state.SkipWithError("lora resize failed");
      break;
    }
    seconds = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(seconds);
    state.counters["out_MB"] = static_cast<double>(fs::file_size(out)) / 1e6;
  }
  fs::remove(out);
  const lora::ScopedNumThreads threads(static_cast<int>(state.range(0)));
  const double dense = denseSdxlSeconds();
  state.counters["modules"] = static_cast<double>(l.modules);
  state.counters["file_MB"] = static_cast<double>(l.bytes) / 1e6;
  state.counters["peak_rss_MB"] = static_cast<double>(peak) / 1e6;
  state.counters["peak_over_file"] = static_cast<double>(peak) / static_cast<double>(l.bytes);
  state.counters["dense_s"] = dense;
  state.counters["dense_over_factored"] = dense / seconds;
}
BENCHMARK(BM_LoraResizeSdxlKohya)->Arg(2)->Iterations(3)->UseManualTime()->Unit(benchmark::kSecond);

}  // namespace

BENCHMARK_MAIN();
