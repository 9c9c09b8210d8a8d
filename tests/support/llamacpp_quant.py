"""llama.cpp as the oracle for quantized bytes.

llamacpp_quantize(tensors, type_name, imatrix=None) writes the float32
matrices into a tiny llama-architecture GGUF, runs llama.cpp's own
llama_model_quantize (llama-cpp-python) in `pure` mode (every 2-D weight to the
file type's base type, with llama.cpp's fallback for rows that are not a
multiple of the block size) and returns {name: (ggml type name, bytes)}.
"""
import ctypes
import os
import tempfile

import gguf
import numpy as np

FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K": 12,
          "Q4_K": 15, "Q5_K": 17, "Q6_K": 18}


def _write_f32_gguf(path, tensors):
    """One block per tensor, named blk.i.ffn_up.weight, with hparams sized to pass
    llama.cpp's loader checks in quantize mode (no vocab needed)."""
    n_embd = 64
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(len(tensors))
    w.add_context_length(64)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(16)
    names = {}
    for i, (name, arr) in enumerate(tensors.items()):
        gname = f"blk.{i}.ffn_up.weight"
        names[gname] = name
        w.add_tensor(gname, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return names


def llamacpp_quantize(tensors, type_name, imatrix=None):
    """tensors: {name: float32 [rows, cols]}; imatrix: {name: float32 [cols]} or None."""
    import llama_cpp

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.gguf")
        dst = os.path.join(tmp, "out.gguf")
        names = _write_f32_gguf(src, tensors)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = FTYPES[type_name]
        params.pure = True
        params.nthread = 1
        keep = []
        if imatrix is not None:
            entries = (llama_cpp.llama_model_imatrix_data * (len(names) + 1))()
            for i, (gname, name) in enumerate(names.items()):
                data = np.ascontiguousarray(imatrix[name], dtype=np.float32)
                keep.append(data)
                entries[i].name = gname.encode()
                entries[i].data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                entries[i].size = data.size
            entries[len(names)].name = None
            keep.append(entries)
            params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
        if rc != 0:
            raise RuntimeError(f"llama_model_quantize failed with {rc}")
        reader = gguf.GGUFReader(dst)
        out = {}
        for t in reader.tensors:
            if t.name in names:
                out[names[t.name]] = (t.tensor_type.name, bytes(np.asarray(t.data).tobytes()))
        return out
