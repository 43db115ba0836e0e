// PEFT <-> GGUF LoRA adapters. Names, layout and the q/k permutation follow llama.cpp's
// convert_lora_to_gguf.py / convert_hf_to_gguf.py (LlamaModel.permute) and src/llama-adapter.cpp.
#include "lora/io/gguf_adapter.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <exception>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "lora/error.hpp"
#include "lora/io/adapter_config.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/io/peft_writer.hpp"
#include "lora/threads.hpp"

namespace lora {

namespace fs = std::filesystem;
using detail::fail;

namespace {

constexpr std::string_view kLayers = "model.layers.";
constexpr std::string_view kBlk = "blk.";

// The per-layer weights of llama and qwen2 (gguf-py constants.py / tensor_mapping.py names).
constexpr GgufModuleRule kLlamaModules[] = {
    {"self_attn.q_proj", "attn_q", GgufPermute::Query},
    {"self_attn.k_proj", "attn_k", GgufPermute::Key},
    {"self_attn.v_proj", "attn_v", GgufPermute::None},
    {"self_attn.o_proj", "attn_output", GgufPermute::None},
    {"mlp.gate_proj", "ffn_gate", GgufPermute::None},
    {"mlp.up_proj", "ffn_up", GgufPermute::None},
    {"mlp.down_proj", "ffn_down", GgufPermute::None},
};
constexpr GgufModuleRule kQwen2Modules[] = {
    {"self_attn.q_proj", "attn_q", GgufPermute::None},
    {"self_attn.k_proj", "attn_k", GgufPermute::None},
    {"self_attn.v_proj", "attn_v", GgufPermute::None},
    {"self_attn.o_proj", "attn_output", GgufPermute::None},
    {"mlp.gate_proj", "ffn_gate", GgufPermute::None},
    {"mlp.up_proj", "ffn_up", GgufPermute::None},
    {"mlp.down_proj", "ffn_down", GgufPermute::None},
};
constexpr std::string_view kLlamaClasses[] = {"LlamaForCausalLM", "MistralForCausalLM",
                                              "LLaMAForCausalLM"};
constexpr std::string_view kLlamaTypes[] = {"llama", "mistral"};
constexpr std::string_view kQwen2Classes[] = {"Qwen2ForCausalLM"};
constexpr std::string_view kQwen2Types[] = {"qwen2"};

constexpr GgufArchitecture kArchitectures[] = {
    {"llama", kLlamaModules, kLlamaClasses, kLlamaTypes},
    {"qwen2", kQwen2Modules, kQwen2Classes, kQwen2Types},
};

// "model.layers.N.<suffix>" -> N and suffix; false for any other name.
bool splitLayer(std::string_view name, std::string_view prefix, unsigned& layer,
                std::string_view& rest) {
  if (!name.starts_with(prefix)) return false;
  name.remove_prefix(prefix.size());
  const auto dot = name.find('.');
  if (dot == 0 || dot == std::string_view::npos) return false;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + dot, layer);
  if (ec != std::errc() || end != name.data() + dot) return false;
  if (dot > 1 && name[0] == '0') return false;  // no leading zeros: one spelling per layer
  rest = name.substr(dot + 1);
  return !rest.empty();
}

const GgufModuleRule* ruleForHf(const GgufArchitecture& arch, std::string_view suffix) {
  for (const GgufModuleRule& r : arch.modules)
    if (r.hf == suffix) return &r;
  return nullptr;
}

const GgufModuleRule* ruleForGguf(const GgufArchitecture& arch, std::string_view weight) {
  for (const GgufModuleRule& r : arch.modules)
    if (r.gguf == weight) return &r;
  return nullptr;
}

int headsFor(const GgufModuleRule& rule, const GgufHeads& heads, const std::string& module,
             std::string_view where) {
  const int n = rule.permute == GgufPermute::Query ? heads.nHead
                : heads.nHeadKv > 0                ? heads.nHeadKv
                                                   : heads.nHead;
  if (n <= 0)
    fail(where,
         "expected the head counts for module '{}' (llama permutes q and k per head: give "
         "--base-config CONFIG.json or --n-head/--n-head-kv), got none",
         module);
  return n;
}

}  // namespace

std::string ggufDefaultName(const fs::path& adapterDir) {
  // gguf-py's id_to_title: dashes become spaces, all-lowercase words are capitalized except
  // version-like ones (v1.2, 7b).
  fs::path p = adapterDir;
  if (!p.has_filename()) p = p.parent_path();  // "dir/" -> "dir"
  std::string id = p.filename().string();
  std::replace(id.begin(), id.end(), '-', ' ');
  std::string out, word;
  const auto flush = [&] {
    if (word.empty()) return;
    const bool lower =
        std::any_of(word.begin(), word.end(),
                    [](char c) { return std::islower(static_cast<unsigned char>(c)); }) &&
        std::none_of(word.begin(), word.end(),
                     [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
    const bool versionLike =
        std::isdigit(static_cast<unsigned char>(word[0])) ||
        (word[0] == 'v' && word.size() > 1 && std::isdigit(static_cast<unsigned char>(word[1])));
    if (lower && !versionLike) {  // Python's str.title(): each run of letters capitalized
      bool afterLetter = false;
      for (char& c : word) {
        const bool letter = std::isalpha(static_cast<unsigned char>(c)) != 0;
        if (letter && !afterLetter)
          c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        afterLetter = letter;
      }
    }
    if (!out.empty()) out += ' ';
    out += word;
    word.clear();
  };
  for (const char c : id) {
    if (std::isspace(static_cast<unsigned char>(c)))
      flush();
    else
      word += c;
  }
  flush();
  return out;
}

std::span<const GgufArchitecture> ggufArchitectures() noexcept {
  return kArchitectures;
}

const GgufArchitecture& ggufArchitecture(std::string_view name, std::string_view where) {
  for (const GgufArchitecture& a : kArchitectures)
    if (a.name == name) return a;
  std::vector<std::string_view> known;
  for (const GgufArchitecture& a : kArchitectures) known.push_back(a.name);
  fail(where, "expected a known architecture ({}), got '{}'", fmt::join(known, ", "), name);
}

GgufBaseConfig readBaseConfig(const fs::path& path) {
  constexpr std::string_view kWhere = "readBaseConfig";
  std::error_code ec;
  const fs::path file = fs::is_directory(path, ec) ? path / "config.json" : path;
  std::ifstream in(file);
  if (!in) fail(kWhere, "expected a readable config.json, got '{}'", file.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(kWhere, "expected valid JSON in '{}', got {}", file.string(), e.what());
  }
  if (!j.is_object()) fail(kWhere, "expected a JSON object in '{}'", file.string());
  GgufBaseConfig out;
  const auto match = [&](std::string_view hfClass, std::string_view modelType) {
    for (const GgufArchitecture& a : kArchitectures) {
      if (!hfClass.empty() &&
          std::find(a.hfClasses.begin(), a.hfClasses.end(), hfClass) != a.hfClasses.end())
        return std::string(a.name);
      if (!modelType.empty() &&
          std::find(a.modelTypes.begin(), a.modelTypes.end(), modelType) != a.modelTypes.end())
        return std::string(a.name);
    }
    return std::string();
  };
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    out.arch = match(j["architectures"][0].get<std::string>(), "");
  if (out.arch.empty() && j.contains("model_type") && j["model_type"].is_string())
    out.arch = match("", j["model_type"].get<std::string>());
  const auto count = [&](const char* key) -> int {
    if (!j.contains(key) || j[key].is_null()) return 0;
    if (!j[key].is_number_integer() || j[key].get<long long>() <= 0 ||
        j[key].get<long long>() > 1 << 20)
      fail(kWhere, "expected {} to be a positive integer in '{}', got {}", key, file.string(),
           j[key].dump());
    return static_cast<int>(j[key].get<long long>());
  };
  out.heads.nHead = count("num_attention_heads");
  out.heads.nHeadKv = count("num_key_value_heads");
  if (out.heads.nHeadKv == 0) out.heads.nHeadKv = out.heads.nHead;
  return out;
}

namespace {

// Where llama.cpp's q/k permutation moves row `from` of a head-major block of heads x per rows:
// within a head, (t, j) with t in {0, 1}, j < per / 2 becomes (j, t).
Eigen::Index permutedRow(Eigen::Index from, Eigen::Index per) {
  const Eigen::Index half = per / 2, head = from / per, rest = from % per;
  return head * per + 2 * (rest % half) + rest / half;
}

void checkHeads(Eigen::Index rows, int heads, std::string_view where) {
  if (heads <= 0 || rows % (2 * Eigen::Index{heads}) != 0)
    fail(where, "expected a row count divisible by 2 x {} heads for the q/k permutation, got {}",
         heads, rows);
}

}  // namespace

Eigen::MatrixXf permuteHeads(const Eigen::Ref<const Eigen::MatrixXf>& B, int heads, bool inverse,
                             std::string_view where) {
  const Eigen::Index out = B.rows();
  checkHeads(out, heads, where);
  // Rows of one head: (2, half) -> (half, 2). Row h·per + t·half + j moves to h·per + 2j + t.
  const Eigen::Index per = out / heads;
  Eigen::MatrixXf P(out, B.cols());
  for (Eigen::Index from = 0; from < out; ++from) {
    const Eigen::Index to = permutedRow(from, per);
    if (inverse)
      P.row(from) = B.row(to);
    else
      P.row(to) = B.row(from);
  }
  return P;
}

GgufConversionReport convertPeftToGguf(const PeftAdapterFile& in, const fs::path& out,
                                       const PeftToGgufOptions& options) {
  constexpr std::string_view kWhere = "convertPeftToGguf";
  const GgufArchitecture& arch = ggufArchitecture(options.arch, kWhere);
  if (in.isDora())
    fail(kWhere,
         "expected a LoRA adapter without DoRA (llama.cpp has no DoRA magnitudes), got use_dora");
  if (options.type != GgmlType::F32 && options.type != GgmlType::F16 &&
      options.type != GgmlType::BF16 && options.type != GgmlType::Q8_0)
    fail(kWhere, "expected an output type f32, f16, bf16 or q8_0, got {}",
         ggmlTypeName(options.type));

  struct Planned {
    const PeftAdapterFile::Module* module;
    const GgufModuleRule* rule;
    std::string weight;  // blk.N.attn_q.weight
    double target;       // s · r: what alpha must be for llama.cpp's alpha / r to be s
  };
  GgufConversionReport report;
  std::vector<Planned> plan;
  for (const auto& m : in.modules()) {
    unsigned layer = 0;
    std::string_view suffix;
    // HF CausalLM names (model.layers.N...) or the bare model's (layers.N...).
    const bool layered = splitLayer(m.name, kLayers, layer, suffix) ||
                         splitLayer(m.name, kLayers.substr(6), layer, suffix);
    const GgufModuleRule* rule = layered ? ruleForHf(arch, suffix) : nullptr;
    if (rule == nullptr) {
      if (options.skipUnknown) {
        report.skipped.push_back(m.name);
        continue;
      }
      fail(kWhere,
           "expected modules that {} has in llama.cpp (model.layers.N.self_attn.q_proj, ...), got "
           "'{}' (pass --skip-unknown to leave it out)",
           arch.name, m.name);
    }
    // s · r: alpha for a plain module, alpha · √r with rsLoRA.
    const double target = in.scalingMode() == ScalingMode::RsLora
                              ? m.alpha * std::sqrt(static_cast<double>(m.rank))
                              : m.alpha;
    plan.push_back({&m, rule, fmt::format("blk.{}.{}.weight", layer, rule->gguf), target});
  }
  if (plan.empty()) fail(kWhere, "expected at least one module to convert, got none");
  // llama.cpp's converter reads the tensors in sorted-name order (safetensors' keys()).
  std::stable_sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    return a.module->keyA < b.module->keyA;
  });

  // The file's alpha: the float32 value of s·r most modules share (the first on ties).
  std::map<float, std::size_t> votes;
  float alpha = 0;
  std::size_t best = 0;
  for (const Planned& p : plan) {
    const std::size_t v = ++votes[static_cast<float>(p.target)];
    if (v > best) {
      best = v;
      alpha = static_cast<float>(p.target);
    }
  }
  report.alpha = alpha;

  // Modules are decoded, permuted, folded and encoded in parallel; added in order after.
  struct Encoded {
    std::vector<std::byte> a, b;
    GgmlType typeA = GgmlType::F32, typeB = GgmlType::F32;
    std::vector<std::uint64_t> neA, neB;
    bool folded = false;
  };
  std::vector<Encoded> encoded(plan.size());
  std::vector<std::exception_ptr> errors(plan.size());
  // A factor's values in row-major order, as both formats store them (no transposing copies).
  const auto rowMajor = [&](const PeftAdapterFile::Module& m, bool b) -> Eigen::VectorXf {
    if (!in.isGguf()) return in.tensors().flat<float>(b ? m.keyB : m.keyA);
    const Eigen::MatrixXf M = b ? in.B<float>(m) : in.A<float>(m);
    const Eigen::MatrixXf T = M.transpose();
    return Eigen::Map<const Eigen::VectorXf>(T.data(), T.size());
  };
  const auto encode = [&](const Eigen::VectorXf& values, Eigen::Index rows, Eigen::Index cols,
                          GgmlType& type, std::vector<std::uint64_t>& ne,
                          std::vector<std::byte>& bytes) {
    type = options.type;
    // Q8_0 needs rows in whole blocks; the converter writes other tensors as F16.
    if (type == GgmlType::Q8_0 && cols % 32 != 0) type = GgmlType::F16;
    const auto [block, blockBytes] = ggmlBlock(type);
    ne = {static_cast<std::uint64_t>(cols), static_cast<std::uint64_t>(rows)};
    bytes.resize(static_cast<std::size_t>(values.size()) / block * blockBytes);
    detail::encodeGgml(values.data(), static_cast<std::size_t>(values.size()), type, bytes.data());
  };
  const int threads = std::max(1, lora::numThreads());
#pragma omp parallel for num_threads(threads) schedule(dynamic) if (threads > 1)
  for (std::size_t i = 0; i < plan.size(); ++i) {
    try {
      const Planned& p = plan[i];
      const auto& m = *p.module;
      const Eigen::VectorXf A = rowMajor(m, false);  // r x in, row-major
      Eigen::VectorXf B = rowMajor(m, true);         // out x r, row-major
      if (!A.allFinite() || !B.allFinite())
        fail(kWhere, "expected finite factors for module '{}', got NaN or Inf", m.name);
      if (static_cast<float>(p.target) != alpha) {
        B = (B.cast<double>() * (p.target / static_cast<double>(alpha))).cast<float>();
        encoded[i].folded = true;
      }
      if (p.rule->permute != GgufPermute::None) {
        const int heads = headsFor(*p.rule, options.heads, m.name, kWhere);
        checkHeads(m.out, heads, kWhere);
        Eigen::VectorXf P(B.size());
        for (Eigen::Index from = 0; from < m.out; ++from)
          std::copy_n(B.data() + from * m.rank, m.rank,
                      P.data() + permutedRow(from, m.out / heads) * m.rank);
        B.swap(P);
      }
      encode(A, m.rank, m.in, encoded[i].typeA, encoded[i].neA, encoded[i].a);
      encode(B, m.out, m.rank, encoded[i].typeB, encoded[i].neB, encoded[i].b);
      in.release(m);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);

  GgufWriter w;
  w.set("general.architecture", GgufValue::string(std::string(arch.name)));
  w.set("general.type", GgufValue::string("adapter"));
  w.set("adapter.type", GgufValue::string("lora"));
  if (!options.name.empty()) w.set("general.name", GgufValue::string(options.name));
  w.set("adapter.lora.alpha", GgufValue::float32(alpha));
  w.set("general.quantization_version", GgufValue::unsignedInt(GgufType::UInt32, 2));
  for (std::size_t i = 0; i < plan.size(); ++i) {
    Encoded& e = encoded[i];
    w.addRaw(plan[i].weight + ".lora_a", e.typeA, std::move(e.neA), std::move(e.a));
    w.addRaw(plan[i].weight + ".lora_b", e.typeB, std::move(e.neB), std::move(e.b));
    if (e.folded) report.folded.push_back(plan[i].module->name);
  }
  w.write(out);
  report.modules = plan.size();
  return report;
}

GgufAdapterLayout readGgufAdapter(const GgufReader& in, std::string_view modulePrefix,
                                  std::string_view where) {
  const auto stringKey = [&](std::string_view key) -> std::string {
    const GgufValue* v = in.find(key);
    if (v == nullptr)
      fail(where, "expected the key {} in '{}' (a LoRA adapter), got none", key, in.source());
    return v->asString(where, key);
  };
  if (const std::string t = stringKey("general.type"); t != "adapter")
    fail(where, "expected general.type 'adapter' in '{}', got '{}'", in.source(), t);
  if (const std::string t = stringKey("adapter.type"); t != "lora")
    fail(where, "expected adapter.type 'lora' in '{}', got '{}'", in.source(), t);
  GgufAdapterLayout layout;
  layout.arch = &ggufArchitecture(stringKey("general.architecture"), where);
  // llama.cpp requires a FLOAT32 alpha; without one it applies each pair unscaled (alpha = r).
  if (const GgufValue* a = in.find("adapter.lora.alpha")) {
    if (a->type() != GgufType::Float32)
      fail(where, "expected adapter.lora.alpha as a FLOAT32 in '{}' (llama.cpp needs it), got {}",
           in.source(), ggufTypeName(a->type()));
    const double alpha = a->asFloat(where, "adapter.lora.alpha");
    if (!(alpha > 0) || !std::isfinite(alpha))
      fail(where, "expected a positive finite adapter.lora.alpha in '{}', got {}", in.source(),
           alpha);
    layout.alpha = alpha;
  }
  std::map<std::string, std::size_t, std::less<>> index;
  for (const GgufTensorInfo& t : in.tensors()) {
    const bool isA = t.name.ends_with(".lora_a"), isB = t.name.ends_with(".lora_b");
    if (!isA && !isB)
      fail(where, "expected only .lora_a and .lora_b tensors in '{}', got '{}'", in.source(),
           t.name);
    const std::string weight = t.name.substr(0, t.name.size() - 7);
    unsigned layer = 0;
    std::string_view rest;
    const GgufModuleRule* rule = nullptr;
    if (splitLayer(weight, kBlk, layer, rest) && rest.ends_with(".weight")) {
      rest.remove_suffix(7);
      rule = ruleForGguf(*layout.arch, rest);
    }
    if (rule == nullptr)
      fail(where,
           "expected tensors of {}'s layers (blk.N.attn_q.weight.lora_a, ...) in '{}', got '{}'",
           layout.arch->name, in.source(), t.name);
    auto [it, added] = index.try_emplace(weight, layout.modules.size());
    if (added) {
      GgufAdapterModule m;
      m.module = fmt::format("{}layers.{}.{}", modulePrefix, layer, rule->hf);
      m.rule = rule;
      layout.modules.push_back(std::move(m));
    }
    (isA ? layout.modules[it->second].a : layout.modules[it->second].b) = t.name;
  }
  if (layout.modules.empty()) fail(where, "expected LoRA tensors in '{}', got none", in.source());
  for (GgufAdapterModule& m : layout.modules) {
    if (m.a.empty() || m.b.empty())
      fail(where, "expected both .lora_a and .lora_b for module '{}' in '{}', got only {}",
           m.module, in.source(), m.a.empty() ? ".lora_b" : ".lora_a");
    const GgufTensorInfo &a = in.tensor(m.a), &b = in.tensor(m.b);
    if (a.ne.size() != 2 || b.ne.size() != 2 || a.ne[1] != b.ne[0])
      fail(where,
           "expected lora_a of ne [in, r] and lora_b of ne [r, out] with the same r for module "
           "'{}' in '{}', got [{}] and [{}]",
           m.module, in.source(), fmt::join(a.ne, ", "), fmt::join(b.ne, ", "));
    m.rank = a.ne[1];
    m.in = a.ne[0];
    m.out = b.ne[1];
  }
  return layout;
}

GgufConversionReport convertGgufToPeft(const GgufReader& in, const fs::path& outDir,
                                       const GgufToPeftOptions& options) {
  constexpr std::string_view kWhere = "convertGgufToPeft";
  const GgufAdapterLayout layout = readGgufAdapter(in, options.modulePrefix, kWhere);
  AdapterConfig config;
  config.taskType = "CAUSAL_LM";
  config.baseModelNameOrPath = options.baseModel;
  std::set<std::string> targets;
  for (const GgufAdapterModule& m : layout.modules) {
    const std::string_view hf = m.rule->hf;
    targets.emplace(hf.substr(hf.rfind('.') + 1));
  }
  config.targetModules.assign(targets.begin(), targets.end());
  PeftAdapterWriter writer(config, options.dtype);
  for (const GgufAdapterModule& m : layout.modules) {
    const Eigen::MatrixXf A = in.matrix(m.a);
    Eigen::MatrixXf B = in.matrix(m.b);
    if (m.rule->permute != GgufPermute::None)
      B = permuteHeads(B, headsFor(*m.rule, options.heads, m.module, kWhere), true, kWhere);
    const double moduleAlpha = layout.alpha ? *layout.alpha : static_cast<double>(A.rows());
    writer.add(m.module, A, B, moduleAlpha);
    in.release(in.tensor(m.a));
    in.release(in.tensor(m.b));
  }
  writer.write(outDir);
  GgufConversionReport report;
  report.modules = layout.modules.size();
  report.alpha = layout.alpha ? *layout.alpha : 0;
  return report;
}

}  // namespace lora
