"""Writes a small kohya-format Stable Diffusion LoRA file for scripts/check_kohya_resize.sh.

    python3 make_lora.py OUT.safetensors F32|F16|BF16 SEED [big]

SDXL-like module names: text encoders (lora_te1_/lora_te2_ ..._self_attn_q_proj, ..._mlp_fc1),
U-Net attention (..._attn1_to_q, ..._attn2_to_k, ..._ff_net_2), 1x1 convs (..._proj_in,
..._conv_shortcut) and 3x3 LoCon convs (..._resnets_0_conv1). Each module's product up·down has a
decaying spectrum σ_i ≈ a·d^i (random a, d and jitter, so the sv_* rules keep various ranks),
spread over non-orthogonal factors. Some modules have no alpha, one is all zero (up = 0), one has
rank 16 with a fast decay; the last module by name (whose new alpha kohya writes as
ss_network_alpha) has alpha 0.7, so that value is not a round number. "big" writes 224 larger
modules, so that most outputs pass 1 MiB and the legacy hash (64 KiB at offset 1 MiB) sees data.
"""
import sys
import numpy as np
import torch
from safetensors.torch import save_file

out, dtype_name, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
big = len(sys.argv) > 4 and sys.argv[4] == "big"
dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype_name]
rng = np.random.default_rng(seed)


def module_list():
    """(name, out, in, kernel) for every module; kernel 0 means linear."""
    mods = []
    te = [("te1", 320 if big else 96, 320 if big else 256, 12 if big else 2),
          ("te2", 320 if big else 128, 320, 12 if big else 1)]
    for enc, hidden, mlp, layers in te:
        for i in range(layers):
            p = f"lora_{enc}_text_model_encoder_layers_{i}_"
            mods += [(p + f"self_attn_{x}_proj", hidden, hidden, 0) for x in "qkvo"]
            mods += [(p + "mlp_fc1", mlp, hidden, 0), (p + "mlp_fc2", hidden, mlp, 0)]
    for b in range(8 if big else 2):
        ch = 64 if b % 2 == 0 else 32
        p = f"lora_unet_down_blocks_{b}_attentions_0_"
        t = p + "transformer_blocks_0_"
        mods += [(p + "proj_in", ch, ch, 1), (p + "proj_out", ch, ch, 1)]
        mods += [(t + f"attn1_to_{x}", ch, ch, 0) for x in ("q", "k", "v", "out_0")]
        mods += [(t + "attn2_to_k", ch, 160, 0), (t + "attn2_to_v", ch, 160, 0)]
        mods += [(t + "ff_net_0_proj", 4 * ch, ch, 0), (t + "ff_net_2", ch, 2 * ch, 0)]
        if not big:
            r = f"lora_unet_down_blocks_{b}_resnets_0_"
            mods += [(r + "conv1", ch, 16 if b == 0 else 32, 3), (r + "conv2", ch, ch, 3),
                     (r + "conv_shortcut", ch, 16 if b == 0 else 32, 1)]
    return mods


def orthonormal(n, k):
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return q


tensors = {}
last = max(m[0] for m in module_list())  # kohya's ss_network_alpha is this module's new alpha
for idx, (name, n_out, n_in, k) in enumerate(module_list()):
    cols = n_in * max(k, 1) ** 2
    rank = int(rng.choice([4, 8] if k == 3 else [4, 6, 8, 12, 16]))
    decay = rng.uniform(0.35, 0.9)
    if idx == 3:  # rank above what any rule keeps: rank 16, fast decay
        rank, decay = 16, 0.3
    # Each σ_{i+1}/σ_i is decay·(1 ± 10%), at most 0.95: no near-ties, where a float32 SVD (kohya's)
    # would be off by eps32/gap (a 0.2% gap gave 6e-5) and a 1e-5 comparison would fail on kohya.
    steps = np.minimum(0.95, decay * rng.uniform(0.9, 1.1, rank - 1))
    sigma = rng.uniform(0.05, 1.0) * np.concatenate([[1.0], np.cumprod(steps)])
    up = orthonormal(n_out, rank) * sigma
    down = orthonormal(cols, rank).T
    mix = np.eye(rank) + 0.3 * rng.standard_normal((rank, rank)) / np.sqrt(rank)
    up, down = up @ mix, np.linalg.solve(mix, down)  # same product, non-orthogonal factors
    if idx == 5:  # all-zero module
        up[:] = 0
    if k:
        up, down = up.reshape(n_out, rank, 1, 1), down.reshape(rank, n_in, k, k)
    tensors[name + ".lora_up.weight"] = torch.from_numpy(up).to(dtype).contiguous()
    tensors[name + ".lora_down.weight"] = torch.from_numpy(down).to(dtype).contiguous()
    alpha = 0.7 if name == last else [None, float(rank), rank / 2, 1.0, 3.0, 0.7][idx % 6]
    if alpha is not None:
        tensors[name + ".alpha"] = torch.tensor(alpha).to(dtype)

metadata = {"ss_training_comment": "test LoRA, seed %d — テスト\n2nd line" % seed,
            "ss_network_dim": "16", "ss_network_alpha": "8.0", "ss_output_name": "test",
            "modelspec.title": "kohya check"}
save_file(tensors, out, metadata)
