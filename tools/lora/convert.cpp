// `lora convert`: a PEFT adapter folder to a GGUF adapter for llama.cpp, or back. The input's
// format is read from its content (a folder with adapter_config.json, or a file that starts with
// GGUF's magic), not from its name.

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "lora/error.hpp"
#include "lora/io/gguf.hpp"
#include "lora/io/gguf_adapter.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/threads.hpp"
#include "outputs.hpp"

namespace lora::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kWhereConvert = "convert";

struct FormatConvertArgs {
  std::string in, out, to, baseConfig, arch, dtype, name, baseModel;
  std::optional<std::string> modulePrefix;
  int nHead = 0, nHeadKv = 0;
  bool force = false, skipUnknown = false;
  CommonOptions common;
};

GgufHeads headsFrom(const FormatConvertArgs& a, const GgufBaseConfig* base) {
  GgufHeads h;
  if (base != nullptr) h = base->heads;
  if (a.nHead > 0) h.nHead = a.nHead;
  if (a.nHeadKv > 0) h.nHeadKv = a.nHeadKv;
  if (a.nHead < 0 || a.nHeadKv < 0)
    detail::fail(kWhereConvert, "expected --n-head and --n-head-kv >= 1, got {} and {}", a.nHead,
                 a.nHeadKv);
  return h;
}

void toGguf(const FormatConvertArgs& a) {
  const PeftAdapterFile file = PeftAdapterFile::open(a.in);
  checkOutputFile(kWhereConvert, "OUT", a.out, adapterInputs(a.in), a.force);
  if (mutatesBase(file.config()))
    detail::fail(kWhereConvert,
                 "expected an adapter whose factors apply to the original base weights (llama.cpp "
                 "adds them to those), got init_lora_weights \"{}\" (run `lora convert-pissa` "
                 "first)",
                 file.config().initLoraWeights);
  std::optional<GgufBaseConfig> base;
  if (!a.baseConfig.empty()) base = readBaseConfig(a.baseConfig);
  PeftToGgufOptions o;
  o.arch = !a.arch.empty() ? a.arch : base ? base->arch : std::string();
  if (o.arch.empty())
    detail::fail(kWhereConvert,
                 "expected the architecture: --arch llama|qwen2, or --base-config with a "
                 "config.json llama.cpp knows, got {}",
                 base ? "a config.json of another architecture" : "neither");
  o.heads = headsFrom(a, base ? &*base : nullptr);
  o.type = parseGgmlTypeName(a.dtype.empty() ? "f16" : a.dtype, kWhereConvert);
  o.skipUnknown = a.skipUnknown;
  o.name = !a.name.empty() ? a.name : ggufDefaultName(a.in);
  const GgufConversionReport r = convertPeftToGguf(file, a.out, o);
  if (a.common.json) {
    nlohmann::ordered_json j;
    j["in"] = a.in;
    j["out"] = a.out;
    j["to"] = "gguf";
    j["arch"] = o.arch;
    j["type"] = ggmlTypeName(o.type);
    j["alpha"] = r.alpha;
    j["modules"] = r.modules;
    j["skipped"] = r.skipped;
    j["folded"] = r.folded;
    j["bytes"] = fs::file_size(a.out);
    j["peak_rss_bytes"] = peakRssBytes();
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("{} modules -> {} ({}, {}, alpha {}), {} bytes\n", r.modules, a.out, o.arch,
             ggmlTypeName(o.type), num(r.alpha), fs::file_size(a.out));
  if (!r.folded.empty())
    fmt::print("scale folded into B for {} module(s) (rsLoRA or alpha_pattern): {}\n",
               r.folded.size(), fmt::join(r.folded, ", "));
  if (!r.skipped.empty()) fmt::print("left out (--skip-unknown): {}\n", fmt::join(r.skipped, ", "));
}

void toPeft(const FormatConvertArgs& a) {
  const GgufReader gguf = GgufReader::open(a.in);
  checkOutputFolder(kWhereConvert, "OUT", a.out,
                    {"adapter_config.json", "adapter_model.safetensors"}, {fs::path(a.in)},
                    a.force);
  std::optional<GgufBaseConfig> base;
  if (!a.baseConfig.empty()) base = readBaseConfig(a.baseConfig);
  if (!a.arch.empty())
    detail::fail(kWhereConvert,
                 "expected no --arch when converting to PEFT (the GGUF file names its "
                 "architecture), got --arch {}",
                 a.arch);
  GgufToPeftOptions o;
  o.heads = headsFrom(a, base ? &*base : nullptr);
  o.dtype = parseDTypeName(a.dtype.empty() ? "f32" : a.dtype, kWhereConvert);
  if (!a.baseModel.empty()) o.baseModel = a.baseModel;
  if (a.modulePrefix) o.modulePrefix = *a.modulePrefix;
  const GgufConversionReport r = convertGgufToPeft(gguf, a.out, o);
  if (a.common.json) {
    nlohmann::ordered_json j;
    j["in"] = a.in;
    j["out"] = a.out;
    j["to"] = "peft";
    j["alpha"] = r.alpha;
    j["modules"] = r.modules;
    j["peak_rss_bytes"] = peakRssBytes();
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("{} modules -> {} (PEFT, alpha {})\n", r.modules, a.out, num(r.alpha));
}

void run(const CLI::App* cmd, const FormatConvertArgs& a) {
  // The library converts modules on lora::numThreads() threads.
  lora::setNumThreads(static_cast<int>(threadCount(cmd, a.common)));
  std::error_code ec;
  const bool peftIn = fs::is_directory(a.in, ec);
  const bool ggufIn = !peftIn && GgufReader::looksLikeGguf(a.in);
  if (!peftIn && !ggufIn)
    detail::fail(kWhereConvert,
                 "expected IN to be a PEFT adapter folder or a GGUF file, got '{}' ({})", a.in,
                 fs::exists(a.in, ec) ? "neither; a kohya LoRA file is read by `lora inspect` and "
                                        "`lora resize`"
                                      : "no such file or folder");
  const std::string to = a.to.empty() ? (peftIn ? "gguf" : "peft") : a.to;
  if (to != "gguf" && to != "peft")
    detail::fail(kWhereConvert, "expected --to gguf or peft, got '{}'", to);
  if ((to == "gguf") != peftIn)
    detail::fail(kWhereConvert, "expected an input in the other format for --to {}, got a {} '{}'",
                 to, peftIn ? "PEFT folder" : "GGUF file", a.in);
  if (to == "gguf")
    toGguf(a);
  else
    toPeft(a);
}

}  // namespace

void addConvert(CLI::App& app) {
  auto args = std::make_shared<FormatConvertArgs>();
  CLI::App* cmd = app.add_subcommand(
      "convert",
      "Convert a PEFT adapter folder to a GGUF adapter file for llama.cpp (llama.cpp's tensor "
      "names and q/k layout; rsLoRA and alpha_pattern folded so llama.cpp's alpha / r gives "
      "PEFT's scaling), or a GGUF adapter back to a PEFT folder.");
  cmd->add_option("IN", args->in, "PEFT adapter folder or GGUF file")->required();
  cmd->add_option("OUT", args->out, "GGUF file or PEFT folder to write")->required();
  cmd->add_option("--to", args->to, "gguf or peft (default: the other format)");
  cmd->add_option("--base-config", args->baseConfig,
                  "the base model's config.json (or its folder): architecture and head counts");
  cmd->add_option("--arch", args->arch, "llama or qwen2 (llama.cpp's names; Mistral is llama)");
  cmd->add_option("--n-head", args->nHead, "attention heads (llama's q permutation)");
  cmd->add_option("--n-head-kv", args->nHeadKv,
                  "key-value heads (llama's k permutation; default --n-head)");
  cmd->add_option("--dtype", args->dtype,
                  "to GGUF: f32, f16 (default), bf16 or q8_0; to PEFT: f32 (default), f16 or bf16");
  cmd->add_flag("--skip-unknown", args->skipUnknown,
                "leave out modules llama.cpp's architecture does not have (else an error)");
  cmd->add_option("--name", args->name, "general.name (default: from the adapter folder's name)");
  cmd->add_option("--base-model", args->baseModel, "to PEFT: base_model_name_or_path");
  cmd->add_option("--module-prefix", args->modulePrefix,
                  "to PEFT: what precedes layers.N in module names (default 'model.', as a HF "
                  "CausalLM; '' for a bare model)");
  addForceFlag(cmd, args->force);
  addCommonOptions(cmd, args->common, true);
  cmd->callback([cmd, args] { run(cmd, *args); });
}

}  // namespace lora::cli
