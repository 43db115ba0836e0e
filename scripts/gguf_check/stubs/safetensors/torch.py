# Stub of safetensors.torch.load_file: names in sorted order (safetensors < 0.6, and the data
# order of files written by torch's safetensors).
import json, struct, numpy as np, torch
_DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
def load_file(path, device="cpu"):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k in sorted(h):
        if k == "__metadata__":
            continue
        v = h[k]
        s, e = v["data_offsets"]
        raw = b[8 + n + s: 8 + n + e]
        if v["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            t = torch.from_numpy(u.view(np.float32).copy()).to(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=_DT[v["dtype"]]).copy())
        out[k] = t.reshape(v["shape"])
    return out
