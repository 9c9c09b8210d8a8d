"""qinfer.quantize(IN.gguf, OUT.gguf, TYPE): re-type an F32/F16/BF16 GGUF (ours or
llama.cpp's) with llama.cpp's per-tensor recipe, keeping all its metadata."""
import gguf
import numpy as np

from qinfer import quants
from qinfer.errors import QinferError, UnsupportedError
from qinfer.gguf_file import ARRAY, GGUFFile

from .gguf_out import check_destination, write_gguf
from .imatrix import for_tensor, load_imatrix
from .model_params import ModelParams
from .recipes import FILE_TYPES, file_type, tensor_type

SOURCE_TYPES = ("F32", "F16", "BF16")


def _params(md, path):
    a = md.get("general.architecture")
    if a != "llama":
        raise UnsupportedError(f"{path}: architecture {a!r} is not supported (llama/Mistral/Mixtral are)")
    g = lambda k, d=0: md.get(f"llama.{k}", d)  # noqa: E731
    n_heads = int(g("attention.head_count"))
    return ModelParams(n_layers=int(g("block_count")), dim=int(g("embedding_length")),
                       hidden_dim=int(g("feed_forward_length")), n_heads=n_heads,
                       n_kv_heads=int(g("attention.head_count_kv", n_heads)), head_dim=0, norm_eps=0.0,
                       rope_theta=0.0, vocab_size=0, context_length=int(g("context_length")),
                       n_experts=int(g("expert_count")), n_experts_used=int(g("expert_used_count")))


def quantize(src, out, type, quantizer="best", imatrix=None, progress=None, force=False):
    """imatrix: path of a llama.cpp importance-matrix file (convert/imatrix.py), or None."""
    ftype = file_type(type)
    imatrix = None if imatrix is None else load_imatrix(imatrix)
    out = check_destination(out, force)
    f = GGUFFile(src)
    params = _params(f.metadata, src)
    params.tied = "output.weight" not in f.tensors
    for n, t in f.tensors.items():
        if t.qtype.name not in SOURCE_TYPES:
            raise UnsupportedError(f"{src}: tensor {n} is already {t.qtype.name}; quantize from an "
                                   "F32, F16 or BF16 file")

    def add_metadata(w):
        for key, value in f.metadata.items():
            if key in ("general.architecture", "general.alignment", "general.file_type",
                       "general.quantization_version"):
                continue
            vt = f.value_types[key]
            if isinstance(vt, tuple):
                w.add_key_value(key, list(value), gguf.GGUFValueType(ARRAY), gguf.GGUFValueType(vt[1]))
            else:
                w.add_key_value(key, value, gguf.GGUFValueType(vt))
        w.add_file_type(FILE_TYPES[ftype][0])
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    def produce(t, ttype, im):
        def run():
            x = quants.dequantize(f.tensor_data(t), t.qtype.name, (t.n_rows, t.n_per_row))
            if ttype == "F32":
                return x.astype(np.float32).view(np.uint8).reshape(-1)
            if im is None:
                return quants.quantize(x, ttype, quantizer).reshape(-1)
            # one importance row per expert (3-D tensors), as llama-quantize slices it
            per = x.reshape(im.shape[0], -1, t.n_per_row)
            return np.concatenate([quants.quantize(per[e], ttype, quantizer, im[e]).reshape(-1)
                                   for e in range(im.shape[0])])
        return run

    entries = []
    for n, t in f.tensors.items():
        shape = tuple(reversed(t.shape))
        ttype = tensor_type(n, shape, ftype, params, imatrix is not None)
        n_slices = t.shape[2] if len(t.shape) > 2 else 1
        im = for_tensor(imatrix, n, t.n_per_row, n_slices, src) if len(t.shape) >= 2 else None
        entries.append((n, shape, ttype, produce(t, ttype, im), t.n_elements * 4))
    try:
        return write_gguf(out, add_metadata, entries, progress)
    except QinferError:
        raise
    finally:
        f.close()
