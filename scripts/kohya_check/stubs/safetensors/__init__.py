# Stand-in for the safetensors package (Debian's python3 has none); see safetensors/torch.py.
from safetensors.torch import safe_open  # noqa: F401  (the real package exports it here too)
