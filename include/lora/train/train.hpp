#pragma once
/// \file train.hpp
/// \brief The training toolkit: optimizers whose state survives a resize (SGD, AdamW, clipping,
/// LoRA+), the training monitor and the rank manager. See docs/training.md.
///
/// Also includes what the toolkit's users need from other folders: the rank manager's
/// configuration and the layer kinds (lora/rank), the series statistics (lora/linalg) and
/// train::writeFileAtomically (lora/io/atomic_file.hpp).

#include "lora/io/atomic_file.hpp"
#include "lora/linalg/statistics.hpp"
#include "lora/rank/layer_kind.hpp"
#include "lora/rank/rank_config.hpp"
#include "lora/train/adamw.hpp"
#include "lora/train/loss_selector.hpp"
#include "lora/train/monitor.hpp"
#include "lora/train/optimizer.hpp"
#include "lora/train/rank_manager.hpp"
#include "lora/train/sgd.hpp"
#include "lora/train/state_carry.hpp"
#include "lora/train/update_rule.hpp"
