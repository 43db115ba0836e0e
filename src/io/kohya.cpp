#include "lora/io/kohya.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "lora/error.hpp"
#include "messages.hpp"

namespace lora {
namespace {

using detail::fail;
using detail::shapeText;
constexpr std::string_view kWhereKohya = "readKohyaLayout";

// The (down, up) names sd-scripts' resize_lora.py accepts, in the order it tries them.
constexpr std::array<std::pair<std::string_view, std::string_view>, 3> kFormats = {
    {{"lora_down", "lora_up"}, {"lora_A", "lora_B"}, {"down", "up"}}};

bool isKohyaFloat(DType d) {
  return d == DType::F16 || d == DType::BF16 || d == DType::F32 || d == DType::F64;
}

// A key split as resize_lora.py splits it: the block (module name), the factor's name, and the
// weight suffix ("" or ".weight"/".<last part>").
struct KeyParts {
  std::string block, factor, suffix;
};

// Whether \p key names a factor called \p which ("lora_down", ...): as the second-to-last
// dot-separated part (with the last part as suffix) or as the last part.
std::optional<KeyParts> splitFactor(std::string_view key, std::string_view which) {
  const std::size_t last = key.rfind('.');
  if (last == std::string_view::npos) {
    return std::nullopt;  // resize_lora.py's block would be empty: not a module
  }
  const std::string_view tail = key.substr(last + 1);
  const std::string_view head = key.substr(0, last);
  const std::size_t prev = head.rfind('.');
  const std::string_view second = prev == std::string_view::npos ? head : head.substr(prev + 1);
  if (second == which && prev != std::string_view::npos) {
    return KeyParts{std::string(head.substr(0, prev)), std::string(which), "." + std::string(tail)};
  }
  if (tail == which) return KeyParts{std::string(head), std::string(which), ""};
  return std::nullopt;
}

}  // namespace

KohyaLayout readKohyaLayout(const SafeTensorsReader& st) {
  const std::string& source = st.sourceName();
  // Keys in byte order: kohya's scripts load the file with safetensors, whose keys() are sorted.
  std::vector<std::string> keys = st.names();
  std::sort(keys.begin(), keys.end());

  KohyaLayout layout;
  std::set<std::string, std::less<>> claimed;
  for (const std::string& key : keys) {
    for (const auto& [downName, upName] : kFormats) {
      const auto parts = splitFactor(key, downName);
      if (!parts) continue;
      KohyaModule m;
      m.name = parts->block;
      m.keyDown = key;
      m.keyUp = parts->block + "." + std::string(upName) + parts->suffix;
      if (!st.contains(m.keyUp)) {
        fail(kWhereKohya, "expected '{}' beside '{}' for module '{}' in '{}', got no such tensor",
             m.keyUp, key, m.name, source);
      }
      const std::string alphaKey = parts->block + ".alpha";
      if (st.contains(alphaKey)) m.keyAlpha = alphaKey;

      const TensorInfo& down = st.info(m.keyDown);
      const TensorInfo& up = st.info(m.keyUp);
      for (const TensorInfo* t : {&down, &up}) {
        if (!isKohyaFloat(t->dtype)) {
          fail(kWhereKohya,
               "expected F16, BF16, F32 or F64 factors for module '{}' in '{}', got {} "
               "for '{}'",
               m.name, source, dtypeName(t->dtype), t->name);
        }
      }
      const bool linear = down.shape.size() == 2 && up.shape.size() == 2;
      const bool conv = down.shape.size() == 4 && up.shape.size() == 4;
      if (!linear && !conv) {
        fail(kWhereKohya,
             "expected 2-D factors (linear) or 4-D factors (conv) for module '{}' in '{}', got "
             "down {} and up {}",
             m.name, source, shapeText(down.shape), shapeText(up.shape));
      }
      if (conv && (up.shape[2] != 1 || up.shape[3] != 1)) {
        fail(kWhereKohya,
             "expected a conv module's up of shape [out, r, 1, 1] for module '{}' in "
             "'{}', got {}",
             m.name, source, shapeText(up.shape));
      }
      if (down.shape[0] < 1 || down.shape[0] != up.shape[1]) {
        fail(kWhereKohya,
             "expected down (r x in...) and up (out x r...) with the same rank r >= 1 for module "
             "'{}' in '{}', got down {} and up {}",
             m.name, source, shapeText(down.shape), shapeText(up.shape));
      }
      for (std::size_t d = 1; d < down.shape.size(); ++d) {
        if (down.shape[d] < 1 || up.shape[0] < 1) {
          fail(kWhereKohya,
               "expected non-empty factors for module '{}' in '{}', got down {} and up {}", m.name,
               source, shapeText(down.shape), shapeText(up.shape));
        }
      }
      m.rank = static_cast<Eigen::Index>(down.shape[0]);
      m.in = static_cast<Eigen::Index>(down.shape[1]);
      m.out = static_cast<Eigen::Index>(up.shape[0]);
      if (conv) {
        m.kernelH = static_cast<Eigen::Index>(down.shape[2]);
        m.kernelW = static_cast<Eigen::Index>(down.shape[3]);
      }
      m.dtype = down.dtype;
      if (!m.keyAlpha.empty()) {
        const TensorInfo& a = st.info(m.keyAlpha);
        if (a.numel() != 1 || a.shape.size() > 1 || !isKohyaFloat(a.dtype)) {
          fail(kWhereKohya,
               "expected a single floating-point value (shape [] or [1]) as the alpha of module "
               "'{}' in '{}', got {} {}",
               m.name, source, dtypeName(a.dtype), shapeText(a.shape));
        }
        // kohya's scripts read every tensor as float32.
        const float value = st.flat<float>(m.keyAlpha)(0);
        if (!std::isfinite(value)) {
          fail(kWhereKohya, "expected a finite alpha for module '{}' in '{}', got {}", m.name,
               source, value);
        }
        m.alpha = value;
        claimed.insert(m.keyAlpha);
      }
      claimed.insert(m.keyDown);
      claimed.insert(m.keyUp);
      layout.modules.push_back(std::move(m));
      break;
    }
  }
  // Two formats naming the same block (x.lora_down.weight and x.down.weight) would share an
  // alpha.
  std::map<std::string_view, const KohyaModule*> byName;
  for (const KohyaModule& m : layout.modules) {
    const auto [it, inserted] = byName.emplace(m.name, &m);
    if (!inserted) {
      fail(kWhereKohya,
           "expected one pair of factors per module in '{}', got '{}' and '{}' for '{}'", source,
           it->second->keyDown, m.keyDown, m.name);
    }
  }
  for (const std::string& key : st.names()) {
    if (claimed.contains(key)) continue;
    for (const auto& [downName, upName] : kFormats) {
      if (const auto parts = splitFactor(key, upName)) {
        fail(kWhereKohya, "expected '{}' beside '{}' for module '{}' in '{}', got no such tensor",
             parts->block + "." + std::string(downName) + parts->suffix, key, parts->block, source);
      }
    }
    layout.others.push_back(key);
  }
  if (layout.modules.empty()) {
    fail(kWhereKohya,
         "expected at least one LoRA module (NAME.lora_down.weight and NAME.lora_up.weight) in "
         "'{}', got none among its {} tensors",
         source, st.size());
  }
  return layout;
}

}  // namespace lora
