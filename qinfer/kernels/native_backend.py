"""Native backend: the cffi module qinfer._native built from csrc/.

C entry points follow one naming scheme:
    int qi_quantize_<key>_<quantizer>(const float *x, uint8_t *out,
                                      int64_t nrows, int64_t n_per_row,
                                      const float *imatrix /* or NULL */);
    int qi_dequantize_<key>(const uint8_t *in, float *out, int64_t n);
cffi releases the GIL around each call, so rows are split over Python threads.

matmul(qt, w, x, out=None, n_threads=None) calls qi_matmul (csrc/matmul.c),
which quantizes the activations into a scratch buffer owned here (one per
Python thread, grown on demand) and splits the rows over the C thread pool.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import QinferError
from ._dispatch import alloc_blocks, missing, row_ranges
from .numpy_backend import Backend as _Reference

from qinfer._native import ffi, lib  # noqa: E402  (ImportError = not built)

SIMD_NAMES = {0: "scalar", 1: "avx2+fma+f16c", 2: "neon", 3: "neon+dotprod"}
FEATURE_BITS = {"avx2": 1, "fma": 2, "f16c": 4, "avx512f": 8, "neon": 16, "dotprod": 32, "i8mm": 64}


def cpu_features():
    f = lib.qi_cpu_features()
    return [name for name, bit in FEATURE_BITS.items() if f & bit]


def _apply_simd_env():
    want = os.environ.get("QINFER_SIMD", "").strip().lower()
    if not want:
        return
    levels = {v: k for k, v in SIMD_NAMES.items()}
    levels.update({"avx2": 1, "neon": 2, "dotprod": 3, "best": -1})
    if want not in levels or lib.qi_set_simd_level(levels[want]) < 0:
        raise QinferError(f"QINFER_SIMD={want} is not possible on this CPU "
                          f"(best: {SIMD_NAMES[lib.qi_best_simd_level()]})")


_apply_simd_env()


def ptr(arr, ctype):
    return ffi.cast(ctype, ffi.from_buffer(arr)) if arr is not None else ffi.NULL


def weight_rows(w):
    """(pointer, row stride in bytes) of checked weight rows; rows may be a
    strided view (a memmap slice)."""
    if not w.shape[0]:
        return ffi.cast("const uint8_t *", 0), w.shape[1]
    return ffi.cast("const uint8_t *", w.ctypes.data), w.strides[0]


def c_matrices(mats, n_ins):
    """Checked (qtype, rows) pairs as the C arrays the multi-matrix calls take:
    (types int[], row pointers, row strides int64_t[]); n_ins: each one's input length."""
    checked = [_Reference.matmul_args(qt, w, np.zeros((0, n), np.float32), None)[:2]
               for (qt, w), n in zip(mats, n_ins)]
    rows = [weight_rows(w) for _, w in checked]
    return (checked, ffi.new("int[]", [qt.ggml_id for qt, _ in checked]),
            ffi.new("const uint8_t *[]", [p for p, _ in rows]), ffi.new("int64_t[]", [st for _, st in rows]))


def residual_stream(x, dim, name):
    """x as a C float pointer, if it is what a block updates in place: float32 [n, dim], contiguous, writable."""
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous
            and x.flags.writeable and x.ndim == 2 and x.shape[1] == dim):
        raise QinferError(f"{name}: x must be a writable contiguous float32 [n, {dim}] array")
    return ffi.from_buffer("float[]", x)


def check(rc, what):
    if rc != 0:
        raise QinferError(f"native {what} failed with code {rc}")


class Backend:
    name = "native"

    def describe(self):
        return (f"C core, SIMD {SIMD_NAMES.get(lib.qi_simd_level())}, "
                f"built with {ffi.string(lib.qi_build_info()).decode()}")

    def _fn(self, name):
        fn = getattr(lib, name, None)
        if fn is None:
            missing(self.name, name)
        return fn

    def quantize(self, qt, quantizer, x, imatrix, n_threads=None):
        fn = self._fn(f"qi_quantize_{qt.key}_{quantizer}")
        out = alloc_blocks(qt, x)
        nrows, n = x.shape
        imp = ptr(imatrix, "const float *")
        threads = n_threads or os.cpu_count() or 1
        # Below ~1M elements thread start-up costs more than it saves.
        if threads <= 1 or nrows < 2 or x.size < (1 << 20):
            check(fn(ptr(x, "const float *"), ptr(out, "uint8_t *"), nrows, n, imp), fn.__name__)
            return out

        def work(rng):
            a, b = rng
            check(fn(ptr(x[a:b], "const float *"), ptr(out[a:b], "uint8_t *"), b - a, n, imp),
                  fn.__name__)

        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(work, row_ranges(nrows, threads)))
        return out

    def dequantize(self, qt, rows, n_per_row):
        fn = self._fn(f"qi_dequantize_{qt.key}")
        out = np.empty((rows.shape[0], n_per_row), dtype=np.float32)
        check(fn(ptr(rows, "const uint8_t *"), ptr(out, "float *"), out.size), fn.__name__)
        return out

    _scratch = threading.local()

    def _work(self, nbytes):
        buf = getattr(self._scratch, "buf", None)
        if buf is None or buf.size < nbytes:
            buf = np.empty(max(nbytes, 1 << 16), dtype=np.uint8)
            self._scratch.buf = buf
        return buf

    def matmul(self, qt, w, x, out=None, n_threads=None):
        """y = x @ W.T (see qinfer.kernels.numpy_backend.Backend.matmul_args)."""
        qt, w, x, out = _Reference.matmul_args(qt, w, x, out)
        n_tok, n_in = x.shape
        n_out = w.shape[0]
        need = lib.qi_matmul_work_size(qt.ggml_id, n_tok, n_in)
        check(min(0, need), "qi_matmul_work_size")
        work = self._work(need)
        threads = n_threads or os.cpu_count() or 1
        wp, stride = weight_rows(w)
        check(lib.qi_matmul(qt.ggml_id, wp, stride, n_out, n_in, ptr(x, "const float *"), n_tok,
                            ptr(out, "float *"), ptr(work, "uint8_t *"), work.size, threads),
              f"matmul ({qt.name})")
        return out

    def bind_matmul(self, qt, w, n_in, n_threads=None):
        """x -> x @ W.T for one weight matrix, with its checks and pointers
        worked out once: generation calls every matrix once per token, and the
        per-call Python of matmul() was ~8% of a 1B model's token."""
        qt, w, _, _ = _Reference.matmul_args(qt, w, np.zeros((0, n_in), np.float32), None)
        n_out, gid = w.shape[0], qt.ggml_id
        wp, stride = weight_rows(w)
        threads = n_threads or os.cpu_count() or 1
        work_size, matmul, name = lib.qi_matmul_work_size, lib.qi_matmul, f"matmul ({qt.name})"

        def run(x):
            x = _Reference.bound_activations(x, n_in, name)
            n_tok = x.shape[0]
            out = np.empty((n_tok, n_out), dtype=np.float32)
            need = work_size(gid, n_tok, n_in)
            work = self._work(need)
            check(matmul(gid, wp, stride, n_out, n_in, ffi.from_buffer("float[]", x), n_tok,
                         ffi.from_buffer("float[]", out), ffi.from_buffer("uint8_t[]", work), work.size,
                         threads), name)
            return out

        return run

    def bind_matmul_group(self, mats, n_in, n_threads=None):
        """x -> [x @ W.T for W in mats] for 2-4 matrices (any types) that read the
        same input, in one C call (qi_matmul_multi): one activation
        quantization and one wait for the threads instead of one per matrix.
        mats: (qtype, rows) pairs. Outputs equal bind_matmul's bit for bit."""
        checked, types, ptrs, strides = c_matrices(mats, [n_in] * len(mats))
        n = len(checked)
        n_outs = [w.shape[0] for _, w in checked]
        n_out_c = ffi.new("int64_t[]", n_outs)
        threads = n_threads or os.cpu_count() or 1
        work_size, multi = lib.qi_matmul_multi_work_size, lib.qi_matmul_multi
        name = "matmul (" + ", ".join(qt.name for qt, _ in checked) + ")"

        def run(x):
            x = _Reference.bound_activations(x, n_in, name)
            n_tok = x.shape[0]
            outs = [np.empty((n_tok, k), dtype=np.float32) for k in n_outs]
            out_c = ffi.new("float *[]", [ffi.from_buffer("float[]", o) for o in outs])
            need = work_size(n, types, n_tok, n_in)
            check(min(0, need), name)
            work = self._work(need)
            check(multi(n, types, ptrs, strides, n_out_c, n_in, ffi.from_buffer("float[]", x), n_tok, out_c,
                        ffi.from_buffer("uint8_t[]", work), work.size, threads), name)
            return outs

        return run


    def bind_ffn_block(self, mats, norm_w, eps, n_threads=None):
        """x -> x += down(silu(gate(h)) * up(h)), h = rms_norm(x) * norm_w, in place
        and in one C call (qi_ffn_block_f32): the same C functions as the per-op
        path, bit for bit, without a return to Python between them.
        mats: (qtype, rows) of gate, up, down (gate/up [hidden, dim])."""
        hidden, dim = mats[0][1].shape[0], mats[2][1].shape[0]
        _, types, ptrs, strides = c_matrices(mats, (dim, dim, hidden))
        norm = ffi.from_buffer("float[]", np.ascontiguousarray(norm_w, dtype=np.float32))   # keeps the array alive
        threads = n_threads or os.cpu_count() or 1
        name = "FFN block"

        def run(x):
            xp = residual_stream(x, dim, name)
            n_tok = x.shape[0]
            need = lib.qi_ffn_block_work_size(types, n_tok, dim, hidden)
            check(min(0, need), name)
            work = self._work(need)
            check(lib.qi_ffn_block_f32(xp, n_tok, dim, norm, float(eps), types, ptrs, strides, hidden,
                                       ffi.from_buffer("uint8_t[]", work), work.size, threads), name)
            return x

        return run

    def bind_attn_block(self, mats, norm_w, eps, n_head, n_head_kv, head_dim, head_dim_v, window, n_threads=None):
        """(x, rope_cs, k_cache, v_cache, pos0) -> x += wo(attention(...)) in place, in
        one C call (qi_attn_block_f32; the per-op path's C functions, bit for bit):
        RMSNorm, Q/K/V, RoPE from the table rope_cs (NativeOps.rope_table of the
        positions), K/V written into this layer's caches at pos0.., attention, wo.
        mats: (qtype, rows) of wq, wk, wv, wo."""
        dim = mats[3][1].shape[0]   # wo's rows: the model width
        _, types, ptrs, strides = c_matrices(mats, (dim, dim, dim, n_head * head_dim_v))
        norm = ffi.from_buffer("float[]", np.ascontiguousarray(norm_w, dtype=np.float32))   # keeps the array alive
        threads = n_threads or os.cpu_count() or 1
        name = "attention block"

        def run(x, rope_cs, k_cache, v_cache, pos0):
            xp = residual_stream(x, dim, name)
            n_tok = x.shape[0]
            if not (k_cache.flags.c_contiguous and v_cache.flags.c_contiguous and k_cache.dtype == v_cache.dtype
                    and k_cache.dtype in (np.float16, np.float32) and k_cache.shape[1:] == (n_head_kv, head_dim)
                    and v_cache.shape[1:] == (n_head_kv, head_dim_v) and v_cache.shape[0] == k_cache.shape[0]
                    and 0 <= pos0 and pos0 + n_tok <= k_cache.shape[0]
                    and rope_cs.dtype == np.float64 and rope_cs.size == n_tok * head_dim):
                raise QinferError(f"{name}: caches, positions or RoPE table do not fit")
            need = lib.qi_attn_block_work_size(types, n_tok, dim, n_head, n_head_kv, head_dim, head_dim_v,
                                               pos0 + n_tok, threads)
            check(min(0, need), name)
            work = self._work(need)
            check(lib.qi_attn_block_f32(xp, n_tok, dim, norm, float(eps), types, ptrs, strides,
                                        n_head, n_head_kv, head_dim, head_dim_v, ffi.from_buffer("double[]", rope_cs),
                                        ffi.from_buffer(k_cache), ffi.from_buffer(v_cache),
                                        int(k_cache.dtype == np.float16), int(pos0), int(window),
                                        ffi.from_buffer("uint8_t[]", work), work.size, threads), name)
            return x

        return run
