# Stand-in for sd-scripts' library/model_util.py (the real one imports diffusers/transformers).
import os


def is_safetensors(path):
    return os.path.splitext(path)[1].lower() == ".safetensors"
