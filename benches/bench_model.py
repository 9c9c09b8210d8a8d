"""Whole-model speed: qinfer vs llama.cpp (llama-cpp-python) on the same GGUF files.

    python benches/bench_model.py [--shape mistral-1b|mixtral-small|tiny] [--types Q4_0,Q4_K_M,Q8_0]
                                  [--threads 1,2] [--pp 256] [--tg 64] [--dir DIR]
                                  [--backends auto|native,numba,...]

Random weights (speed does not depend on them): an F16 file is written with
gguf-py, then quantized by llama.cpp's own llama_model_quantize to each file
type, so both runtimes read identical bytes. For each file and thread count:
pp = tokens/s of one forward pass over a --pp token prompt; tg = tokens/s of
--tg single-token steps after such a prompt (no sampling). tg is also reported as a
fraction of the memory bandwidth measured here (a numpy streaming read):
generation reads every weight byte (every active expert's, for MoE) once per
token, so bytes/token * tg / bandwidth says how close to the hardware limit it is.
--backends times qinfer once per listed backend (qinfer.load(..., backend=...)),
e.g. native,numba to compare the Numba backend with the C core on one file.
"""
import argparse
import functools
import os
import sys
import time

import numpy as np

SHAPES = {
    # Mistral ~1B: dim 2048, 16 layers, 16 heads, 8 KV heads, hidden 5632, vocab 32768.
    "mistral-1b": dict(dim=2048, n_layers=16, n_heads=16, n_kv=8, hidden=5632, vocab=32768, experts=0),
    # Mixtral-shaped (8 experts, top-2) at a size this machine holds: dim 1024, 8 layers.
    "mixtral-small": dict(dim=1024, n_layers=8, n_heads=16, n_kv=8, hidden=2816, vocab=32768, experts=8),
    "tiny": dict(dim=256, n_layers=2, n_heads=4, n_kv=2, hidden=512, vocab=1024, experts=0),
}


def write_random_f16(path, dim, n_layers, n_heads, n_kv, hidden, vocab, experts, seed=0):
    from gguf import GGUFWriter

    rng = np.random.default_rng(seed)
    hd = dim // n_heads

    def mat(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    w = GGUFWriter(str(path), "llama")
    w.add_name(f"random-{'mixtral' if experts else 'mistral'}")
    for add, v in ((w.add_context_length, 4096), (w.add_embedding_length, dim), (w.add_block_count, n_layers),
                   (w.add_feed_forward_length, hidden), (w.add_head_count, n_heads),
                   (w.add_head_count_kv, n_kv), (w.add_rope_dimension_count, hd), (w.add_vocab_size, vocab),
                   (w.add_file_type, 1)):
        add(v)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-5)
    if experts:
        w.add_expert_count(experts)
        w.add_expert_used_count(2)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"▁t{i}" for i in range(vocab - len(tokens))]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (vocab - 259))
    w.add_tensor("token_embd.weight", mat(vocab, dim))
    for i in range(n_layers):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", np.ones(dim, np.float32))
        w.add_tensor(b + "attn_q.weight", mat(dim, dim))
        w.add_tensor(b + "attn_k.weight", mat(n_kv * hd, dim))
        w.add_tensor(b + "attn_v.weight", mat(n_kv * hd, dim))
        w.add_tensor(b + "attn_output.weight", mat(dim, dim))
        w.add_tensor(b + "ffn_norm.weight", np.ones(dim, np.float32))
        if experts:
            w.add_tensor(b + "ffn_gate_inp.weight", mat(experts, dim).astype(np.float32))
            w.add_tensor(b + "ffn_gate_exps.weight", mat(experts, hidden, dim))
            w.add_tensor(b + "ffn_up_exps.weight", mat(experts, hidden, dim))
            w.add_tensor(b + "ffn_down_exps.weight", mat(experts, dim, hidden))
        else:
            w.add_tensor(b + "ffn_gate.weight", mat(hidden, dim))
            w.add_tensor(b + "ffn_up.weight", mat(hidden, dim))
            w.add_tensor(b + "ffn_down.weight", mat(dim, hidden))
    w.add_tensor("output_norm.weight", np.ones(dim, np.float32))
    w.add_tensor("output.weight", mat(vocab, dim))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize_with_llamacpp(src, dst, ftype):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), llama_cpp.byref(params)) != 0:
        raise RuntimeError(f"llama_model_quantize {ftype} failed")


def bandwidth_gbs():
    """Streaming read bandwidth (GB/s): best of 5 sums over a 512 MiB array."""
    a = np.ones(1 << 27, dtype=np.float32)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.nbytes / best / 1e9


def bytes_per_token(path):
    """Weight bytes one generated token reads: all tensors, experts scaled to the used ones."""
    from qinfer.gguf_file import GGUFFile

    f = GGUFFile(path)
    n_exp = f.metadata.get("llama.expert_count", 0)
    used = f.metadata.get("llama.expert_used_count", 0)
    total = 0
    for name, t in f.tensors.items():
        if name == "token_embd.weight":
            continue  # one row per token
        total += t.nbytes * used // n_exp if "_exps." in name else t.nbytes
    return total


def time_qinfer(path, threads, pp, tg, reps=2, backend="auto"):
    import qinfer

    m = qinfer.load(path, n_ctx=pp + tg + 1, n_threads=threads, backend=backend)
    rng = np.random.default_rng(0)
    res = {}
    best = float("inf")
    for _ in range(reps + 1):  # the first run warms up (JIT, page faults)
        m.reset()
        t = time.perf_counter()
        m.eval(rng.integers(0, m.n_vocab, pp), last_only=True)
        best = min(best, time.perf_counter() - t)
    res["pp"] = pp / best
    best = float("inf")
    for _ in range(reps):
        m.reset()
        m.eval(rng.integers(0, m.n_vocab, pp), last_only=True)  # untimed prompt
        t = time.perf_counter()
        for tok in rng.integers(0, m.n_vocab, tg):
            m.eval([int(tok)], last_only=True)
        best = min(best, time.perf_counter() - t)
    res["tg"] = tg / best
    res["backend"] = m.backend.name
    return res


def time_llamacpp(path, threads, pp, tg, reps=2):
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=pp + tg + 1, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    rng = np.random.default_rng(0)
    res = {}
    best = float("inf")
    for _ in range(reps + 1):
        llm.reset()
        t = time.perf_counter()
        llm.eval([int(x) for x in rng.integers(0, llm.n_vocab(), pp)])
        best = min(best, time.perf_counter() - t)
    res["pp"] = pp / best
    best = float("inf")
    for _ in range(reps):
        llm.reset()
        llm.eval([int(x) for x in rng.integers(0, llm.n_vocab(), pp)])  # untimed prompt
        t = time.perf_counter()
        for tok in rng.integers(0, llm.n_vocab(), tg):
            llm.eval([int(tok)])
        best = min(best, time.perf_counter() - t)
    res["tg"] = tg / best
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="mistral-1b", choices=sorted(SHAPES))
    ap.add_argument("--types", default="Q4_0,Q4_K_M,Q8_0")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--pp", type=int, default=256)
    ap.add_argument("--tg", type=int, default=64)
    ap.add_argument("--dir", default=os.path.expanduser("~/.cache/qinfer-bench"))
    ap.add_argument("--no-llamacpp", action="store_true", help="time qinfer only")
    ap.add_argument("--backends", default="auto",
                    help="qinfer backends to time, comma-separated (auto, native, numba, numpy)")
    args = ap.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    f16 = os.path.join(args.dir, f"{args.shape}-F16.gguf")
    if not os.path.exists(f16):
        print(f"writing {f16} ...", file=sys.stderr)
        write_random_f16(f16 + ".tmp", **SHAPES[args.shape])
        os.replace(f16 + ".tmp", f16)
    bw = bandwidth_gbs()
    print(f"# shape {args.shape}; memory read bandwidth {bw:.1f} GB/s; cpu count {os.cpu_count()}")
    print(f"{'type':8s} {'thr':>3s} {'runtime':>13s} {'pp t/s':>9s} {'tg t/s':>8s} {'tg %bw':>7s}")
    for ftype in args.types.split(","):
        path = os.path.join(args.dir, f"{args.shape}-{ftype}.gguf")
        if ftype != "F16" and not os.path.exists(path):
            quantize_with_llamacpp(f16, path + ".tmp", ftype)
            os.replace(path + ".tmp", path)
        per_tok = bytes_per_token(path)
        for threads in (int(t) for t in args.threads.split(",")):
            runs = [("qinfer", functools.partial(time_qinfer, backend=b)) for b in args.backends.split(",")]
            runs += [] if args.no_llamacpp else [("llama.cpp", time_llamacpp)]
            for name, fn in runs:
                r = fn(path, threads, args.pp, args.tg)
                label = f"{name}/{r['backend']}" if "backend" in r else name
                frac = 100 * per_tok * r["tg"] / (bw * 1e9)
                print(f"{ftype:8s} {threads:3d} {label:>13s} {r['pp']:9.1f} {r['tg']:8.2f} {frac:6.1f}%",
                      flush=True)


if __name__ == "__main__":
    main()
