#include "lora/io/peft_writer.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <span>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lora/detail/atomic_file.hpp"
#include "safetensors_header.hpp"

#include <unistd.h>

namespace lora {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using detail::fail;

bool sameAlpha(double a, double b) {
  return std::fabs(a - b) <= 1e-12 * std::max(std::fabs(a), std::fabs(b));
}

bool resolvesAll(const AdapterConfig& c, const std::vector<ModuleRankAlpha>& modules) {
  for (const ModuleRankAlpha& m : modules) {
    if (c.rankFor(m.module) != m.rank || !sameAlpha(c.alphaFor(m.module), m.alpha)) return false;
  }
  return true;
}

// Whether some other module's name is "<anything>.<name>", so that an unanchored key for
// `name` would match it too.
bool isDottedSuffixOfAnother(const std::string& name, const std::vector<ModuleRankAlpha>& all) {
  for (const ModuleRankAlpha& other : all) {
    const std::string& n = other.module;
    if (n.size() > name.size() && n.ends_with(name) && n[n.size() - name.size() - 1] == '.') {
      return true;
    }
  }
  return false;
}

// A JSON number for alpha: an integer when it is one (PEFT writes `16`, not `16.0`).
Json alphaJson(double a) {
  if (std::isfinite(a) && a == std::floor(a) && std::fabs(a) < 9007199254740992.0) {
    return Json(static_cast<std::int64_t>(a));
  }
  return Json(a);
}

using detail::syncFolder;
using detail::uniqueTag;

void removeQuietly(const fs::path& p) {
  std::error_code ec;
  fs::remove(p, ec);
}

// Checks that \p dir is (or can be) a folder and creates it; returns the folders created,
// deepest first, for removeCreated().
std::vector<fs::path> prepareFolder(const fs::path& dir, std::string_view where) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    fail(where, "expected a folder for the adapter, got the file '{}'", dir.string());
  }
  std::vector<fs::path> created;
  for (fs::path p = dir; !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
    created.push_back(p);
    if (p == p.parent_path()) break;
  }
  if (!created.empty()) {
    fs::create_directories(dir, ec);
    if (ec) {
      for (const fs::path& p : created) removeQuietly(p);
      fail(where, "expected to create the folder '{}', got an error: {}", dir.string(),
           ec.message());
    }
  }
  return created;
}

void removeCreated(const std::vector<fs::path>& created) {
  for (const fs::path& p : created) removeQuietly(p);  // only removes empty folders
}

// Moves the staged tensors file into `<dir>/adapter_model.safetensors`, then \p json into
// `<dir>/adapter_config.json`; if the second move fails, the first is undone. Temporaries are
// removed whatever happens (the staged tensors only on success: the caller owns them).
void commitFolder(const fs::path& dir, const std::string& tag, const fs::path& stageTensors,
                  const std::string& json, std::string_view where) {
  std::error_code ec;
  const fs::path finalTensors = dir / "adapter_model.safetensors";
  const fs::path finalConfig = dir / "adapter_config.json";
  const fs::path stageConfig = dir / fmt::format(".adapter_config.json.{}.staging", tag);
  const fs::path backup = dir / fmt::format(".adapter_model.safetensors.{}.backup", tag);
  try {
    writeFileAtomic(stageConfig, json);
    if (fs::is_directory(finalTensors, ec)) {
      fail(where, "expected a file path for the tensors, got the folder '{}'",
           finalTensors.string());
    }
    const bool hadTensors = fs::exists(finalTensors, ec);
    bool backedUp = false;
    if (hadTensors) {
      fs::create_hard_link(finalTensors, backup, ec);
      backedUp = !ec;
    }
    fs::rename(stageTensors, finalTensors, ec);
    if (ec) {
      fail(where, "expected to move the new tensors into '{}', got an error: {}",
           finalTensors.string(), ec.message());
    }
    fs::rename(stageConfig, finalConfig, ec);
    if (ec) {
      const std::string why = ec.message();
      // Undo the first rename: the earlier tensors come back from the hard link.
      std::error_code undo;
      if (backedUp) {
        fs::rename(backup, finalTensors, undo);
      } else if (!hadTensors) {
        fs::remove(finalTensors, undo);
      }
      fail(where, "expected to move the new config into '{}', got an error: {}",
           finalConfig.string(), why);
    }
  } catch (...) {
    removeQuietly(stageConfig);
    removeQuietly(backup);
    throw;
  }
  removeQuietly(backup);
  syncFolder(dir, where);  // both renames on disk
}

}  // namespace

// The staging file of a streaming writer: `8 + reserve` bytes of room for the header, then the
// tensors' bytes as they come.
struct PeftAdapterWriter::Stream {
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t begin, end;
  };
  fs::path dir;
  std::vector<fs::path> created;
  std::string tag;
  fs::path stage;
  std::FILE* file = nullptr;
  std::uint64_t reserve = 0;  // bytes before the data: the length field and the header
  std::uint64_t offset = 0;   // data bytes written
  std::vector<Tensor> tensors;
  std::map<std::string, std::vector<std::int64_t>, std::less<>> maxShapes;  // by tensor name
  bool finished = false;  // written, or failed and cleaned up

  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { abandon(); }

  void abandon() {
    if (file != nullptr) std::fclose(file);
    file = nullptr;
    if (!finished) {
      removeQuietly(stage);
      removeCreated(created);
    }
    finished = true;
  }
};

std::string escapePatternKey(std::string_view module) {
  std::string out;
  out.reserve(module.size() + 8);
  for (const char c : module) {
    if (std::string_view("\\.^$|?*+()[]{}").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

void assignPatterns(AdapterConfig& config, const std::vector<ModuleRankAlpha>& modules) {
  constexpr std::string_view kWhere = "assignPatterns";
  if (modules.empty()) fail(kWhere, "expected at least one module, got none");
  for (const ModuleRankAlpha& m : modules) {
    if (m.module.empty()) fail(kWhere, "expected non-empty module names, got ''");
    if (m.rank < 1) fail(kWhere, "expected a rank >= 1 for '{}', got {}", m.module, m.rank);
    if (!(std::isfinite(m.alpha) && m.alpha > 0))
      fail(kWhere, "expected a positive finite alpha for '{}', got {}", m.module, m.alpha);
  }
  AdapterConfig c = config;

  // target_modules: every module must be targeted, or PEFT would not create its layer.
  if (!c.targetModulesRegex && c.targetModules.empty()) {
    for (const ModuleRankAlpha& m : modules) c.targetModules.push_back(m.module);
  } else {
    for (const ModuleRankAlpha& m : modules) {
      if (c.targets(m.module)) continue;
      if (c.targetModulesRegex) {
        fail(kWhere, "expected the target_modules regex '{}' to match module '{}', got no match",
             *c.targetModulesRegex, m.module);
      }
      c.targetModules.push_back(m.module);
    }
  }

  if (!resolvesAll(c, modules)) {
    // Most frequent rank and alpha; ties go to the value seen first.
    std::map<int, std::size_t> rankCount;
    std::vector<std::pair<double, std::size_t>> alphaCount;
    int bestRank = modules.front().rank;
    double bestAlpha = modules.front().alpha;
    std::size_t bestRankCount = 0, bestAlphaCount = 0;
    for (const ModuleRankAlpha& m : modules) {
      const std::size_t n = ++rankCount[m.rank];
      if (n > bestRankCount) {
        bestRankCount = n;
        bestRank = m.rank;
      }
      auto it = std::find_if(alphaCount.begin(), alphaCount.end(),
                             [&](const auto& p) { return p.first == m.alpha; });
      if (it == alphaCount.end()) {
        alphaCount.emplace_back(m.alpha, 0);
        it = std::prev(alphaCount.end());
      }
      if (++it->second > bestAlphaCount) {
        bestAlphaCount = it->second;
        bestAlpha = m.alpha;
      }
    }
    c.r = bestRank;
    c.loraAlpha = bestAlpha;
    c.rankPattern.clear();
    c.alphaPattern.clear();
    for (const ModuleRankAlpha& m : modules) {
      const bool rankEntry = m.rank != bestRank;
      const bool alphaEntry = m.alpha != bestAlpha;
      if (!rankEntry && !alphaEntry) continue;
      std::string key = escapePatternKey(m.module);
      if (isDottedSuffixOfAnother(m.module, modules)) key = "^" + key;
      if (rankEntry) c.rankPattern.emplace_back(key, m.rank);
      if (alphaEntry) c.alphaPattern.emplace_back(key, m.alpha);
    }
  }
  config = std::move(c);
}

std::string adapterConfigJson(const AdapterConfig& c) {
  Json root = Json::object();
  if (!c.rawJson.empty()) {
    try {
      Json parsed = Json::parse(c.rawJson);
      if (parsed.is_object()) root = std::move(parsed);
    } catch (const nlohmann::json::exception&) {
      // Not JSON: only the modelled fields are written.
    }
  }
  root["peft_type"] = c.peftType;
  root["r"] = c.r;
  root["lora_alpha"] = alphaJson(c.loraAlpha);
  if (c.targetModulesRegex) {
    root["target_modules"] = *c.targetModulesRegex;
  } else if (!c.targetModules.empty()) {
    root["target_modules"] = c.targetModules;
  } else {
    root["target_modules"] = nullptr;
  }
  Json ranks = Json::object();
  for (const auto& [key, value] : c.rankPattern) ranks[key] = value;
  root["rank_pattern"] = std::move(ranks);
  Json alphas = Json::object();
  for (const auto& [key, value] : c.alphaPattern) alphas[key] = alphaJson(value);
  root["alpha_pattern"] = std::move(alphas);
  root["use_rslora"] = c.useRslora;
  root["use_dora"] = c.useDora;
  root["fan_in_fan_out"] = c.fanInFanOut;
  root["bias"] = c.bias;
  root["lora_dropout"] = c.loraDropout;
  if (c.initLoraWeights == "true" || c.initLoraWeights == "false") {
    root["init_lora_weights"] = c.initLoraWeights == "true";
  } else {
    root["init_lora_weights"] = c.initLoraWeights;
  }
  root["task_type"] = c.taskType ? Json(*c.taskType) : Json(nullptr);
  root["base_model_name_or_path"] =
      c.baseModelNameOrPath ? Json(*c.baseModelNameOrPath) : Json(nullptr);
  if (!root.contains("inference_mode")) root["inference_mode"] = true;

  std::vector<std::string> keys;
  for (auto it = root.begin(); it != root.end(); ++it) keys.push_back(it.key());
  std::sort(keys.begin(), keys.end());
  Json sorted = Json::object();
  for (const std::string& k : keys) sorted[k] = std::move(root[k]);
  return sorted.dump(2, ' ', false, Json::error_handler_t::strict) + "\n";
}

void writeFileAtomic(const std::filesystem::path& path, std::string_view bytes) {
  detail::AtomicFile file(path, "writeFileAtomic");
  file.write(bytes.data(), bytes.size());
  file.commit();
}

// ---------------------------------------------------------------------------------------------
// PeftAdapterWriter

PeftAdapterWriter::PeftAdapterWriter(AdapterConfig config, DType dtype)
    : m_config(std::move(config)), m_dtype(dtype) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16 && dtype != DType::F64) {
    fail("PeftAdapterWriter::PeftAdapterWriter",
         "expected an output dtype of F32, F16, BF16 or F64, got {}", dtypeName(dtype));
  }
  if (m_config.peftType != "LORA") {
    fail("PeftAdapterWriter::PeftAdapterWriter", "expected a LORA config, got peft_type \"{}\"",
         m_config.peftType);
  }
  m_tensors.setMetadata("format", "pt");
}

void PeftAdapterWriter::checkModule(const char* where, std::string_view module, Eigen::Index aRows,
                                    Eigen::Index aCols, Eigen::Index bRows, Eigen::Index bCols,
                                    double alpha, bool dora, Eigen::Index mSize,
                                    bool mIsVector) const {
  if (module.empty()) fail(where, "expected a module name, got ''");
  if (aRows < 1 || aCols < 1 || bRows < 1 || aRows != bCols) {
    fail(where,
         "expected A (r x in) and B (out x r) with the same r >= 1 for module '{}', got A {}x{} "
         "and B {}x{}",
         module, aRows, aCols, bRows, bCols);
  }
  if (aRows > 0x7fffffff) fail(where, "expected a rank below 2^31 for '{}', got {}", module, aRows);
  if (!(std::isfinite(alpha) && alpha > 0)) {
    fail(where, "expected a positive finite alpha for module '{}', got {}", module, alpha);
  }
  if (dora && (mSize != bRows || !mIsVector)) {
    fail(where, "expected a magnitude vector of {} entries for module '{}', got {}", bRows, module,
         mSize);
  }
  if (m_dora >= 0 && (m_dora == 1) != dora) {
    fail(where,
         "expected every module {} a DoRA magnitude (PEFT's use_dora is per adapter), got module "
         "'{}' {} one",
         m_dora == 1 ? "with" : "without", module, dora ? "with" : "without");
  }
  for (const ModuleRankAlpha& m : m_modules) {
    if (m.module == module) fail(where, "expected a new module, got '{}' twice", module);
  }
}

void PeftAdapterWriter::commitModule(std::string module, int rank, double alpha, bool dora,
                                     SafeTensorsWriter&& tensors) {
  m_modules.push_back({std::move(module), rank, alpha});
  try {
    if (m_stream) {
      streamTensors(tensors, "PeftAdapterWriter::add");
    } else {
      m_tensors.append(std::move(tensors));
    }
  } catch (...) {
    m_modules.pop_back();
    throw;
  }
  m_dora = dora ? 1 : 0;
}

PeftAdapterWriter& PeftAdapterWriter::append(PeftAdapterWriter&& other) {
  constexpr const char* where = "PeftAdapterWriter::append";
  if (&other == this) fail(where, "expected another writer, got this one");
  if (other.m_dtype != m_dtype) {
    fail(where, "expected a writer of the same dtype ({}), got {}", dtypeName(m_dtype),
         dtypeName(other.m_dtype));
  }
  if (other.m_stream) fail(where, "expected a writer that is not streaming, got one that is");
  if (other.m_modules.empty()) return *this;
  if (m_dora >= 0 && other.m_dora != m_dora) {
    fail(where, "expected modules {} DoRA magnitudes like this writer's, got the other kind",
         m_dora == 1 ? "with" : "without");
  }
  for (const ModuleRankAlpha& o : other.m_modules) {
    for (const ModuleRankAlpha& m : m_modules) {
      if (m.module == o.module) fail(where, "expected new modules, got '{}' twice", o.module);
    }
  }
  std::vector<ModuleRankAlpha> modules = m_modules;
  modules.insert(modules.end(), other.m_modules.begin(), other.m_modules.end());
  if (m_stream) {
    streamTensors(other.m_tensors, where);  // all or nothing
    other.m_tensors = SafeTensorsWriter();
  } else {
    m_tensors.append(std::move(other.m_tensors));  // checks names; nothing changed if it throws
  }
  m_modules.swap(modules);
  m_dora = other.m_dora;
  other.m_modules.clear();
  other.m_dora = -1;
  return *this;
}

AdapterConfig PeftAdapterWriter::resolvedConfig() const {
  constexpr const char* where = "PeftAdapterWriter::resolvedConfig";
  if (m_modules.empty()) fail(where, "expected at least one module, got none");
  AdapterConfig c = m_config;
  c.useDora = m_dora == 1;
  assignPatterns(c, m_modules);
  const std::string text = adapterConfigJson(c);
  AdapterConfig parsed = AdapterConfig::parse(text, "adapter_config.json (to be written)");
  for (const ModuleRankAlpha& m : m_modules) {
    const int r = parsed.rankFor(m.module);
    const double a = parsed.alphaFor(m.module);
    if (r != m.rank || !sameAlpha(a, m.alpha)) {
      fail(where,
           "expected the written config to resolve module '{}' to rank {} and alpha {}, got rank "
           "{} and alpha {}",
           m.module, m.rank, m.alpha, r, a);
    }
  }
  return parsed;
}

void PeftAdapterWriter::write(const std::filesystem::path& dir) const {
  constexpr std::string_view kWhere = "PeftAdapterWriter::write";
  const AdapterConfig config = resolvedConfig();
  const std::string json = adapterConfigJson(config);
  if (m_stream) {
    writeStreamed(dir, json);
    return;
  }
  const std::vector<fs::path> created = prepareFolder(dir, kWhere);
  const std::string tag = uniqueTag();
  const fs::path stageTensors = dir / fmt::format(".adapter_model.safetensors.{}.staging", tag);
  try {
    m_tensors.write(stageTensors);
    commitFolder(dir, tag, stageTensors, json, kWhere);
  } catch (...) {
    removeQuietly(stageTensors);
    removeCreated(created);
    throw;
  }
}

// ---------------------------------------------------------------------------------------------
// Streaming

PeftAdapterWriter::PeftAdapterWriter(PeftAdapterWriter&&) noexcept = default;
PeftAdapterWriter& PeftAdapterWriter::operator=(PeftAdapterWriter&&) noexcept = default;
PeftAdapterWriter::~PeftAdapterWriter() = default;

PeftAdapterWriter& PeftAdapterWriter::streamTo(const std::filesystem::path& dir,
                                               const std::vector<ModuleBound>& bounds) {
  constexpr std::string_view kWhere = "PeftAdapterWriter::streamTo";
  if (m_stream) fail(kWhere, "expected a writer that is not streaming yet, got one streaming");
  if (!m_modules.empty())
    fail(kWhere, "expected an empty writer, got one with {} modules", m_modules.size());
  if (bounds.empty()) fail(kWhere, "expected at least one module bound, got none");
  auto stream = std::make_unique<Stream>();
  const std::size_t elem = dtypeSize(m_dtype);
  std::uint64_t maxData = 0;
  for (const ModuleBound& b : bounds) {
    std::string_view module = b.module;
    if (module.starts_with(kPrefix)) module.remove_prefix(kPrefix.size());
    if (module.empty() || b.maxRank < 1 || b.in < 1 || b.out < 1)
      fail(kWhere, "expected a module name, a rank >= 1 and in, out >= 1, got '{}' r {} ({} x {})",
           b.module, b.maxRank, b.out, b.in);
    const std::string base = std::string(kPrefix) + std::string(module);
    std::vector<std::pair<std::string, std::vector<std::int64_t>>> shapes = {
        {base + ".lora_A.weight", {b.maxRank, b.in}},
        {base + ".lora_B.weight", {b.out, b.maxRank}}};
    if (b.dora) shapes.push_back({base + ".lora_magnitude_vector", {b.out}});
    for (auto& [name, shape] : shapes) {
      std::uint64_t n = elem;
      for (const std::int64_t d : shape) n *= static_cast<std::uint64_t>(d);
      maxData += n;
      if (!stream->maxShapes.emplace(name, std::move(shape)).second)
        fail(kWhere, "expected each module once in the bounds, got '{}' twice", module);
    }
  }
  // The largest header: every tensor at its largest shape, every offset at the largest value.
  std::vector<detail::SafeTensorsHeaderEntry> entries;
  for (const auto& [name, shape] : stream->maxShapes)
    entries.push_back({name, m_dtype, &shape, maxData, maxData});
  const std::string largest =
      detail::safetensorsHeader(entries, m_tensors.metadata(), kWhere, dir.string());
  stream->reserve = 8 + largest.size();

  stream->dir = dir;
  stream->created = prepareFolder(dir, kWhere);
  stream->tag = uniqueTag();
  stream->stage = dir / fmt::format(".adapter_model.safetensors.{}.staging", stream->tag);
  errno = 0;
  stream->file = std::fopen(stream->stage.string().c_str(), "wbx");
  if (stream->file == nullptr) {
    const int e = errno;
    stream->abandon();
    fail(kWhere, "expected to create '{}', got an error: {}", stream->stage.string(),
         detail::errnoText(e));
  }
  const std::vector<char> room(stream->reserve, ' ');
  if (std::fwrite(room.data(), 1, room.size(), stream->file) != room.size()) {
    const int e = errno;
    stream->abandon();
    fail(kWhere, "expected to write to '{}', got an error: {}", stream->stage.string(),
         detail::errnoText(e));
  }
  m_stream = std::move(stream);
  return *this;
}

void PeftAdapterWriter::streamTensors(const SafeTensorsWriter& tensors, const char* where) {
  Stream& st = *m_stream;
  if (st.finished)
    fail(where, "expected a streaming writer that has not written yet, got one that has");
  // Check everything first: nothing is written unless all of it fits its bound.
  tensors.forEach([&](const std::string& name, DType, const std::vector<std::int64_t>& shape,
                      std::span<const std::byte>) {
    const auto it = st.maxShapes.find(name);
    if (it == st.maxShapes.end())
      fail(where, "expected a module listed in the bounds given to streamTo, got tensor '{}'",
           name);
    bool fits = it->second.size() == shape.size();
    for (std::size_t i = 0; fits && i < shape.size(); ++i) fits = shape[i] <= it->second[i];
    if (!fits)
      fail(where, "expected tensor '{}' within its bound from streamTo, got a larger shape", name);
    for (const Stream::Tensor& t : st.tensors) {
      if (t.name == name) fail(where, "expected a new tensor, got '{}' twice", name);
    }
  });
  const std::uint64_t offset = st.offset;
  const std::size_t count = st.tensors.size();
  try {
    tensors.forEach([&](const std::string& name, DType dtype,
                        const std::vector<std::int64_t>& shape, std::span<const std::byte> bytes) {
      errno = 0;
      if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), st.file) != bytes.size()) {
        const int e = errno;
        fail(where, "expected to write {} bytes to '{}', got an error: {}", bytes.size(),
             st.stage.string(), detail::errnoText(e));
      }
      st.tensors.push_back({name, dtype, shape, st.offset, st.offset + bytes.size()});
      st.offset += bytes.size();
    });
  } catch (...) {
    // Back to where this call started: the next write overwrites what was written.
    st.tensors.resize(count);
    st.offset = offset;
    ::fseeko(st.file, static_cast<off_t>(st.reserve + offset), SEEK_SET);
    throw;
  }
}

void PeftAdapterWriter::writeStreamed(const std::filesystem::path& dir,
                                      const std::string& json) const {
  constexpr std::string_view kWhere = "PeftAdapterWriter::write";
  Stream& st = *m_stream;
  if (st.finished)
    fail(kWhere, "expected a streaming writer that has not written yet, got one that has");
  std::error_code ec;
  if (!fs::equivalent(dir, st.dir, ec))
    fail(kWhere, "expected the folder given to streamTo ('{}'), got '{}'", st.dir.string(),
         dir.string());
  try {
    std::vector<detail::SafeTensorsHeaderEntry> entries;
    for (const Stream::Tensor& t : st.tensors)
      entries.push_back({t.name, t.dtype, &t.shape, t.begin, t.end});
    std::string header =
        detail::safetensorsHeader(entries, m_tensors.metadata(), kWhere, st.stage.string());
    if (header.size() + 8 > st.reserve)
      fail(kWhere, "expected the header to fit the room reserved for it ({} bytes), got {}",
           st.reserve - 8, header.size());
    header.resize(st.reserve - 8, ' ');
    std::array<unsigned char, 8> length{};
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(n >> (8 * i));
    errno = 0;
    const bool ok = ::fseeko(st.file, 0, SEEK_SET) == 0 &&
                    std::fwrite(length.data(), 1, 8, st.file) == 8 &&
                    std::fwrite(header.data(), 1, header.size(), st.file) == header.size() &&
                    std::fflush(st.file) == 0 && ::fsync(::fileno(st.file)) == 0;
    const int e = errno;
    std::FILE* closing = st.file;
    st.file = nullptr;
    if (std::fclose(closing) != 0 || !ok)
      fail(kWhere, "expected to write and sync '{}', got an error: {}", st.stage.string(),
           detail::errnoText(ok ? errno : e));
    commitFolder(st.dir, st.tag, st.stage, json, kWhere);
  } catch (...) {
    st.abandon();
    throw;
  }
  st.finished = true;
}

}  // namespace lora
