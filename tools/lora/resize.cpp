// `lora resize DIR OUT_DIR`: a new rank per module from the spectrum of its s·B·A (one rule for
// all modules), and the truncated SVD of s·B·A at that rank as the new factors, computed from the
// factors (FactoredSVD: O((out + in)·r²), never the out x in matrix). Modules are read from the
// mapped file, resized and encoded one at a time per thread and written as they finish (in
// module order), so memory stays near a few modules' tensors whatever the adapter's size.
//
// Rules: --rank N; --energy T (PEFT convert_to_lora's energy rule); --sv-ratio, --sv-cumulative,
// --sv-fro (kohya sd-scripts networks/resize_lora.py); --knee; --rank-pattern FILE (PEFT's
// pattern rule). The scaling s of each module is kept, so alpha becomes s·k (s·sqrt(k) with
// rsLoRA), as kohya's resize_lora.py keeps alpha/dim.

#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "lora/error.hpp"
#include "lora/io/adapter_config.hpp"
#include "lora/io/gguf.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/io/peft_writer.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/linalg/spectrum.hpp"
#include "outputs.hpp"
#include "resize_kohya.hpp"

namespace lora::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kWhereResize = "resize";
using Index = Eigen::Index;

struct ResizeArgs {
  std::string dir, outDir, dtype, rankPattern;
  int rank = 0;
  double energy = 0, svRatio = 0, svCumulative = 0, svFro = 0;
  bool knee = false;
  int minRank = 1, maxRank = 0, convRank = 0;
  bool force = false;
  CommonOptions common;
};

enum class Rule { Rank, Energy, SvRatio, SvCumulative, SvFro, Knee, Pattern };

struct Plan {
  Rule rule = Rule::Rank;
  std::string name;      // the flag, for reports
  double threshold = 0;  // --rank N, or T
  std::optional<AdapterConfig> pattern;
  Index minRank = 1;
  std::optional<Index> maxRank;
};

void checkFraction(const char* flag, double t) {
  if (!(t > 0.0 && t <= 1.0)) detail::fail(kWhereResize, "expected {} in (0, 1], got {}", flag, t);
}

/// A rank_pattern file: {"rank_pattern": {...}, "r": N} (what `lora recommend` writes) or a
/// bare {key: rank} object; keys follow PEFT's rule. Modules that no key matches keep their
/// rank unless "r" is given.
AdapterConfig loadRankPattern(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) detail::fail(kWhereResize, "expected a readable --rank-pattern file, got '{}'", path);
  std::ostringstream text;
  text << in.rdbuf();
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    detail::fail(kWhereResize, "expected valid JSON in '{}', got {}", path, e.what());
  }
  if (!j.is_object())
    detail::fail(kWhereResize, "expected a JSON object in '{}', got {}", path, j.type_name());
  nlohmann::ordered_json cfg;
  cfg["peft_type"] = "LORA";
  if (j.contains("rank_pattern")) {
    cfg["rank_pattern"] = j["rank_pattern"];
    cfg["r"] = j.contains("r") ? j["r"] : nlohmann::ordered_json(INT_MAX);
  } else {
    cfg["rank_pattern"] = j;
    cfg["r"] = INT_MAX;  // no default: unmatched modules keep their rank
  }
  return AdapterConfig::parse(cfg.dump(), path);
}

Plan makePlan(const CLI::App* cmd, const ResizeArgs& a) {
  Plan p;
  if (cmd->count("--rank")) {
    if (a.rank < 1) detail::fail(kWhereResize, "expected --rank >= 1, got {}", a.rank);
    p.rule = Rule::Rank;
    p.name = "rank";
    p.threshold = a.rank;
  } else if (cmd->count("--energy")) {
    checkFraction("--energy", a.energy);
    p.rule = Rule::Energy;
    p.name = "energy";
    p.threshold = a.energy;
  } else if (cmd->count("--sv-ratio")) {
    if (!(std::isfinite(a.svRatio) && a.svRatio >= 1.0))
      detail::fail(kWhereResize, "expected --sv-ratio to be a finite number >= 1, got {}",
                   a.svRatio);
    p.rule = Rule::SvRatio;
    p.name = "sv_ratio";
    p.threshold = a.svRatio;
  } else if (cmd->count("--sv-cumulative")) {
    checkFraction("--sv-cumulative", a.svCumulative);
    p.rule = Rule::SvCumulative;
    p.name = "sv_cumulative";
    p.threshold = a.svCumulative;
  } else if (cmd->count("--sv-fro")) {
    checkFraction("--sv-fro", a.svFro);
    p.rule = Rule::SvFro;
    p.name = "sv_fro";
    p.threshold = a.svFro;
  } else if (cmd->count("--knee")) {
    p.rule = Rule::Knee;
    p.name = "knee";
  } else {
    p.rule = Rule::Pattern;
    p.name = "rank_pattern";
  }
  if (cmd->count("--min-rank") && a.minRank < 1)
    detail::fail(kWhereResize, "expected --min-rank >= 1, got {}", a.minRank);
  if (cmd->count("--max-rank") && a.maxRank < 1)
    detail::fail(kWhereResize, "expected --max-rank >= 1, got {}", a.maxRank);
  p.minRank = a.minRank;
  if (cmd->count("--max-rank")) p.maxRank = a.maxRank;
  if (p.maxRank && *p.maxRank < p.minRank)
    detail::fail(kWhereResize, "expected --min-rank <= --max-rank, got {} and {}", p.minRank,
                 *p.maxRank);
  if (p.rule == Rule::Pattern) p.pattern = loadRankPattern(a.rankPattern);
  return p;
}

Index ruleRank(const Plan& p, const Eigen::VectorXd& sigma, const PeftAdapterFile::Module& m) {
  switch (p.rule) {
    case Rule::Rank:
      return static_cast<Index>(p.threshold);
    case Rule::Energy:
      return linalg::energyRank(sigma, p.threshold);
    case Rule::SvRatio:
      return linalg::kohyaSvRatio(sigma, p.threshold);
    case Rule::SvCumulative:
      return linalg::kohyaSvCumulative(sigma, p.threshold);
    case Rule::SvFro:
      return linalg::kohyaSvFro(sigma, p.threshold);
    case Rule::Knee:
      return linalg::kneeRank(sigma);
    case Rule::Pattern: {
      const int r = p.pattern->rankFor(m.name);
      return r == INT_MAX ? m.rank : r;
    }
  }
  return m.rank;
}

// Half the distance from 1 to the next number in `type`; 0 for F64 (the computation's own
// precision).
double unitRoundoff(DType type) {
  switch (type) {
    case DType::F32:
      return 0x1p-24;
    case DType::F16:
      return 0x1p-11;
    case DType::BF16:
      return 0x1p-8;
    default:
      return 0;
  }
}

struct ModuleResult {
  Index oldRank = 0, newRank = 0;
  double oldAlpha = 0, newAlpha = 0, scaling = 0;
  double retainedEnergy = 1;
  Index paramsBefore = 0, paramsAfter = 0;
};

// A GGUF adapter resized: each module's tensors encoded (in worker threads) and written in
// module order at the end, with the input's key-value pairs; llama.cpp's scale alpha / k then
// gives every module the scaling it had.
struct GgufSink {
  GgmlType type = GgmlType::F16;
  bool hasAlpha = true;
  struct Tensors {
    std::vector<std::byte> a, b;
    GgmlType typeA = GgmlType::F32, typeB = GgmlType::F32;
    std::vector<std::uint64_t> neA, neB;
  };
  std::vector<Tensors> modules;
};

// A kohya LoRA file: kohya's rules and flags (--rank, --sv-*, --max-rank as kohya's --new_rank
// cap, default 4; --conv-rank as its --new_conv_rank).
void runKohya(const CLI::App* cmd, const ResizeArgs& a) {
  for (const char* flag : {"--energy", "--knee", "--rank-pattern", "--min-rank"}) {
    if (cmd->count(flag)) {
      detail::fail(kWhereResize,
                   "expected --rank, --sv-ratio, --sv-cumulative or --sv-fro for the kohya LoRA "
                   "file '{}' (the rules of kohya's resize_lora.py), got {}",
                   a.dir, flag);
    }
  }
  KohyaResizeRequest q;
  q.in = a.dir;
  q.out = a.outDir;
  q.force = a.force;
  q.common = a.common;
  q.threads = threadCount(cmd, a.common);
  KohyaResizeOptions& o = q.options;
  if (cmd->count("--rank")) {
    if (cmd->count("--max-rank")) {
      detail::fail(kWhereResize,
                   "expected --max-rank only with --sv-ratio, --sv-cumulative or --sv-fro (it "
                   "caps their ranks), got it with --rank {}",
                   a.rank);
    }
    o.rule = KohyaRule::Fixed;
    o.rank = a.rank;
    q.ruleFlag = fmt::format("--rank {}", a.rank);
  } else {
    const auto [rule, flag, t] =
        cmd->count("--sv-ratio") ? std::tuple{KohyaRule::SvRatio, "--sv-ratio", a.svRatio}
        : cmd->count("--sv-cumulative")
            ? std::tuple{KohyaRule::SvCumulative, "--sv-cumulative", a.svCumulative}
            : std::tuple{KohyaRule::SvFro, "--sv-fro", a.svFro};
    o.rule = rule;
    o.parameter = t;
    o.rank = cmd->count("--max-rank") ? a.maxRank : 4;  // kohya's --new_rank default
    q.ruleFlag = fmt::format("{} {}", flag, t);
  }
  if (cmd->count("--conv-rank")) {
    if (a.convRank < 1) detail::fail(kWhereResize, "expected --conv-rank >= 1, got {}", a.convRank);
    o.convRank = a.convRank;
  }
  if (!a.dtype.empty()) {
    o.dtype = parseDTypeName(a.dtype, kWhereResize);
    if (o.dtype == DType::F64)
      detail::fail(kWhereResize, "expected --dtype f32, f16 or bf16 for a kohya file, got f64");
  }
  resizeKohya(q);
}

void run(const CLI::App* cmd, const ResizeArgs& a) {
  if (isKohyaFile(a.dir)) {
    runKohya(cmd, a);
    return;
  }
  if (cmd->count("--conv-rank"))
    detail::fail(kWhereResize, "expected --conv-rank only for a kohya LoRA file, got '{}'", a.dir);
  const unsigned threads = threadCount(cmd, a.common);
  const Plan plan = makePlan(cmd, a);
  std::vector<fs::path> inputs = adapterInputs(a.dir);
  if (!a.rankPattern.empty()) inputs.emplace_back(a.rankPattern);
  const bool gguf = GgufReader::looksLikeGguf(a.dir);
  if (gguf) {
    checkOutputFile(kWhereResize, "OUT", a.outDir, inputs, a.force);
  } else {
    checkOutputFolder(kWhereResize, "OUT_DIR", a.outDir,
                      {"adapter_config.json", "adapter_model.safetensors"}, inputs, a.force);
  }
  const PeftAdapterFile file = PeftAdapterFile::open(a.dir);
  if (mutatesBase(file.config())) {
    detail::fail(kWhereResize,
                 "expected an adapter whose factors apply to the original base weights, got "
                 "init_lora_weights \"{}\" (its factors apply to a residual base; run `lora "
                 "convert-pissa` first)",
                 file.config().initLoraWeights);
  }
  const auto& modules = file.modules();
  std::optional<GgufSink> ggufSink;
  DType outType = DType::F32;
  double roundoff = 0;
  if (gguf) {
    ggufSink.emplace();
    ggufSink->type = a.dtype.empty() ? file.gguf()->tensor(modules.front().keyA).type
                                     : parseGgmlTypeName(a.dtype, kWhereResize);
    ggufSink->hasAlpha = file.gguf()->find("adapter.lora.alpha") != nullptr;
    ggufSink->modules.resize(modules.size());
    roundoff = ggufSink->type == GgmlType::F32    ? unitRoundoff(DType::F32)
               : ggufSink->type == GgmlType::BF16 ? unitRoundoff(DType::BF16)
                                                  : unitRoundoff(DType::F16);
  } else {
    outType = a.dtype.empty() ? file.dtype() : parseDTypeName(a.dtype, kWhereResize);
    roundoff = unitRoundoff(outType);
  }
  const ScalingMode mode = file.scalingMode();

  std::vector<ModuleResult> results(modules.size());
  // The output streams to its staging file as modules finish, in module order (so the file does
  // not depend on the thread count): a module that finishes early waits in `ready`.
  std::vector<ModuleBound> bounds;
  bounds.reserve(modules.size());
  for (const auto& m : modules)
    bounds.push_back({m.name, static_cast<int>(m.rank), m.in, m.out, !m.keyMagnitude.empty()});
  PeftAdapterWriter writer(file.config(), outType);
  if (!gguf) writer.streamTo(a.outDir, bounds);
  std::vector<std::optional<PeftAdapterWriter>> ready(modules.size());
  std::mutex writing;
  std::size_t next = 0;
  {
    io::Progress progress("resize", modules.size(), a.common.quiet);
    parallelFor(
        modules.size(), threads,
        [&](std::size_t i) {
          const auto& m = modules[i];
          ModuleResult& res = results[i];
          const Eigen::MatrixXd A = file.A<double>(m);
          Eigen::MatrixXd B = file.B<double>(m);
          Eigen::MatrixXd At;  // the new A, transposed, when the rank changes
          bool transposed = false;
          const double s = file.scaling(m);
          // The new factors are stored in outType: singular vectors orthonormal to its unit
          // roundoff are as good as exact ones, and well-conditioned factors then take one
          // Cholesky QR pass instead of two.
          linalg::FactoredSVD<double> svd;
          svd.setOrthogonalityTolerance(roundoff);
          svd.compute(B, A, s);
          if (svd.info() != Eigen::Success)
            detail::fail(kWhereResize,
                         "expected the SVD of s·B·A for '{}' to converge, got no convergence",
                         m.name);
          const Eigen::VectorXd& sigma = svd.singularValues();
          Index k = std::max(ruleRank(plan, sigma, m), plan.minRank);
          if (plan.maxRank) k = std::min(k, *plan.maxRank);
          k = std::max<Index>(1, std::min<Index>(k, sigma.size()));

          res.oldRank = m.rank;
          res.newRank = k;
          res.oldAlpha = m.alpha;
          res.scaling = s;
          res.retainedEnergy = energyShare(sigma, k);
          const Index extra = m.keyMagnitude.empty() ? 0 : m.out;
          res.paramsBefore = m.rank * (m.in + m.out) + extra;
          res.paramsAfter = k * (m.in + m.out) + extra;
          // GGUF: the file's alpha stays; the new factors carry llama.cpp's alpha / k (1 without
          // an alpha) instead of s.
          const double split = !gguf                ? s
                               : ggufSink->hasAlpha ? m.alpha / static_cast<double>(k)
                                                    : 1.0;
          if (k == m.rank) {
            res.newAlpha = m.alpha;  // unchanged: the factors are kept as they are
          } else {
            // Truncated SVD, σ split evenly: A' = diag(sqrt(σ/s)) V^T, B' = U diag(sqrt(σ/s));
            // a null direction keeps a unit row in A and a zero column in B. A' is kept as its
            // transpose V diag(...) (in x k), which is A' row-major, the file's layout.
            const double tiny = std::numeric_limits<double>::epsilon() * sigma(0);
            Eigen::VectorXd dA(k), dB(k);
            for (Index j = 0; j < k; ++j) {
              const bool null = sigma(j) <= tiny;
              dB(j) = null ? 0.0 : std::sqrt(sigma(j) / split);
              dA(j) = null ? 1.0 : dB(j);
            }
            At = svd.matrixV().leftCols(k) * dA.asDiagonal();
            B = svd.matrixU().leftCols(k) * dB.asDiagonal();
            transposed = true;
            res.newAlpha = gguf ? m.alpha : alphaFor(s, k, mode);
          }
          if (gguf) {
            GgufSink::Tensors& t = ggufSink->modules[i];
            const auto encode = [&](const Eigen::MatrixXf& M, GgmlType& type,
                                    std::vector<std::uint64_t>& ne, std::vector<std::byte>& out) {
              type = ggufSink->type;
              if (type == GgmlType::Q8_0 && M.cols() % 32 != 0) type = GgmlType::F16;
              ne = {static_cast<std::uint64_t>(M.cols()), static_cast<std::uint64_t>(M.rows())};
              out = encodeGgmlMatrix(M, type);
            };
            const GgufReader& in = *file.gguf();
            const GgufTensorInfo &ia = in.tensor(m.keyA), &ib = in.tensor(m.keyB);
            if (k == m.rank && ia.type == ggufSink->type && ib.type == ggufSink->type) {
              // Unchanged and in the same type: the bytes as they are.
              const auto ra = in.rawBytes(ia), rb = in.rawBytes(ib);
              t.a.assign(ra.begin(), ra.end());
              t.b.assign(rb.begin(), rb.end());
              t.typeA = ia.type;
              t.typeB = ib.type;
              t.neA = ia.ne;
              t.neB = ib.ne;
            } else {
              encode(transposed ? Eigen::MatrixXf(At.transpose().cast<float>())
                                : Eigen::MatrixXf(A.cast<float>()),
                     t.typeA, t.neA, t.a);
              encode(B.cast<float>(), t.typeB, t.neB, t.b);
            }
            file.release(m);
            return;
          }
          PeftAdapterWriter part(file.config(), outType);
          const auto write = [&](const auto& newA) {
            if (m.keyMagnitude.empty()) {
              part.add(m.name, newA, B, res.newAlpha);
            } else {
              part.add(m.name, newA, B, res.newAlpha, file.magnitude<double>(m));
            }
          };
          if (transposed) {
            write(At.transpose());
          } else {
            write(A);
          }
          file.release(m);
          const std::lock_guard lock(writing);
          ready[i] = std::move(part);
          for (; next < ready.size() && ready[next]; ++next) {
            writer.append(std::move(*ready[next]));
            ready[next].reset();
          }
        },
        &progress);
  }
  if (gguf) {
    const GgufReader& in = *file.gguf();
    GgufWriter w(static_cast<std::uint32_t>(in.alignment()));
    for (const auto& [key, value] : in.metadata())
      if (key != "general.alignment") w.set(key, value);
    for (std::size_t i = 0; i < modules.size(); ++i) {
      GgufSink::Tensors& t = ggufSink->modules[i];
      const std::string weight = modules[i].keyA.substr(0, modules[i].keyA.size() - 7);
      w.addRaw(weight + ".lora_a", t.typeA, std::move(t.neA), std::move(t.a));
      w.addRaw(weight + ".lora_b", t.typeB, std::move(t.neB), std::move(t.b));
    }
    w.write(a.outDir);
  } else {
    if (next != modules.size())
      detail::fail(kWhereResize, "expected every module written, got {} of {}", next,
                   modules.size());
    writer.write(a.outDir);
  }

  Index before = 0, after = 0, rankBefore = 0, rankAfter = 0;
  for (const ModuleResult& r : results) {
    before += r.paramsBefore;
    after += r.paramsAfter;
    rankBefore += r.oldRank;
    rankAfter += r.newRank;
  }
  std::error_code ec;
  const auto bytesAfter = fs::file_size(
      gguf ? fs::path(a.outDir) : fs::path(a.outDir) / "adapter_model.safetensors", ec);

  if (a.common.json) {
    nlohmann::ordered_json j;
    j["adapter"] = a.dir;
    j["out"] = a.outDir;
    j["rule"] = plan.name;
    if (plan.rule == Rule::Pattern) {
      j["rank_pattern_file"] = a.rankPattern;
    } else if (plan.rule != Rule::Knee) {
      j["threshold"] = plan.threshold;
    }
    j["min_rank"] = plan.minRank;
    j["max_rank"] = plan.maxRank ? nlohmann::ordered_json(*plan.maxRank) : nlohmann::ordered_json();
    j["dtype"] = std::string(dtypeName(outType));
    j["modules"] = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < modules.size(); ++i) {
      const ModuleResult& r = results[i];
      nlohmann::ordered_json e;
      e["name"] = modules[i].name;
      e["out"] = modules[i].out;
      e["in"] = modules[i].in;
      e["old_rank"] = r.oldRank;
      e["new_rank"] = r.newRank;
      e["old_alpha"] = r.oldAlpha;
      e["new_alpha"] = r.newAlpha;
      e["scaling"] = r.scaling;
      e["retained_energy"] = r.retainedEnergy;
      e["retained_fro"] = std::sqrt(r.retainedEnergy);
      e["params_before"] = r.paramsBefore;
      e["params_after"] = r.paramsAfter;
      j["modules"].push_back(std::move(e));
    }
    j["summary"] = {{"modules", modules.size()},
                    {"rank_before", rankBefore},
                    {"rank_after", rankAfter},
                    {"params_before", before},
                    {"params_after", after},
                    {"bytes_before", file.fileBytes()},
                    {"bytes_after", ec ? 0 : bytesAfter},
                    {"peak_rss_bytes", peakRssBytes()}};
    fmt::print("{}\n", j.dump(2));
    return;
  }

  Table table({"module", "out", "in", "rank", "new rank", "alpha", "new alpha", "fro kept"});
  for (std::size_t i = 0; i < modules.size(); ++i) {
    const ModuleResult& r = results[i];
    table.add({modules[i].name, std::to_string(modules[i].out), std::to_string(modules[i].in),
               std::to_string(r.oldRank), std::to_string(r.newRank), num(r.oldAlpha),
               num(r.newAlpha), fmt::format("{:.2f}%", 100.0 * std::sqrt(r.retainedEnergy))});
  }
  table.print(stdout);
  fmt::print("rule {}{}; ranks clamped to [{}, {}]\n", plan.name,
             plan.rule == Rule::Knee      ? std::string()
             : plan.rule == Rule::Pattern ? " from " + a.rankPattern
                                          : fmt::format(" {}", plan.threshold),
             plan.minRank, plan.maxRank ? std::to_string(*plan.maxRank) : "min(r, out, in)");
  fmt::print("parameters: {} -> {} ({:.1f}%), rank sum {} -> {}, {} -> {} bytes, written to {}\n",
             before, after, before > 0 ? 100.0 * static_cast<double>(after) / before : 0.0,
             rankBefore, rankAfter, file.fileBytes(), ec ? 0 : bytesAfter, a.outDir);
}

}  // namespace

void addResize(CLI::App& app) {
  auto args = std::make_shared<ResizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "resize",
      "Shrink each module of a PEFT adapter to the rank a rule picks from the spectrum of its "
      "s·B·A; the new factors are the truncated SVD, computed from the factors. Writes a PEFT "
      "adapter whose rank_pattern/alpha_pattern give every module its new rank and alpha. A GGUF "
      "adapter gives a GGUF file; a kohya Stable Diffusion LoRA file a kohya file, by the rules "
      "of kohya's resize_lora.py (docs/cli.md).");
  cmd->add_option("DIR", args->dir,
                  "PEFT adapter folder, GGUF adapter file or kohya LoRA file (.safetensors)")
      ->required();
  cmd->add_option("OUT_DIR", args->outDir,
                  "folder for the resized adapter (a file when DIR is a GGUF or kohya file)")
      ->required();
  CLI::Option_group* rule = cmd->add_option_group("rule", "exactly one rank rule");
  rule->add_option("--rank", args->rank, "the same rank N for every module");
  rule->add_option("--energy", args->energy,
                   "smallest k keeping a fraction T of Σσ² (PEFT's convert_to_lora rule)");
  rule->add_option("--sv-ratio", args->svRatio, "kohya: #{σ_i > σ_1 / T}, T >= 1");
  rule->add_option("--sv-cumulative", args->svCumulative,
                   "kohya: smallest k with Σ_{i<=k} σ_i >= T Σσ");
  rule->add_option("--sv-fro", args->svFro,
                   "kohya: smallest k keeping a fraction T of the Frobenius norm");
  rule->add_flag("--knee", args->knee, "the knee of the spectrum (Kneedle)");
  rule->add_option("--rank-pattern", args->rankPattern,
                   "ranks from a rank_pattern JSON file (what `lora recommend --write-pattern` "
                   "writes), PEFT's pattern rule");
  rule->require_option(1);
  cmd->add_option("--min-rank", args->minRank, "lowest new rank (default 1)");
  cmd->add_option("--max-rank", args->maxRank,
                  "highest new rank (default: no limit; kohya files: the cap of the --sv-* "
                  "rules, kohya's --new_rank, default 4)");
  cmd->add_option("--conv-rank", args->convRank,
                  "kohya files: the rank (with --rank) or cap (--sv-*) of conv modules, kohya's "
                  "--new_conv_rank (default: that of the linear modules)");
  addForceFlag(cmd, args->force);
  cmd->add_option("--dtype", args->dtype,
                  "f32, f16 or bf16 for the new factors (GGUF: also q8_0; default: as read; "
                  "kohya files: f32, as kohya's --save_precision)");
  addCommonOptions(cmd, args->common, true);
  cmd->callback([cmd, args] { run(cmd, *args); });
}

}  // namespace lora::cli
