"""Matmul throughput per weight type: qinfer native vs Numba vs llama.cpp's ggml.

    python benches/bench_matmul.py [--n-in 4096] [--n-out 4096] [--tokens 1,64]
                                   [--threads 2] [--types Q4_0,Q4_K,...] [--no-numba]

For every type and token count it times y = x @ W.T on random valid weight
rows and prints GFLOP/s (2*n_in*n_out*n_tok / time) and, for one token, the
weight bandwidth GB/s (weight bytes / time; generation is bandwidth-bound).
llama.cpp is timed through the libggml that llama-cpp-python ships (ctypes:
one MUL_MAT graph computed with ggml_graph_plan + ggml_graph_compute on the same bytes
and the same thread count), i.e. ggml's CPU kernels without the model-level
repacked layouts. The CPU, its flags and the SIMD level are printed first.
"""
import argparse
import ctypes
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from random_blocks import random_rows  # noqa: E402

from qinfer.kernels import get_backend  # noqa: E402
from qinfer.quants import get_type  # noqa: E402

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def cpu_description():
    model, flags = platform.processor() or platform.machine(), []
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith(("flags", "Features")) and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    keep = {"avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "asimd", "asimddp", "i8mm"}
    return model, sorted(f for f in flags if f in keep)


# The clock of the native and ggml measurements (set in main): with one thread
# both compute on the calling thread, so its CPU time is the work done,
# unaffected by other processes taking the core in between (shared machines);
# with more threads only wall time sees all workers. Numba (whose parallel
# regions may run on its own workers) is always timed by the wall clock.
CLOCK = time.perf_counter


def best_time(fn, min_time=0.5, min_reps=3, clock=None):
    clock = clock or CLOCK
    fn()  # warm-up (JIT, page faults, thread creation)
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


class Ggml:
    """Just enough of ggml's C API (via ctypes) to time one MUL_MAT."""

    class InitParams(ctypes.Structure):
        _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p),
                    ("no_alloc", ctypes.c_bool)]

    class CPlan(ctypes.Structure):
        _fields_ = [("work_size", ctypes.c_size_t), ("work_data", ctypes.c_void_p),
                    ("n_threads", ctypes.c_int), ("threadpool", ctypes.c_void_p),
                    ("abort_callback", ctypes.c_void_p), ("abort_callback_data", ctypes.c_void_p),
                    ("use_ref", ctypes.c_bool)]

    def __init__(self):
        import llama_cpp
        libdir = Path(llama_cpp.__file__).parent / "lib"
        self.base = ctypes.CDLL(str(libdir / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        self.cpu = ctypes.CDLL(str(libdir / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
        b, c, vp = self.base, self.cpu, ctypes.c_void_p
        b.ggml_init.restype, b.ggml_init.argtypes = vp, [self.InitParams]
        b.ggml_free.argtypes = [vp]
        b.ggml_new_tensor_2d.restype = vp
        b.ggml_new_tensor_2d.argtypes = [vp, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        b.ggml_mul_mat.restype, b.ggml_mul_mat.argtypes = vp, [vp, vp, vp]
        b.ggml_new_graph.restype, b.ggml_new_graph.argtypes = vp, [vp]
        b.ggml_build_forward_expand.argtypes = [vp, vp]
        b.ggml_get_data.restype, b.ggml_get_data.argtypes = vp, [vp]
        c.ggml_graph_plan.restype = self.CPlan
        c.ggml_graph_plan.argtypes = [vp, ctypes.c_int, vp]
        c.ggml_graph_compute.argtypes = [vp, ctypes.POINTER(self.CPlan)]
        c.ggml_cpu_init()
        self.repack_buft = self._find_repack_buffer_type(libdir)

    def _find_repack_buffer_type(self, libdir):
        """ggml's CPU_REPACK buffer type (None if this build has none): llama.cpp
        loads the weights of some types there, repacked into interleaved rows."""
        b, c, vp = self.base, self.cpu, ctypes.c_void_p
        self.reg = ctypes.CDLL(str(libdir / "libggml.so"), mode=ctypes.RTLD_GLOBAL)
        self.reg.ggml_backend_dev_by_type.restype = vp
        self.reg.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
        b.ggml_backend_dev_backend_reg.restype, b.ggml_backend_dev_backend_reg.argtypes = vp, [vp]
        b.ggml_backend_reg_get_proc_address.restype = vp
        b.ggml_backend_reg_get_proc_address.argtypes = [vp, ctypes.c_char_p]
        b.ggml_backend_buft_name.restype, b.ggml_backend_buft_name.argtypes = ctypes.c_char_p, [vp]
        b.ggml_backend_alloc_ctx_tensors_from_buft.restype = vp
        b.ggml_backend_alloc_ctx_tensors_from_buft.argtypes = [vp, vp]
        b.ggml_backend_buffer_free.argtypes = [vp]
        b.ggml_backend_tensor_set.argtypes = [vp, vp, ctypes.c_size_t, ctypes.c_size_t]
        b.ggml_backend_tensor_get.argtypes = [vp, vp, ctypes.c_size_t, ctypes.c_size_t]
        b.ggml_backend_graph_compute.argtypes = [vp, vp]
        b.ggml_backend_free.argtypes = [vp]
        b.ggml_tensor_overhead.restype = ctypes.c_size_t
        b.ggml_graph_overhead.restype = ctypes.c_size_t
        c.ggml_backend_cpu_buffer_type.restype = vp
        c.ggml_backend_cpu_init.restype = vp
        c.ggml_backend_cpu_set_n_threads.argtypes = [vp, ctypes.c_int]
        dev = self.reg.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
        get = b.ggml_backend_reg_get_proc_address(b.ggml_backend_dev_backend_reg(dev),
                                                  b"ggml_backend_dev_get_extra_bufts")
        if not get:
            return None
        bufts = ctypes.CFUNCTYPE(ctypes.POINTER(vp), vp)(get)(dev)
        i = 0
        while bufts and bufts[i]:
            if b.ggml_backend_buft_name(bufts[i]) == b"CPU_REPACK":
                return bufts[i]
            i += 1
        return None

    def repacked_timer(self, qt, w, x, n_threads):
        """Like matmul_timer, with W in the CPU_REPACK buffer and the graph run by
        the CPU backend, as llama.cpp runs a model. Only for types that ggml
        repacks on this CPU (repacked_types): for others ggml would crash."""
        b, c = self.base, self.cpu
        n_out, n_tok, n_in = w.shape[0], x.shape[0], x.shape[1]
        params = self.InitParams(4 * b.ggml_tensor_overhead() + b.ggml_graph_overhead(), None, True)
        ctx_w, ctx_a = b.ggml_init(params), b.ggml_init(params)
        a = b.ggml_new_tensor_2d(ctx_w, qt.ggml_id, n_in, n_out)
        bt = b.ggml_new_tensor_2d(ctx_a, 0, n_in, n_tok)
        out = b.ggml_mul_mat(ctx_a, a, bt)
        graph = b.ggml_new_graph(ctx_a)
        b.ggml_build_forward_expand(graph, out)
        buf_w = b.ggml_backend_alloc_ctx_tensors_from_buft(ctx_w, self.repack_buft)
        buf_a = b.ggml_backend_alloc_ctx_tensors_from_buft(ctx_a, c.ggml_backend_cpu_buffer_type())
        w = np.ascontiguousarray(w)
        b.ggml_backend_tensor_set(a, w.ctypes.data, 0, w.nbytes)  # repacks
        b.ggml_backend_tensor_set(bt, x.ctypes.data, 0, x.nbytes)
        backend = c.ggml_backend_cpu_init()
        c.ggml_backend_cpu_set_n_threads(backend, n_threads)

        def run():
            b.ggml_backend_graph_compute(backend, graph)

        def result():
            y = np.empty((n_tok, n_out), dtype=np.float32)
            b.ggml_backend_tensor_get(out, y.ctypes.data, 0, y.nbytes)
            return y

        def free():
            b.ggml_backend_free(backend)
            b.ggml_backend_buffer_free(buf_w)
            b.ggml_backend_buffer_free(buf_a)
            b.ggml_free(ctx_w)
            b.ggml_free(ctx_a)

        return run, result, free

    def repacked_types(self, flags, n_out):
        """Our types that ggml's CPU_REPACK buffer repacks here (the x86 cases of
        ggml_repack_get_optimal_repack_type in ggml-cpu/repack.cpp: Q4_0 and
        Q4_K with AVX2, Q2_K with AVX-512, all for row counts that are a
        multiple of 8)."""
        if self.repack_buft is None or n_out % 8:
            return set()
        types = {"Q4_0", "Q4_K"} if "avx2" in flags else set()
        return types | ({"Q2_K"} if "avx512f" in flags else set())

    def matmul_timer(self, qt, w, x, n_threads):
        """A function computing x @ W.T with ggml, and a function reading its result."""
        n_out, n_tok, n_in = w.shape[0], x.shape[0], x.shape[1]
        mem = w.nbytes + x.nbytes + 4 * n_out * n_tok + (16 << 20)  # + tensor and graph headers
        ctx = self.base.ggml_init(self.InitParams(mem, None, False))
        a = self.base.ggml_new_tensor_2d(ctx, qt.ggml_id, n_in, n_out)
        bt = self.base.ggml_new_tensor_2d(ctx, 0, n_in, n_tok)
        out = self.base.ggml_mul_mat(ctx, a, bt)
        graph = self.base.ggml_new_graph(ctx)
        self.base.ggml_build_forward_expand(graph, out)
        ctypes.memmove(self.base.ggml_get_data(a), np.ascontiguousarray(w).ctypes.data, w.nbytes)
        ctypes.memmove(self.base.ggml_get_data(bt), x.ctypes.data, x.nbytes)

        # One plan and one work buffer for all runs (ggml_graph_compute_with_ctx
        # would take a new work buffer from the context on every call).
        plan = self.cpu.ggml_graph_plan(graph, n_threads, None)
        work = ctypes.create_string_buffer(plan.work_size + 64)
        plan.work_data = ctypes.addressof(work)

        def run(keep_alive=work):  # the closure owns the work buffer
            self.cpu.ggml_graph_compute(graph, ctypes.byref(plan))

        def result():
            buf = (ctypes.c_float * (n_out * n_tok)).from_address(self.base.ggml_get_data(out))
            return np.frombuffer(buf, dtype=np.float32).reshape(n_tok, n_out).copy()

        return run, result, lambda: self.base.ggml_free(ctx)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-in", type=int, default=4096)
    ap.add_argument("--n-out", type=int, default=4096)
    ap.add_argument("--tokens", default="1,64")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--no-numba", action="store_true")
    ap.add_argument("--no-ggml", action="store_true")
    ap.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                    help="cpu: the calling thread's CPU time (only meaningful with --threads 1); "
                         "auto: cpu for one thread, wall otherwise")
    args = ap.parse_args()
    global CLOCK
    use_cpu = args.clock == "cpu" or (args.clock == "auto" and args.threads == 1)
    CLOCK = time.thread_time if use_cpu else time.perf_counter

    native = get_backend("native")
    numba_be = None if args.no_numba else get_backend("numba")
    ggml = None
    if not args.no_ggml:
        try:
            ggml = Ggml()
        except (ImportError, OSError, AttributeError) as exc:
            print(f"llama.cpp's ggml not available ({exc}); skipping that column")
    model, flags = cpu_description()
    print(f"CPU: {model}; flags: {' '.join(flags)}; threads: {args.threads}; "
          f"qinfer: {native.describe()}; clock: {'thread CPU time' if use_cpu else 'wall'}")
    print(f"W: {args.n_out} x {args.n_in}\n")
    repacked = ggml.repacked_types(flags, args.n_out) if ggml is not None else set()
    print("| type | n_tok | native GFLOP/s | native GB/s | numba GFLOP/s | numba GB/s | "
          "ggml GFLOP/s | ggml GB/s | native/ggml | ggml repacked GFLOP/s | native/ggml repacked |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for name in args.types.split(","):
        qt = get_type(name)
        w = random_rows(qt, args.n_out, args.n_in, rng)
        for n_tok in (int(t) for t in args.tokens.split(",")):
            x = rng.standard_normal((n_tok, args.n_in)).astype(np.float32)
            flops = 2.0 * args.n_in * args.n_out * n_tok
            out = np.empty((n_tok, args.n_out), dtype=np.float32)
            cols = []
            t_nat = best_time(lambda: native.matmul(qt, w, x, out=out, n_threads=args.threads))
            cols.append(t_nat)
            if numba_be is not None:
                cols.append(best_time(lambda: numba_be.matmul(qt, w, x, n_threads=args.threads),
                                      clock=time.perf_counter))
            else:
                cols.append(None)
            t_ggml = None
            if ggml is not None:
                run, result, free = ggml.matmul_timer(qt, w, x, args.threads)
                t_ggml = best_time(run)
                ref = native.matmul(qt, w, x, n_threads=args.threads)
                rel = np.abs(result() - ref).max() / max(np.abs(ref).max(), 1e-30)
                free()
                if rel > 0.05:
                    print(f"warning: {name} ggml and qinfer differ by {rel:.3g} (relative to max)")
            cols.append(t_ggml)
            t_rep = None
            if name in repacked:
                run, result, free = ggml.repacked_timer(qt, w, x, args.threads)
                t_rep = best_time(run)
                ref = native.matmul(qt, w, x, n_threads=args.threads)
                rel = np.abs(result() - ref).max() / max(np.abs(ref).max(), 1e-30)
                free()
                if rel > 0.05:
                    print(f"warning: {name} repacked ggml and qinfer differ by {rel:.3g} (relative to max)")
            cells = []
            for t in cols:
                if t is None:
                    cells += ["-", "-"]
                else:
                    cells += [f"{flops / t / 1e9:.1f}", f"{w.nbytes / t / 1e9:.1f}" if n_tok == 1 else "-"]
            ratio = f"{t_ggml / t_nat:.2f}" if t_ggml else "-"
            rep = f"{flops / t_rep / 1e9:.1f} | {t_rep / t_nat:.2f}" if t_rep else "- | -"
            print(f"| {name} | {n_tok} | " + " | ".join(cells) + f" | {ratio} | {rep} |", flush=True)


if __name__ == "__main__":
    main()
