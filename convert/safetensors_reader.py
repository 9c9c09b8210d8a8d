"""Safetensors reader that never trusts the file: the JSON header is parsed
with its length bounded, every tensor's byte range is checked against the file
(or tar member) it lives in, and tensors come back as zero-copy memmap views."""
import json
from dataclasses import dataclass

import numpy as np

from qinfer.errors import FormatError, UnsupportedError

# safetensors dtype -> numpy dtype of the stored bits (bf16 kept as raw uint16).
DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
          "BOOL": np.bool_}
MAX_HEADER = 100 << 20


@dataclass
class TensorRef:
    name: str
    dtype: str            # safetensors dtype name
    shape: tuple
    path: str
    offset: int           # absolute offset of the data in `path`
    nbytes: int

    def array(self):
        """Zero-copy view of the stored values (BF16 as uint16 bits)."""
        count = int(np.prod(self.shape)) if self.shape else 1
        mm = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self.offset, shape=(self.nbytes,))
        return mm.view(DTYPES[self.dtype])[:count].reshape(self.shape)

    def float32(self):
        a = self.array()
        if self.dtype == "BF16":
            # shifted in place: `a.astype(np.uint32) << 16` would hold a second float32-sized
            # temporary (512 MiB for a 7B model's token_embd), the converter's peak RSS
            wide = a.astype(np.uint32)
            wide <<= 16
            return wide.view(np.float32)
        if self.dtype in ("F32", "F16", "F64"):
            return a.astype(np.float32)
        raise UnsupportedError(f"{self.path}: tensor {self.name} has non-float dtype {self.dtype}")


def read_safetensors(path, base=0, size=None, label=None):
    """Index the safetensors stored at `path`[base : base+size] (a plain file or a
    tar member). Returns {name: TensorRef}."""
    label = label or path
    with open(path, "rb") as f:
        f.seek(0, 2)
        fsize = f.tell()
        if size is None:
            size = fsize - base
        if base + size > fsize:
            raise FormatError(f"{label}: file is truncated ({fsize - base} of {size} bytes present)")
        if size < 8:
            raise FormatError(f"{label}: too short to be a safetensors file")
        f.seek(base)
        hlen = int.from_bytes(f.read(8), "little")
        if hlen > min(MAX_HEADER, size - 8):
            raise FormatError(f"{label}: safetensors header length {hlen} exceeds the file")
        try:
            header = json.loads(f.read(hlen).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"{label}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise FormatError(f"{label}: safetensors header is not an object")
    data_start = base + 8 + hlen
    data_size = size - 8 - hlen
    out, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (a, b) = info["dtype"], tuple(int(s) for s in info["shape"]), info["data_offsets"]
            a, b = int(a), int(b)
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{label}: malformed entry for tensor {name!r}") from None
        if dtype not in DTYPES:
            raise FormatError(f"{label}: tensor {name!r} has unknown dtype {dtype!r}")
        if any(s < 0 for s in shape):
            raise FormatError(f"{label}: tensor {name!r} has a negative dimension")
        need = int(np.prod(shape, dtype=object)) * np.dtype(DTYPES[dtype]).itemsize if shape \
            else np.dtype(DTYPES[dtype]).itemsize
        if not (0 <= a <= b <= data_size) or b - a != need:
            raise FormatError(f"{label}: tensor {name!r} claims bytes {a}..{b}, which do not fit "
                              f"its shape {shape} or the {data_size}-byte data section")
        spans.append((a, b, name))
        out[name] = TensorRef(name, dtype, shape, path, data_start + a, b - a)
    spans.sort()
    for (a0, b0, n0), (a1, b1, n1) in zip(spans, spans[1:]):
        if a1 < b0:
            raise FormatError(f"{label}: tensors {n0!r} and {n1!r} overlap")
    return out
