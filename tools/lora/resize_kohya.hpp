#pragma once
// `lora resize` on a kohya-format Stable Diffusion LoRA file: kohya's resize_lora.py rules
// (lora/io/kohya_resize.hpp), the output a file as kohya's script writes it.

#include <string>

#include "common.hpp"
#include "lora/io/kohya_resize.hpp"

namespace lora::cli {

struct KohyaResizeRequest {
  std::string in, out;
  KohyaResizeOptions options;
  std::string ruleFlag;  // "--rank 8", "--sv-fro 0.9": for the report
  bool force = false;
  CommonOptions common;
  unsigned threads = 1;
};

void resizeKohya(const KohyaResizeRequest& request);

}  // namespace lora::cli
