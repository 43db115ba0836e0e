# Stand-in for safetensors.torch, for F64/F32/F16/BF16 tensors. It reads any safetensors file and
# writes bytes exactly as the Rust safetensors crate does: 8-byte little-endian header length;
# compact JSON header (UTF-8 unescaped, like serde_json) with "__metadata__" first when metadata
# is not None (even if empty), then the tensors sorted by dtype, largest first in the crate's Dtype
# enum order, then by name; header padded with spaces to a multiple of 8; data in header order.
import json, struct, torch

_TORCH = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_NAME = {t: n for n, t in _TORCH.items()}
_ORDER = "BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64".split()
_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}  # same-size integer views, for raw bytes


class safe_open:
    """Context manager over one file: metadata() (None when absent), keys() (sorted), get_tensor."""

    def __init__(self, path, framework="pt", device="cpu"):
        with open(path, "rb") as f:
            raw = f.read()
        n = struct.unpack("<Q", raw[:8])[0]
        self._header = json.loads(raw[8:8 + n].decode("utf-8"))
        self._meta = self._header.pop("__metadata__", None)
        self._data = raw[8 + n:]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def metadata(self):
        return self._meta

    def keys(self):
        return sorted(self._header)

    def get_tensor(self, name):
        info = self._header[name]
        begin, end = info["data_offsets"]
        dtype = _TORCH[info["dtype"]]
        if begin == end:
            return torch.empty(info["shape"], dtype=dtype)
        return torch.frombuffer(bytearray(self._data[begin:end]), dtype=dtype).reshape(info["shape"])


def load_file(path, device="cpu"):
    with safe_open(path) as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _bytes(t):
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(_INT[t.element_size()]).numpy().tobytes()


def save(tensors, metadata=None):
    order = sorted(tensors, key=lambda k: (-_ORDER.index(_NAME[tensors[k].dtype]), k))
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in order:
        t = tensors[name]
        blob = _bytes(t)
        header[name] = {"dtype": _NAME[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def save_file(tensors, filename, metadata=None):
    with open(filename, "wb") as f:
        f.write(save(tensors, metadata))
