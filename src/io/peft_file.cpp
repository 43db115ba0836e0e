#include "lora/io/peft_file.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>

#include "lora/error.hpp"
#include "lora/io/gguf.hpp"
#include "lora/io/peft_writer.hpp"
#include "messages.hpp"

namespace lora {
namespace {

namespace fs = std::filesystem;
using detail::fail;

constexpr std::string_view kPrefix = "base_model.model.";
constexpr std::string_view kWhere = "PeftAdapterFile::open";

using detail::shapeText;

bool isFloat(DType d) {
  return d == DType::F16 || d == DType::BF16 || d == DType::F32 || d == DType::F64;
}

}  // namespace

PeftAdapterFile PeftAdapterFile::open(const std::filesystem::path& dir) {
  std::error_code ec;
  if (GgufReader::looksLikeGguf(dir)) return openGguf(dir);
  if (!fs::is_directory(dir, ec)) {
    fail(kWhere, "expected an adapter folder or a GGUF adapter file, got '{}' ({})", dir.string(),
         !fs::exists(dir, ec)           ? "no such folder"
         : fs::is_regular_file(dir, ec) ? "a file that is not GGUF; kohya LoRA files open with "
                                          "PeftAdapterFile::openKohya"
                                        : "not a folder, and not a GGUF file");
  }
  AdapterConfig config = AdapterConfig::load(dir);
  const fs::path file = dir / "adapter_model.safetensors";
  PeftAdapterFile out(std::move(config), SafeTensorsReader::map(file));
  out.m_fileBytes = static_cast<std::size_t>(fs::file_size(file, ec));
  const AdapterConfig& cfg = out.m_config;
  const SafeTensorsReader& st = out.m_tensors;
  const std::string source = file.string();

  struct Parts {
    std::string a, b, magnitude;
  };
  std::vector<std::string> order;
  std::map<std::string, Parts, std::less<>> parts;
  for (const std::string& key : st.names()) {
    if (!key.starts_with(kPrefix)) {
      fail(kWhere, "expected tensor keys starting with '{}' in '{}', got '{}'", kPrefix, source,
           key);
    }
    const std::string_view rest = std::string_view(key).substr(kPrefix.size());
    std::string module;
    std::string Parts::*slot = nullptr;
    for (auto [suffix, member] :
         {std::pair{std::string_view(".lora_A.weight"), &Parts::a},
          std::pair{std::string_view(".lora_B.weight"), &Parts::b},
          std::pair{std::string_view(".lora_magnitude_vector"), &Parts::magnitude}}) {
      if (rest.ends_with(suffix) && rest.size() > suffix.size()) {
        module = std::string(rest.substr(0, rest.size() - suffix.size()));
        slot = member;
        break;
      }
    }
    if (slot == nullptr) {
      fail(kWhere,
           "expected only lora_A.weight, lora_B.weight and lora_magnitude_vector tensors in "
           "'{}', got '{}' (embedding, bias and modules_to_save tensors are not supported)",
           source, key);
    }
    auto [it, inserted] = parts.try_emplace(module);
    if (inserted) order.push_back(module);
    it->second.*slot = key;
  }
  if (order.empty()) fail(kWhere, "expected at least one LoRA module in '{}', got none", source);

  out.m_modules.reserve(order.size());
  for (const std::string& name : order) {
    const Parts& p = parts.find(name)->second;
    if (p.a.empty() || p.b.empty()) {
      fail(kWhere, "expected both lora_A and lora_B for module '{}' in '{}', got only {}", name,
           source, p.a.empty() ? "lora_B" : "lora_A");
    }
    const TensorInfo& a = st.info(p.a);
    const TensorInfo& b = st.info(p.b);
    if (a.shape.size() != 2 || b.shape.size() != 2) {
      fail(kWhere, "expected 2-D lora_A and lora_B for module '{}' in '{}', got shapes {} and {}",
           name, source, shapeText(a.shape), shapeText(b.shape));
    }
    if (a.shape[0] != b.shape[1] || a.shape[0] < 1 || a.shape[1] < 1 || b.shape[0] < 1) {
      fail(kWhere,
           "expected lora_A (r x in) and lora_B (out x r) with the same r >= 1 for module '{}' in "
           "'{}', got {}x{} and {}x{}",
           name, source, a.shape[0], a.shape[1], b.shape[0], b.shape[1]);
    }
    for (const TensorInfo* t : {&a, &b}) {
      if (!isFloat(t->dtype)) {
        fail(kWhere,
             "expected F16, BF16, F32 or F64 factors for module '{}' in '{}', got {} for '{}'",
             name, source, dtypeName(t->dtype), t->name);
      }
    }
    Module m;
    m.name = name;
    m.keyA = p.a;
    m.keyB = p.b;
    m.rank = static_cast<Index>(a.shape[0]);
    m.in = static_cast<Index>(a.shape[1]);
    m.out = static_cast<Index>(b.shape[0]);
    const int configured = cfg.rankFor(name);
    if (configured != m.rank) {
      fail(kWhere,
           "expected rank {} for module '{}' (from r / rank_pattern in the config), got tensors "
           "of rank {} in '{}'",
           configured, name, m.rank, source);
    }
    m.alpha = cfg.alphaFor(name);
    if (!p.magnitude.empty()) {
      if (!cfg.useDora) {
        fail(kWhere, "expected no lora_magnitude_vector without use_dora for module '{}', got one",
             name);
      }
      const TensorInfo& mag = st.info(p.magnitude);
      if (mag.shape.size() != 1 || mag.shape[0] != m.out || !isFloat(mag.dtype)) {
        fail(kWhere,
             "expected a floating-point lora_magnitude_vector of shape [{}] for module '{}' in "
             "'{}', got {} {}",
             m.out, name, source, dtypeName(mag.dtype), shapeText(mag.shape));
      }
      m.keyMagnitude = p.magnitude;
    } else if (cfg.useDora) {
      fail(kWhere, "expected a lora_magnitude_vector for module '{}' (use_dora is true), got none",
           name);
    }
    out.m_modules.push_back(std::move(m));
  }
  return out;
}

PeftAdapterFile PeftAdapterFile::openGguf(const fs::path& path, const GgufHeads& heads,
                                          std::string_view modulePrefix) {
  constexpr std::string_view kWhereGguf = "PeftAdapterFile::openGguf";
  auto reader = std::make_shared<const GgufReader>(GgufReader::open(path));
  const GgufAdapterLayout layout = readGgufAdapter(*reader, modulePrefix, kWhereGguf);
  AdapterConfig config;
  config.taskType = "CAUSAL_LM";
  config.sourceName = path.string();
  std::vector<ModuleRankAlpha> ranks;
  std::set<std::string> targets;
  for (const GgufAdapterModule& m : layout.modules) {
    // No alpha: llama.cpp applies B·A unscaled, that is alpha = r.
    ranks.push_back({m.module, static_cast<int>(m.rank),
                     layout.alpha ? *layout.alpha : static_cast<double>(m.rank)});
    const std::string_view hf = m.rule->hf;
    targets.emplace(hf.substr(hf.rfind('.') + 1));
  }
  config.targetModules.assign(targets.begin(), targets.end());
  assignPatterns(config, ranks);
  // No safetensors file: an empty reader (8-byte header length 2, then "{}").
  std::vector<std::byte> empty(10, std::byte{0});
  empty[0] = std::byte{2};
  empty[8] = std::byte{'{'};
  empty[9] = std::byte{'}'};
  PeftAdapterFile out(std::move(config), SafeTensorsReader::fromBytes(std::move(empty), "none"));
  out.m_ggufArch = layout.arch;
  out.m_fileBytes = static_cast<std::size_t>(reader->fileBytes());
  for (std::size_t i = 0; i < layout.modules.size(); ++i) {
    const GgufAdapterModule& g = layout.modules[i];
    Module m;
    m.name = g.module;
    m.keyA = g.a;
    m.keyB = g.b;
    m.rank = static_cast<Index>(g.rank);
    m.in = static_cast<Index>(g.in);
    m.out = static_cast<Index>(g.out);
    m.alpha = ranks[i].alpha;
    if (g.rule->permute != GgufPermute::None) {
      const int n = g.rule->permute == GgufPermute::Query ? heads.nHead
                    : heads.nHeadKv > 0                   ? heads.nHeadKv
                                                          : heads.nHead;
      if (n > 0 && m.out % (2 * Index{n}) != 0)
        fail(kWhereGguf, "expected {} rows divisible by 2 x {} heads for module '{}' in '{}'",
             m.out, n, m.name, path.string());
      m.ggufHeads = n > 0 ? n : -1;
    }
    out.m_modules.push_back(std::move(m));
  }
  out.m_gguf = std::move(reader);
  return out;
}

PeftAdapterFile PeftAdapterFile::openKohya(const fs::path& path) {
  constexpr std::string_view kWhereKohyaFile = "PeftAdapterFile::openKohya";
  SafeTensorsReader reader = SafeTensorsReader::map(path);
  auto layout = std::make_shared<const KohyaLayout>(readKohyaLayout(reader));
  std::error_code ec;
  if (std::all_of(layout->modules.begin(), layout->modules.end(), [](const KohyaModule& m) {
        return m.name.starts_with(kPrefix) && m.keyAlpha.empty();
      })) {
    fail(kWhereKohyaFile,
         "expected a kohya-format LoRA file, got the tensors of a PEFT adapter in '{}' (their "
         "scaling is in adapter_config.json: pass the adapter's folder)",
         path.string());
  }
  AdapterConfig config;
  config.sourceName = path.string();
  std::vector<ModuleRankAlpha> ranks;
  for (const KohyaModule& m : layout->modules)
    ranks.push_back(
        {m.name, static_cast<int>(m.rank), m.alpha ? *m.alpha : static_cast<double>(m.rank)});
  assignPatterns(config, ranks);
  PeftAdapterFile out(std::move(config), std::move(reader));
  out.m_fileBytes = static_cast<std::size_t>(fs::file_size(path, ec));
  for (std::size_t i = 0; i < layout->modules.size(); ++i) {
    const KohyaModule& k = layout->modules[i];
    Module m;
    m.name = k.name;
    m.keyA = k.keyDown;
    m.keyB = k.keyUp;
    m.rank = k.rank;
    m.in = k.columns();
    m.out = k.out;
    m.alpha = ranks[i].alpha;
    m.kernelH = k.kernelH;
    m.kernelW = k.kernelW;
    out.m_modules.push_back(std::move(m));
  }
  out.m_kohya = std::move(layout);
  return out;
}

template <typename Scalar>
PeftAdapterFile::Matrix<Scalar> PeftAdapterFile::ggufFactor(const Module& m, bool b) const {
  using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const GgufTensorInfo& t = m_gguf->tensor(b ? m.keyB : m.keyA);
  Matrix<Scalar> M;
  const auto raw = m_gguf->rawBytes(t);
  if (t.type == GgmlType::F32 &&
      reinterpret_cast<std::uintptr_t>(raw.data()) % alignof(float) == 0) {
    // Read in place (a file aligned as GGUF files are): one transposing, converting pass.
    M = Eigen::Map<const RowMatrixXf>(reinterpret_cast<const float*>(raw.data()),
                                      static_cast<Index>(t.ne[1]), static_cast<Index>(t.ne[0]))
            .template cast<Scalar>();
  } else {
    M = m_gguf->rowMajor(t).template cast<Scalar>();
  }
  if (b && m.ggufHeads > 0)
    M = permuteHeads(M.template cast<float>(), m.ggufHeads, true, "PeftAdapterFile::B")
            .template cast<Scalar>();
  return M;
}

template PeftAdapterFile::Matrix<float> PeftAdapterFile::ggufFactor<float>(const Module&,
                                                                           bool) const;
template PeftAdapterFile::Matrix<double> PeftAdapterFile::ggufFactor<double>(const Module&,
                                                                             bool) const;

void PeftAdapterFile::releaseGguf(const Module& m) const {
  m_gguf->release(m_gguf->tensor(m.keyA));
  m_gguf->release(m_gguf->tensor(m.keyB));
}

std::string PeftAdapterFile::dtypeLabel() const {
  if (m_gguf) return std::string(ggmlTypeName(m_gguf->tensor(m_modules.front().keyA).type));
  return std::string(dtypeName(dtype()));
}

DType PeftAdapterFile::dtype() const {
  if (!m_gguf) return m_tensors.info(m_modules.front().keyA).dtype;
  switch (m_gguf->tensor(m_modules.front().keyA).type) {
    case GgmlType::F16:
      return DType::F16;
    case GgmlType::BF16:
      return DType::BF16;
    default:
      return DType::F32;
  }
}

}  // namespace lora
