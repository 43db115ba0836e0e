// `lora merge`: a base model's safetensors file with a PEFT adapter merged into it, as PEFT's
// `merge_and_unload()` computes it: W' = W + s·B·A, or with DoRA W' = m / ||W + s·B·A||_row ⊙
// (W + s·B·A) (reference: PEFT `LoraLayer.merge`, `DoraLinearLayer.get_weight_norm`).

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.hpp"
#include "common.hpp"
#include "lora/error.hpp"
#include "lora/io/gguf.hpp"
#include "lora/io/gguf_adapter.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/io/safetensors.hpp"
#include "lora/layer.hpp"
#include "outputs.hpp"

namespace lora::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kWhereMerge = "merge";

struct MergeArgs {
  std::string base, adapter, out, dtype, baseConfig;
  int nHead = 0, nHeadKv = 0;
  bool residual = false;
  bool force = false;
  CommonOptions common;
};

bool isFloat(DType d) {
  return d == DType::F16 || d == DType::BF16 || d == DType::F32 || d == DType::F64;
}

std::string shapeText(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// The adapter: a PEFT folder, or a GGUF file whose modules are named as the base's weights
// (`model.layers.N...` or `layers.N...`) and whose q/k rows are un-permuted with the head counts.
PeftAdapterFile openAdapter(const MergeArgs& a) {
  refuseKohyaFile("merge", a.adapter);
  if (!GgufReader::looksLikeGguf(a.adapter)) return PeftAdapterFile::open(a.adapter);
  GgufHeads heads;
  if (!a.baseConfig.empty()) heads = readBaseConfig(a.baseConfig).heads;
  if (a.nHead > 0) heads.nHead = a.nHead;
  if (a.nHeadKv > 0) heads.nHeadKv = a.nHeadKv;
  const SafeTensorsReader base = SafeTensorsReader::map(a.base);
  PeftAdapterFile file = PeftAdapterFile::openGguf(a.adapter, heads, "model.");
  if (!base.contains(file.modules().front().name + ".weight"))
    file = PeftAdapterFile::openGguf(a.adapter, heads, "");
  for (const auto& m : file.modules()) {
    if (m.ggufHeads < 0)
      detail::fail(kWhereMerge,
                   "expected the head counts (--base-config CONFIG.json, or --n-head and "
                   "--n-head-kv) to merge '{}' from a GGUF adapter (llama.cpp stores the rows of "
                   "llama's q and k permuted per head), got none",
                   m.name);
  }
  return file;
}

void run(const CLI::App* cmd, const MergeArgs& a) {
  const unsigned threads = threadCount(cmd, a.common);
  std::optional<DType> outType;
  if (!a.dtype.empty()) outType = parseDTypeName(a.dtype, kWhereMerge);
  std::vector<fs::path> inputs = adapterInputs(a.adapter);
  inputs.emplace_back(a.base);
  checkOutputFile(kWhereMerge, "--out", a.out, inputs, a.force);

  const PeftAdapterFile file = openAdapter(a);
  const AdapterConfig& cfg = file.config();
  if (mutatesBase(cfg) && !a.residual) {
    detail::fail(kWhereMerge,
                 "expected an adapter whose factors apply to the original base weights, got "
                 "init_lora_weights \"{}\", whose factors apply to the residual W - s·B0·A0 "
                 "(convert it with `lora convert-pissa` first, or pass --residual if '{}' holds "
                 "the residual weights)",
                 cfg.initLoraWeights, a.base);
  }
  const SafeTensorsReader base = SafeTensorsReader::open(a.base);

  // Every module must find its weight, of the right shape, before anything is computed.
  std::map<std::string, std::size_t, std::less<>> adapted;  // base key -> module index
  const auto& modules = file.modules();
  for (std::size_t i = 0; i < modules.size(); ++i) {
    const auto& m = modules[i];
    const std::string key = m.name + ".weight";
    if (!base.contains(key)) {
      detail::fail(kWhereMerge,
                   "expected a tensor '{}' in '{}' for the adapter module '{}', got none", key,
                   a.base, m.name);
    }
    const TensorInfo& t = base.info(key);
    const std::vector<std::int64_t> want = cfg.fanInFanOut ? std::vector<std::int64_t>{m.in, m.out}
                                                           : std::vector<std::int64_t>{m.out, m.in};
    if (t.shape != want || !isFloat(t.dtype)) {
      detail::fail(kWhereMerge,
                   "expected '{}' in '{}' to be a floating-point tensor of shape {} ({}) for the "
                   "adapter module '{}' (lora_A {}x{}, lora_B {}x{}), got {} {}",
                   key, a.base, shapeText(want),
                   cfg.fanInFanOut ? "in x out, fan_in_fan_out" : "out x in", m.name, m.rank, m.in,
                   m.out, m.rank, dtypeName(t.dtype), shapeText(t.shape));
    }
    adapted.emplace(key, i);
  }

  const std::vector<std::string>& names = base.names();
  std::vector<SafeTensorsWriter> parts(names.size());
  {
    io::Progress progress("merge", names.size(), a.common.quiet);
    parallelFor(
        names.size(), threads,
        [&](std::size_t i) {
          const std::string& name = names[i];
          const TensorInfo& t = base.info(name);
          SafeTensorsWriter& w = parts[i];
          const auto it = adapted.find(name);
          if (it != adapted.end()) {
            const auto& m = modules[it->second];
            Eigen::MatrixXd W = base.matrix<double>(name);
            if (cfg.fanInFanOut) W.transposeInPlace();
            auto layer = Layer<double>::fromFactors(file.A<double>(m), file.B<double>(m), m.alpha,
                                                    file.scalingMode());
            if (!m.keyMagnitude.empty()) layer.setMagnitude(file.magnitude<double>(m));
            layer.bindBase(W);
            layer.merge();
            const DType type = outType.value_or(t.dtype);
            if (cfg.fanInFanOut) {
              w.add(name, W.transpose(), type);
            } else {
              w.add(name, W, type);
            }
          } else if (outType && isFloat(t.dtype) && t.dtype != *outType) {
            w.addFlat(name, t.shape, base.flat<double>(name), *outType);
          } else {
            w.addRaw(name, t.dtype, t.shape, base.rawBytes(name));
          }
        },
        &progress);
  }
  SafeTensorsWriter out;
  for (const auto& [key, value] : base.metadata()) out.setMetadata(key, value);
  for (SafeTensorsWriter& w : parts) out.append(std::move(w));
  out.write(a.out);
  fmt::print("merged {} adapter modules of {} into {} tensors of {} -> {}{}\n", modules.size(),
             a.adapter, names.size(), a.base, a.out,
             outType ? fmt::format(" ({} floating-point tensors)", dtypeName(*outType)) : "");
}

}  // namespace

void addMerge(CLI::App& app) {
  auto args = std::make_shared<MergeArgs>();
  CLI::App* cmd = app.add_subcommand("merge",
                                     "Merge a PEFT adapter (or a GGUF adapter for llama.cpp) into "
                                     "a base model's safetensors file as PEFT's merge_and_unload "
                                     "does (DoRA included); every other tensor is copied.");
  cmd->add_option("--base", args->base, "base model .safetensors (torch state-dict names)")
      ->required();
  cmd->add_option("--adapter", args->adapter, "PEFT adapter folder or GGUF adapter file")
      ->required();
  cmd->add_option("--base-config", args->baseConfig,
                  "GGUF adapter: the base model's config.json, for llama's q/k head counts");
  cmd->add_option("--n-head", args->nHead, "GGUF adapter: attention heads (llama's q)");
  cmd->add_option("--n-head-kv", args->nHeadKv,
                  "GGUF adapter: key-value heads (llama's k; default --n-head)");
  cmd->add_option("--out", args->out, "merged .safetensors to write (atomically)")->required();
  cmd->add_option("--dtype", args->dtype,
                  "f32, f16 or bf16 for every floating-point tensor (default: keep each tensor's)");
  addForceFlag(cmd, args->force);
  cmd->add_flag("--residual", args->residual,
                "BASE holds the residual weights of a PiSSA/OLoRA adapter (W - s·B0·A0), so the "
                "adapter is merged as it is");
  addCommonOptions(cmd, args->common, false);
  cmd->callback([cmd, args] { run(cmd, *args); });
}

}  // namespace lora::cli
