# Developer check only: Debian's torch 1.13 lacks the float8 dtypes the converter names in a table.
import torch
for _n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "uint16", "uint32", "uint64"):
    if not hasattr(torch, _n):
        setattr(torch, _n, object())
