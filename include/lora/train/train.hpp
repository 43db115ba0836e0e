#pragma once
/// \file train.hpp
/// \brief The training toolkit: optimizers whose state survives a resize (SGD, AdamW, clipping,
/// LoRA+), the training monitor and the rank manager. See docs/training.md.

#include "lora/train/adamw.hpp"
#include "lora/train/atomic_file.hpp"
#include "lora/train/layer_kind.hpp"
#include "lora/train/loss_selector.hpp"
#include "lora/train/monitor.hpp"
#include "lora/train/optimizer.hpp"
#include "lora/train/rank_config.hpp"
#include "lora/train/rank_manager.hpp"
#include "lora/train/sgd.hpp"
#include "lora/train/state_carry.hpp"
#include "lora/train/statistics.hpp"
#include "lora/train/update_rule.hpp"
