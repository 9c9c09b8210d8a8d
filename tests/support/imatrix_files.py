"""Importance-matrix files in llama.cpp's two formats, written for tests.

Layouts as llama.cpp's tools/imatrix writes them and common/imatrix-loader.cpp
reads them: GGUF with `<tensor>.in_sum2` (F32 [n_mat, ne0]) and `<tensor>.counts`
(F32 [n_mat, 1]) per weight tensor plus imatrix.* metadata; legacy .dat with
int32 entry count, then name length, name, ncall, nval, float32 values, then
the chunk count and dataset name.
"""
import struct

import gguf
import numpy as np


def write_gguf_imatrix(path, sums, counts, chunk_size=512):
    """sums: {name: float32 [n_mat, ne0]}; counts: {name: float [n_mat]}."""
    w = gguf.GGUFWriter(str(path), "imatrix")
    del w.kv_data[0]["general.architecture"]          # llama-imatrix writes general.type only
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["tests"])
    w.add_uint32("imatrix.chunk_count", int(max(max(c) for c in counts.values()) // chunk_size))
    w.add_uint32("imatrix.chunk_size", chunk_size)
    for name in sorted(sums):
        w.add_tensor(f"{name}.in_sum2", np.ascontiguousarray(sums[name], np.float32))
        w.add_tensor(f"{name}.counts", np.asarray(counts[name], np.float32).reshape(-1, 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_legacy_imatrix(path, values, ncall, chunks=10, dataset="tests"):
    """values: {name: float32 [n]} as llama-imatrix stores them (mean * ncall)."""
    out = [struct.pack("<i", len(values))]
    for name, v in values.items():
        b = name.encode()
        out += [struct.pack("<i", len(b)), b, struct.pack("<ii", ncall, v.size),
                np.asarray(v, "<f4").tobytes()]
    d = dataset.encode()
    out += [struct.pack("<i", chunks), struct.pack("<i", len(d)), d]
    with open(path, "wb") as f:
        f.write(b"".join(out))
