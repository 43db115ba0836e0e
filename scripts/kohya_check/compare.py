"""Compares kohya's resize_lora.py output with `lora resize` output, module by module.

    python3 compare.py INPUT.safetensors KOHYA_OUT.safetensors OURS.safetensors LABEL

Checks: same key set; per tensor the same dtype and shape (so the same rank per module); alpha
values exactly equal (as values of the stored dtype); the delta up·down·alpha/rank (float64; a
conv reshaped to out x in·kh·kw) equal within a tolerance relative to the module's delta norm
(1e-5 for F32 output, 1e-2 for F16/BF16); the metadata equal except sshs_model_hash and
sshs_legacy_hash, which in each file must equal what kohya's own precalculate_safetensors_hashes
gives for that file's tensors and ss_* metadata. (The two files' hashes cannot be equal: they hash
the factor bytes, and kohya's float32 dense SVD and our float64 one from the factors differ in the
last bits and in the signs of singular vectors.) Factors are not compared: the singular vectors of
σ = 0 directions (kept when a fixed rank exceeds the old one, or by a dynamic rule's "+1") are
arbitrary. On a delta mismatch it also prints each output's error against the float64 truncated
SVD of the input; on a rank mismatch, the module's input spectrum and the shares the sv_* rules
use. Prints one line (plus details) and exits 1 on any mismatch.
"""
import sys
import torch
from safetensors.torch import load_file, safe_open
from library.train_util import precalculate_safetensors_hashes  # kohya's real code (see stub)

src, ref_path, ours_path, label = sys.argv[1:5]
inp, ref, ours = load_file(src), load_file(ref_path), load_file(ours_path)
problems = []


def meta(path):
    with safe_open(path) as f:
        return f.metadata() or {}


def delta(sd, m):
    down, up = sd[m + ".lora_down.weight"].double(), sd[m + ".lora_up.weight"].double()
    r = down.shape[0]
    alpha = sd[m + ".alpha"].double().item() if m + ".alpha" in sd else r
    return (up.reshape(up.shape[0], -1) @ down.reshape(r, -1)) * (alpha / r)


def spectrum_report(m):
    """The input module's singular values and the sv_* rules' shares, for judging a rank mismatch."""
    s = torch.linalg.svdvals(delta(inp, m))
    s = s[: inp[m + ".lora_down.weight"].shape[0] + 1]
    cum, fro = torch.cumsum(s, 0) / s.sum(), (torch.cumsum(s * s, 0) / (s * s).sum()).sqrt()
    fmt = lambda t: " ".join(f"{x:.9g}" for x in t.tolist())  # noqa: E731
    return (f"    sigma: {fmt(s)}\n    sigma_1/sigma_i: {fmt(s[0] / s)}\n"
            f"    cumulative share (sum sigma): {fmt(cum)}\n    fro share (sqrt sum sigma^2): {fmt(fro)}")


if set(ref) != set(ours):
    problems.append(f"  keys only in kohya's: {sorted(set(ref) - set(ours))}")
    problems.append(f"  keys only in ours: {sorted(set(ours) - set(ref))}")
for k in sorted(set(ref) & set(ours)):
    if ref[k].dtype != ours[k].dtype:
        problems.append(f"  {k}: dtype {ref[k].dtype} (kohya) vs {ours[k].dtype} (ours)")
    if ref[k].shape != ours[k].shape:
        problems.append(f"  {k}: shape {list(ref[k].shape)} (kohya) vs {list(ours[k].shape)} (ours)")
        if k.endswith(".lora_down.weight"):
            problems.append(spectrum_report(k[: -len(".lora_down.weight")]))
    if k.endswith(".alpha") and ref[k].dtype == ours[k].dtype and ref[k].item() != ours[k].item():
        problems.append(f"  {k}: alpha {ref[k].item()!r} (kohya) vs {ours[k].item()!r} (ours)")

modules = sorted(k[: -len(".lora_down.weight")] for k in ref if k.endswith(".lora_down.weight"))
tol = 1e-5 if ref[modules[0] + ".lora_down.weight"].dtype == torch.float32 else 1e-2
worst, worst_m = 0.0, None
for m in modules:
    if m + ".lora_down.weight" not in ours or m + ".lora_up.weight" not in ours:
        continue  # reported with the key sets
    d_ref, d_ours = delta(ref, m), delta(ours, m)
    norm = d_ref.norm().item()
    err = (d_ref - d_ours).norm().item() / (norm if norm > 0 else 1.0)
    if err > worst:
        worst, worst_m = err, m
    if err > tol:
        # Which output is off: each one's error against the float64 truncated SVD of the input.
        u, s, vh = torch.linalg.svd(delta(inp, m), full_matrices=False)
        r = min(ref[m + ".lora_down.weight"].shape[0], len(s))
        exact = u[:, :r] @ torch.diag(s[:r]) @ vh[:r]
        e_ref, e_ours = [((d - exact).norm() / exact.norm().clamp(min=1e-300)).item() for d in (d_ref, d_ours)]
        problems.append(f"  {m}: delta relative error {err:.3g} > {tol:g} (|delta| {norm:.6g}); against the "
                        f"float64 rank-{r} truncation: kohya {e_ref:.3g}, ours {e_ours:.3g}")
        problems.append(f"    sigma: {' '.join(f'{x:.9g}' for x in s[: r + 2].tolist())}")

HASHES = ("sshs_model_hash", "sshs_legacy_hash")
m_ref, m_ours = meta(ref_path), meta(ours_path)
for k in sorted(set(m_ref) | set(m_ours)):
    if k not in HASHES and m_ref.get(k) != m_ours.get(k):
        problems.append(f"  metadata {k}: {m_ref.get(k)!r} (kohya) vs {m_ours.get(k)!r} (ours)")
for who, sd, md in (("kohya", ref, m_ref), ("ours", ours, m_ours)):
    want = precalculate_safetensors_hashes(sd, {k: v for k, v in md.items() if k not in HASHES})
    for k, w in zip(HASHES, want):
        if md.get(k) != w:
            problems.append(f"  metadata {k} in {who}: {md.get(k)!r}, but the file's content gives {w!r}")

summary = f"{len(modules)} modules, worst delta error {worst:.2e} ({worst_m}), tolerance {tol:g}"
if problems:
    print(f"{label}: DIFFERENT ({summary})")
    print("\n".join(problems))
    sys.exit(1)
print(f"{label}: identical ({summary})")
