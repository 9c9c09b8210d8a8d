"""Quantization throughput and error per type: qinfer (ggml and best) next to llama.cpp.

    python benches/bench_quantize.py [--rows 2048] [--cols 4096] [--threads 1,2] [--types Q4_K,...]
                                     [--clock wall|cpu]

For each type it quantizes the same random float32 matrix (Gaussian, 0.02 scale,
as trained weights are) and reports MB of float32 input per second:
- qinfer native "ggml" and "best" (qinfer.quants.quantize, the converter's path);
- llama.cpp's ggml_quantize_chunk from the libggml that llama-cpp-python ships
  (ctypes), rows split evenly over the same number of threads, as llama-quantize
  splits a tensor's rows over its workers.
--clock cpu times with the process's CPU time instead of the wall clock: MB per
CPU-second, which a machine shared with other work disturbs much less (with one
thread it is the throughput of an idle core; with more it is work per core, not
speed-up). Then the RMSE reduction of "best" against "ggml" on Gaussian, Student-t (df=3) and
outlier-channel matrices (no imatrix), and a Mistral-7B -> Q4_K_M projection: the
time each tool would take for the 7.2e9 weights of that model, tensor by tensor
with llama.cpp's Q4_K_M recipe (qinfer.convert.recipes), from the throughputs above.
"""
import argparse
import ctypes
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matmul import cpu_description  # noqa: E402

from qinfer import quants  # noqa: E402
from qinfer.kernels import native_backend  # noqa: E402,F401  (fails early without the C core)

TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


class GgmlQuantizer:
    """ggml_quantize_chunk through ctypes (the function llama-quantize calls per chunk)."""

    def __init__(self):
        import gguf
        import llama_cpp
        libdir = Path(llama_cpp.__file__).parent / "lib"
        self.lib = ctypes.CDLL(str(libdir / "libggml-base.so"))
        f = self.lib.ggml_quantize_chunk
        f.restype = ctypes.c_size_t
        f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                      ctypes.c_int64, ctypes.c_void_p]
        self.ids = {t: int(getattr(gguf.GGMLQuantizationType, t)) for t in TYPES}

    def quantize(self, t, x, out, n_threads):
        rows, n = x.shape
        bounds = np.linspace(0, rows, n_threads + 1).astype(int)
        row_bytes = out.shape[1]

        def work(a, b):
            # start is an element index; dst is the base pointer (ggml offsets it itself)
            self.lib.ggml_quantize_chunk(self.ids[t], x.ctypes.data, out.ctypes.data, int(a) * n,
                                         int(b - a), n, None)

        threads = [threading.Thread(target=work, args=(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return out.reshape(rows, row_bytes)


def best_time(fn, reps=3, clock=time.perf_counter):
    fn()
    times = []
    for _ in range(reps):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def matrix(kind, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, shape) if kind == "student_t" else rng.standard_normal(shape)
    if kind == "outlier":
        x[:, rng.choice(shape[1], shape[1] // 64, replace=False)] *= 20
    return (x * 0.02).astype(np.float32)


def rmse_gain(t, shape):
    gains = []
    for kind in ("gauss", "student_t", "outlier"):
        x = matrix(kind, shape, 7)
        err = {}
        for q in ("ggml", "best"):
            y = quants.dequantize(quants.quantize(x, t, q), t, x.shape)
            err[q] = np.sqrt(np.mean((x.astype(np.float64) - y) ** 2))
        gains.append(100 * (1 - err["best"] / err["ggml"]))
    return gains


def mistral_7b_tensors():
    """(name, rows, cols) of Mistral-7B's quantized matrices."""
    out = [("token_embd.weight", 32768, 4096), ("output.weight", 32768, 4096)]
    for i in range(32):
        out += [(f"blk.{i}.attn_q.weight", 4096, 4096), (f"blk.{i}.attn_k.weight", 1024, 4096),
                (f"blk.{i}.attn_v.weight", 1024, 4096), (f"blk.{i}.attn_output.weight", 4096, 4096),
                (f"blk.{i}.ffn_gate.weight", 14336, 4096), (f"blk.{i}.ffn_up.weight", 14336, 4096),
                (f"blk.{i}.ffn_down.weight", 4096, 14336)]
    return out


def project_7b(speeds, quantizer, n_threads):
    """Seconds to quantize Mistral-7B to Q4_K_M from per-type MB/s (None if a type is missing)."""
    from qinfer.convert.model_params import ModelParams
    from qinfer.convert.recipes import tensor_type
    p = ModelParams(n_layers=32, dim=4096, hidden_dim=14336, n_heads=32, n_kv_heads=8, head_dim=128,
                    norm_eps=1e-5, rope_theta=1e6, vocab_size=32768, context_length=32768)
    total = 0.0
    for name, rows, cols in mistral_7b_tensors():
        t = tensor_type(name, (rows, cols), "Q4_K_M", p)
        mbps = speeds.get((t, quantizer, n_threads))
        if mbps is None:
            return None
        total += rows * cols * 4 / 1e6 / mbps
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--no-error", action="store_true", help="skip the RMSE comparison")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall clock, or the process's CPU time (MB per CPU-second)")
    a = ap.parse_args()
    types = a.types.split(",")
    thread_counts = [int(v) for v in a.threads.split(",")]
    model, flags = cpu_description()
    print(f"CPU: {model}; flags: {' '.join(flags)}")
    x = matrix("gauss", (a.rows, a.cols), 1)
    mb = x.nbytes / 1e6
    ggml = GgmlQuantizer()
    speeds = {}
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    unit = "CPU-second" if a.clock == "cpu" else "second"
    print(f"\nthroughput, MB of float32 in per {unit} ({a.rows} x {a.cols}):")
    print(f"{'type':6} {'thr':>3} {'qinfer ggml':>12} {'qinfer best':>12} {'llama.cpp':>10}  ggml bytes equal")
    for t in types:
        out = np.empty((a.rows, quants.row_bytes(t, a.cols)), np.uint8)
        for n in thread_counts:
            for q in ("ggml", "best"):
                speeds[t, q, n] = mb / best_time(lambda: quants.quantize(x, t, q, n_threads=n), clock=clock)
            speeds[t, "llama.cpp", n] = mb / best_time(lambda: ggml.quantize(t, x, out, n), clock=clock)
            same = np.array_equal(ggml.quantize(t, x, out, n), quants.quantize(x, t, "ggml"))
            print(f"{t:6} {n:>3} {speeds[t, 'ggml', n]:12.1f} {speeds[t, 'best', n]:12.1f} "
                  f"{speeds[t, 'llama.cpp', n]:10.1f}  {same}")
    if not a.no_error:
        print("\nbest vs ggml, RMSE reduction % (gauss / student_t / outlier, 16 x 4096, no imatrix):")
        for t in types:
            g = rmse_gain(t, (16, 4096))
            print(f"{t:6} " + " / ".join(f"{v:5.1f}" for v in g))
    print(f"\nMistral-7B (7.2e9 weights) to Q4_K_M, projected {'CPU-' if a.clock == 'cpu' else ''}seconds:")
    for n in thread_counts:
        row = {q: project_7b(speeds, q, n) for q in ("ggml", "best", "llama.cpp")}
        if None in row.values():
            print(f"  {n} threads: needs Q4_K, Q6_K and Q5_0/Q8_0 measured (use the default --types)")
            continue
        print(f"  {n} threads: qinfer ggml {row['ggml']:.0f} s, qinfer best {row['best']:.0f} s, "
              f"llama.cpp {row['llama.cpp']:.0f} s")


if __name__ == "__main__":
    main()
