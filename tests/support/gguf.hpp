#pragma once
// Test support: head counts for llama's q/k permutation that a fixture's shapes allow.
#include "lora/io/peft_file.hpp"

namespace lora::test {

/// The largest of 4, 2 and 1 heads that every q and k module's row count of \p file allows (out a
/// multiple of 2 x heads), or 0 when none does (then only qwen2, which permutes nothing, fits).
inline int llamaHeads(const lora::PeftAdapterFile& file) {
  for (int h : {4, 2, 1}) {
    bool ok = true;
    for (const auto& m : file.modules())
      if ((m.name.ends_with("q_proj") || m.name.ends_with("k_proj")) && m.out % (2 * h) != 0)
        ok = false;
    if (ok) return h;
  }
  return 0;
}

}  // namespace lora::test
