#pragma once
/// \file lora.hpp
/// \brief Everything in LoRA++: the layer, the SVDs, the initializers, the rank selectors and
/// budgets, training, analysis, and the file formats (safetensors, PEFT adapter folders).
///
/// For programs that want one include. The library's own code includes the specific headers,
/// which compile faster. Not included: lora/analysis/experiment_json.hpp, the one public header
/// that brings in all of nlohmann/json (include it where the experiments' toJson is wanted).

#include "lora/base_weight.hpp"
#include "lora/error.hpp"
#include "lora/layer.hpp"
#include "lora/random.hpp"
#include "lora/resize.hpp"
#include "lora/scaling.hpp"
#include "lora/threads.hpp"

#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/linalg/householder_qr.hpp"
#include "lora/linalg/partial_svd.hpp"
#include "lora/linalg/randomized_svd.hpp"
#include "lora/linalg/spectrum.hpp"
#include "lora/linalg/statistics.hpp"
#include "lora/linalg/symmetric_eigen.hpp"
#include "lora/linalg/weight_statistics.hpp"

#include "lora/init/init.hpp"

#include "lora/rank/adalora_schedule.hpp"
#include "lora/rank/article_gradient.hpp"
#include "lora/rank/budget.hpp"
#include "lora/rank/decision.hpp"
#include "lora/rank/full_gradient_selector.hpp"
#include "lora/rank/gradient_signal.hpp"
#include "lora/rank/layer_kind.hpp"
#include "lora/rank/loss_plateau.hpp"
#include "lora/rank/rank_config.hpp"
#include "lora/rank/slope_plateau.hpp"
#include "lora/rank/svd_energy_selector.hpp"
#include "lora/rank/triplet_importance.hpp"

#include "lora/train/train.hpp"

#include "lora/analysis/experiment.hpp"
#include "lora/analysis/initialization_analyzer.hpp"
#include "lora/analysis/markdown_table.hpp"
#include "lora/analysis/rank_capacity.hpp"

#include "lora/io/adapter_config.hpp"
#include "lora/io/atomic_file.hpp"
#include "lora/io/gguf.hpp"
#include "lora/io/gguf_adapter.hpp"
#include "lora/io/kohya.hpp"
#include "lora/io/kohya_resize.hpp"
#include "lora/io/loss_log.hpp"
#include "lora/io/peft_adapter.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/io/peft_writer.hpp"
#include "lora/io/plot.hpp"
#include "lora/io/progress.hpp"
#include "lora/io/safetensors.hpp"
