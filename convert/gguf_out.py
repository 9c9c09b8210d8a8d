"""Streaming GGUF output: metadata and tensor infos first, then each tensor's
bytes as it is produced, into a temporary file beside the destination that is
renamed only when complete (a failure or Ctrl-C leaves nothing behind)."""
import os
import tempfile
import time

import gguf
import numpy as np

from qinfer import quants
from qinfer.errors import QinferError


def check_destination(out, force):
    out = os.fspath(out)
    if os.path.exists(out) and not force:
        raise QinferError(f"{out} exists; pass --force to overwrite it")
    return out


def write_gguf(out, add_metadata, entries, progress=None):
    """entries: list of (name, numpy shape, tensor type name, produce() -> uint8 bytes,
    input size in bytes for progress). add_metadata(writer) adds the KV pairs."""
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".qinfer-", suffix=".gguf.part", dir=folder)
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, "llama")
        add_metadata(w)
        for name, shape, ttype, _, _ in entries:
            qt = quants.get_type(ttype)
            nbytes = int(np.prod(shape[:-1], dtype=np.int64)) * qt.row_bytes(shape[-1])
            w.add_tensor_info(name, shape, np.float32, nbytes, raw_dtype=gguf.GGMLQuantizationType(qt.ggml_id))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        total = sum(e[4] for e in entries)
        done, t0 = 0, time.time()
        for name, _, _, produce, size in entries:
            w.write_tensor_data(produce())
            done += size
            if progress:
                progress(name, done, total, time.time() - t0)
        w.close()
        # mkstemp creates 0600; the finished file gets the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except OSError as exc:
        _remove(tmp)
        raise QinferError(f"{out}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        _remove(tmp)
        raise
    return out


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
