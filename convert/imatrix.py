"""llama.cpp importance-matrix files, as llama-quantize reads them.

Two formats (llama.cpp's common/imatrix-loader.cpp):
- GGUF (what llama-imatrix writes today): per weight tensor `<name>.in_sum2`
  (F32, ne0 * n_expert sums of squared activations) and `<name>.counts` (F32,
  n_expert token counts); the importance of a column is sum / count (rounded
  to an integer count, as llama.cpp does), 1 where the count is 0.
- legacy `imatrix.dat`: int32 n_entries, then per entry int32 name length,
  the name, int32 ncall, int32 nval, float32[nval] (already averaged and
  multiplied by ncall), then optionally int32 chunk count and the dataset name;
  the importance is value / ncall (the value itself when ncall is 0).

load_imatrix(path) -> {tensor name: float32 [n_per_row * n_expert]}. The file
is untrusted: every length is checked against the file, anything malformed or
non-finite is one FormatError naming the file.
"""
import os
import struct

import numpy as np

from qinfer.errors import FormatError
from qinfer.gguf_file import GGUFFile

GGUF_MAGIC = b"GGUF"


def load_imatrix(path):
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the importance matrix: {exc.strerror}") from None
    data = _load_gguf(path) if magic == GGUF_MAGIC else _load_legacy(path)
    if not data:
        raise FormatError(f"{path}: the importance matrix holds no entries")
    for name, v in data.items():
        if not np.all(np.isfinite(v)):
            raise FormatError(f"{path}: the importance matrix of {name} has non-finite values")
    return data


def _load_gguf(path):
    f = GGUFFile(path)
    try:
        sums, counts = {}, {}
        for name, t in f.tensors.items():
            for suffix, into in ((".in_sum2", sums), (".counts", counts)):
                if name.endswith(suffix):
                    if t.qtype.name != "F32":
                        raise FormatError(f"{path}: {name} must be F32, not {t.qtype.name}")
                    into[name[:-len(suffix)]] = np.frombuffer(f.tensor_data(t).tobytes(), np.float32)
        out = {}
        for name in sorted(set(sums) | set(counts)):
            if name not in sums or name not in counts:
                raise FormatError(f"{path}: {name} has sums without counts or counts without sums")
            s, c = sums[name], counts[name]
            if c.size == 0 or s.size % c.size:
                raise FormatError(f"{path}: {name} has {s.size} sums for {c.size} expert counts")
            per = s.reshape(c.size, -1)
            n = (np.sign(c) * np.floor(np.abs(c) + 0.5)).astype(np.float32)[:, None]   # std::lround
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(n > 0, per / np.where(n > 0, n, np.float32(1)), np.float32(1))
            out[name] = v.astype(np.float32).reshape(-1)
        return out
    finally:
        f.close()


def _load_legacy(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    pos = 0

    def take(n, what):
        nonlocal pos
        if n < 0 or pos + n > len(raw):
            raise FormatError(f"{path}: not an importance-matrix file (truncated in {what})")
        b = raw[pos:pos + n]
        pos += n
        return b

    def i32(what):
        return struct.unpack("<i", take(4, what))[0]

    n_entries = i32("the entry count")
    if n_entries < 1:
        raise FormatError(f"{path}: not an importance-matrix file (entry count {n_entries})")
    out = {}
    for i in range(n_entries):
        name_len = i32(f"entry {i + 1}")
        try:
            name = take(name_len, f"entry {i + 1}'s name").decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{path}: entry {i + 1}'s name is not UTF-8") from None
        ncall = i32(f"{name}'s call count")
        nval = i32(f"{name}'s value count")
        if nval < 1:
            raise FormatError(f"{path}: {name} has {nval} values")
        v = np.frombuffer(take(4 * nval, f"{name}'s values"), dtype="<f4").astype(np.float32)
        out[name] = (v / np.float32(ncall)).astype(np.float32) if ncall > 0 else v
    return out   # the trailing chunk count and dataset name are informational


def for_tensor(imatrix, name, n_per_row, n_slices, label):
    """The importance rows of one GGUF tensor: float32 [n_slices, n_per_row], or None.

    Tensors the file does not mention are quantized without one (llama.cpp
    does the same); a size that does not match the tensor is an error, as in
    llama-quantize (it means the imatrix belongs to another model)."""
    if imatrix is None or name not in imatrix:
        return None
    v = imatrix[name]
    if v.size != n_per_row * n_slices:
        if name == "token_embd.weight":    # llama-quantize skips it rather than failing
            return None
        raise FormatError(f"{label}: the importance matrix of {name} has {v.size} values, the tensor "
                          f"needs {n_per_row * n_slices}")
    return v.reshape(n_slices, n_per_row)
