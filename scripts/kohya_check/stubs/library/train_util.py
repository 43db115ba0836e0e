# Stand-in for sd-scripts' library/train_util.py, whose imports (accelerate, diffusers,
# transformers, cv2, ...) Debian's python3 lacks. resize_lora.py calls only
# precalculate_safetensors_hashes; we take the real source of it and of the two hash functions it
# calls from the train_util.py named by $KOHYA_TRAIN_UTIL (a copy from the sd-scripts mirror), and
# exec them here with the imports they use.
import ast, hashlib, os  # noqa: F401  (hashlib, BytesIO and safetensors.torch are used by them)
from io import BytesIO  # noqa: F401
import safetensors.torch  # noqa: F401

_path = os.environ["KOHYA_TRAIN_UTIL"]
with open(_path, encoding="utf-8") as _f:
    _tree = ast.parse(_f.read(), _path)
_wanted = {"precalculate_safetensors_hashes", "addnet_hash_legacy", "addnet_hash_safetensors"}
_defs = [n for n in _tree.body if isinstance(n, ast.FunctionDef) and n.name in _wanted]
assert {n.name for n in _defs} == _wanted, "hash functions not found in " + _path
exec(compile(ast.Module(body=_defs, type_ignores=[]), _path, "exec"), globals())
