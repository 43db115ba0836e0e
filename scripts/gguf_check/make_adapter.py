#!/usr/bin/env python3
"""Writes a small Llama-shaped PEFT adapter (and its base config.json) for scripts/check_gguf_converter.sh:
12 layers (so that layers.10 sorts before layers.2), q/k/v/o/gate/up/down, hidden 64, 4 heads, 2
key-value heads, intermediate 96, rank R, tensors in DTYPE (F32 or BF16), written in sorted-name
order as torch's safetensors writes them. Usage: make_adapter.py OUT_DIR BASE_DIR R DTYPE"""
import json, os, struct, sys
import numpy as np

out, base, r, dtype = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
H, I, L, NH, NKV = 64, 96, 12, 4, 2
kv = H // NH * NKV
shapes = {"self_attn.q_proj": (H, H), "self_attn.k_proj": (kv, H), "self_attn.v_proj": (kv, H),
          "self_attn.o_proj": (H, H), "mlp.gate_proj": (I, H), "mlp.up_proj": (I, H),
          "mlp.down_proj": (H, I)}
rng = np.random.default_rng(r)
tensors = {}
for layer in range(L):
    for name, (o, i) in shapes.items():
        key = f"base_model.model.model.layers.{layer}.{name}"
        tensors[key + ".lora_A.weight"] = rng.standard_normal((r, i)).astype(np.float32) / np.sqrt(i)
        tensors[key + ".lora_B.weight"] = rng.standard_normal((o, r)).astype(np.float32)

def encode(a):
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()  # BF16, nearest even

header, blobs, offset = {}, [], 0
for k in sorted(tensors):
    b = encode(tensors[k])
    header[k] = {"dtype": dtype, "shape": list(tensors[k].shape), "data_offsets": [offset, offset + len(b)]}
    offset += len(b)
    blobs.append(b)
header["__metadata__"] = {"format": "pt"}
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "adapter_model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
json.dump({"peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": [n.split(".")[1] for n in shapes],
           "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny-llama", "use_rslora": False,
           "use_dora": False, "fan_in_fan_out": False, "bias": "none", "lora_dropout": 0.0,
           "init_lora_weights": True}, open(os.path.join(out, "adapter_config.json"), "w"), indent=2)
os.makedirs(base, exist_ok=True)
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
           "num_attention_heads": NH, "num_key_value_heads": NKV, "num_hidden_layers": L,
           "intermediate_size": I, "vocab_size": 32, "rms_norm_eps": 1e-5,
           "max_position_embeddings": 128, "rope_theta": 10000.0}, open(os.path.join(base, "config.json"), "w"), indent=2)
