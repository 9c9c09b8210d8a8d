"""Whole-model speed: qinfer vs llama.cpp (llama-cpp-python) on the same GGUF files.

    python benches/bench_model.py [--shape mistral-1b|mistral-7b|mixtral-1b|mixtral-small|tiny]
                                  [--types Q4_0,Q4_K_M,Q8_0] [--threads 1,2] [--pp 256] [--tg 64]
                                  [--dir DIR] [--backends auto|native,numba,...] [--random-quant] [--reps N]

Random weights (speed does not depend on them): an F16 file is written with
gguf-py, then quantized by llama.cpp's own llama_model_quantize to each file
type, so both runtimes read identical bytes (--random-quant instead writes
random blocks of the types llama.cpp's recipe picks, for the 7B shape). For
each file and thread count:
pp = tokens/s of one forward pass over a --pp token prompt; tg = tokens/s of
--tg single-token steps after a 16-token prompt (no sampling). tg is also reported as a
fraction of the memory bandwidth measured here (a numpy streaming read):
generation reads every weight byte (every active expert's, for MoE) once per
token, so bytes/token * tg / bandwidth says how close to the hardware limit it is.
--backends times qinfer once per listed backend (qinfer.load(..., backend=...)),
e.g. native,numba to compare the Numba backend with the C core on one file.
"""
import argparse
import os
import sys
import time

import numpy as np

SHAPES = {
    # Mistral ~1B: dim 2048, 16 layers, 16 heads, 8 KV heads, hidden 5632, vocab 32768.
    "mistral-1b": dict(dim=2048, n_layers=16, n_heads=16, n_kv=8, hidden=5632, vocab=32768, experts=0),
    # Mixtral-shaped (8 experts, top-2) at a size this machine holds: dim 1024, 8 layers.
    "mixtral-small": dict(dim=1024, n_layers=8, n_heads=16, n_kv=8, hidden=2816, vocab=32768, experts=8),
    # Mistral-7B: dim 4096, 32 layers, 32 heads, 8 KV heads, hidden 14336 (write with --random-quant).
    "mistral-7b": dict(dim=4096, n_layers=32, n_heads=32, n_kv=8, hidden=14336, vocab=32768, experts=0),
    # Mixtral-shaped at the 1B model's width: 8 experts (top-2) per layer, 4.6B weights, ~1.3B active.
    "mixtral-1b": dict(dim=2048, n_layers=16, n_heads=16, n_kv=8, hidden=5632, vocab=32768, experts=8),
    "tiny": dict(dim=256, n_layers=2, n_heads=4, n_kv=2, hidden=512, vocab=1024, experts=0),
}


FTYPE_IDS = {"F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_S": 11,
             "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18}


def add_hparams(w, dim, n_layers, n_heads, n_kv, hidden, vocab, experts, file_type):
    """The llama-architecture metadata and a byte-fallback SentencePiece vocabulary."""
    w.add_name(f"random-{'mixtral' if experts else 'mistral'}")
    for add, v in ((w.add_context_length, 4096), (w.add_embedding_length, dim), (w.add_block_count, n_layers),
                   (w.add_feed_forward_length, hidden), (w.add_head_count, n_heads),
                   (w.add_head_count_kv, n_kv), (w.add_rope_dimension_count, dim // n_heads),
                   (w.add_vocab_size, vocab), (w.add_file_type, file_type)):
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


def tensor_shapes(dim, n_layers, n_heads, n_kv, hidden, vocab, experts):
    """(name, numpy shape) of every tensor of the llama graph, in file order."""
    hd = dim // n_heads
    shapes = [("token_embd.weight", (vocab, dim))]
    for i in range(n_layers):
        b = f"blk.{i}."
        shapes += [(b + "attn_norm.weight", (dim,)), (b + "attn_q.weight", (dim, dim)),
                   (b + "attn_k.weight", (n_kv * hd, dim)), (b + "attn_v.weight", (n_kv * hd, dim)),
                   (b + "attn_output.weight", (dim, dim)), (b + "ffn_norm.weight", (dim,))]
        if experts:
            shapes += [(b + "ffn_gate_inp.weight", (experts, dim)), (b + "ffn_gate_exps.weight", (experts, hidden, dim)),
                       (b + "ffn_up_exps.weight", (experts, hidden, dim)),
                       (b + "ffn_down_exps.weight", (experts, dim, hidden))]
        else:
            shapes += [(b + "ffn_gate.weight", (hidden, dim)), (b + "ffn_up.weight", (hidden, dim)),
                       (b + "ffn_down.weight", (dim, hidden))]
    shapes += [("output_norm.weight", (dim,)), ("output.weight", (vocab, dim))]
    return shapes


def write_random_f16(path, dim, n_layers, n_heads, n_kv, hidden, vocab, experts, seed=0):
    from gguf import GGUFWriter

    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), "llama")
    add_hparams(w, dim, n_layers, n_heads, n_kv, hidden, vocab, experts, file_type=1)
    for name, shape in tensor_shapes(dim, n_layers, n_heads, n_kv, hidden, vocab, experts):
        if "_norm." in name:
            w.add_tensor(name, np.ones(shape, np.float32))
        else:
            x = rng.standard_normal(shape, dtype=np.float32) * 0.02
            w.add_tensor(name, x if name.endswith("ffn_gate_inp.weight") else x.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# The f16 scale fields of each block type (byte offset, value). Random bytes
# everywhere else (codes, packed sub-block scales) make valid blocks; these
# magnitudes keep the weights around 0.01-0.1 so activations stay finite.
SCALE_FIELDS = {
    "Q4_0": ((0, 4e-3),), "Q4_1": ((0, 4e-3), (2, -3e-2)), "Q5_0": ((0, 2e-3),),
    "Q5_1": ((0, 2e-3), (2, -3e-2)), "Q8_0": ((0, 2e-4),), "Q2_K": ((80, 1e-3), (82, 1e-3)),
    "Q3_K": ((108, 1e-3),), "Q4_K": ((0, 2e-4), (2, 2e-4)), "Q5_K": ((0, 1e-4), (2, 1e-4)),
    "Q6_K": ((208, 5e-5),),
}


def write_random_quantized(path, ftype, dim, n_layers, n_heads, n_kv, hidden, vocab, experts, seed=0):
    """A GGUF of file type `ftype` with random blocks, streamed to disk.

    Quantizing a 7B F16 file takes llama.cpp ~10 CPU-minutes per type and the
    F16 file itself 14.5 GB; speed does not depend on the weights, so this
    writes random blocks of the types llama.cpp's recipe would choose (our
    convert/recipes.py, which the converter tests prove equal to llama.cpp's)."""
    import types

    from gguf import GGMLQuantizationType, GGUFWriter

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from convert.recipes import tensor_type
    from qinfer.quants import get_type

    rng = np.random.default_rng(seed)
    params = types.SimpleNamespace(n_experts=experts, n_heads=n_heads, n_kv_heads=n_kv, n_layers=n_layers,
                                   tied=False)
    shapes = tensor_shapes(dim, n_layers, n_heads, n_kv, hidden, vocab, experts)

    w = GGUFWriter(str(path), "llama")
    add_hparams(w, dim, n_layers, n_heads, n_kv, hidden, vocab, experts, file_type=FTYPE_IDS[ftype])
    plan = []
    for name, shape in shapes:
        t = tensor_type(name, shape, ftype, params)
        if t == "F32":
            plan.append((name, None, shape))
            w.add_tensor_info(name, shape, np.dtype(np.float32), 4 * int(np.prod(shape)))
            continue
        qt = get_type(t)
        byte_shape = shape[:-1] + (qt.row_bytes(shape[-1]),)
        plan.append((name, qt, byte_shape))
        w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)),
                          raw_dtype=GGMLQuantizationType[t])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, qt, shape in plan:
        if qt is None:
            ones = "_norm." in name
            w.write_tensor_data(np.ones(shape, np.float32) if ones
                                else (rng.standard_normal(shape, dtype=np.float32) * 0.02))
            continue
        data = np.frombuffer(rng.bytes(int(np.prod(shape))), dtype=np.uint8).reshape(shape).copy()
        blocks = data.reshape(-1, qt.type_size)
        for off, val in SCALE_FIELDS[qt.name]:
            blocks[:, off:off + 2] = np.array([val], dtype=np.float16).view(np.uint8)
        w.write_tensor_data(data)
    w.close()


def quantize_with_llamacpp(src, dst, ftype):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), llama_cpp.byref(params)) != 0:
        raise RuntimeError(f"llama_model_quantize {ftype} failed")


def bandwidth_gbs(threads=1):
    """Streaming read bandwidth (GB/s): best of 5 sums over a 512 MiB array,
    split over `threads` threads (numpy releases the GIL in the sum; one core
    alone does not saturate the memory bus)."""
    from concurrent.futures import ThreadPoolExecutor

    a = np.ones(1 << 27, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as ex:
        for _ in range(5):
            t = time.perf_counter()
            list(ex.map(np.sum, parts))
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


def reread_into_huge_pages(path):
    """Drop the file's clean pages from the page cache and read it back through
    qinfer's mapping (which asks for huge pages), so that both runtimes stream
    2 MiB folios. Without this the folio sizes are whatever wrote or last read
    the file (llama.cpp's quantizer leaves 4 KiB pages), which moved tg by
    10-15% between runs. Returns the fraction of the file mapped by huge pages
    (0 where the kernel has no THP for files)."""
    from qinfer.gguf_file import GGUFFile

    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    f = GGUFFile(path)
    buf = f.buffer
    int(buf[::4096].sum())   # one byte per page: faults the whole file in
    huge = 0
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        mine = False
        for line in smaps:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                mine = line.rstrip().endswith(os.path.abspath(path))
            elif mine and head[0] == "FilePmdMapped:":
                huge += int(head[1]) * 1024
    del buf
    f.close()
    return huge / os.path.getsize(path)


# tg is timed after a prompt of this many tokens (the issue: "64 tokens after a
# short prompt"), so the KV cache holds 16..80 positions while it runs.
TG_PROMPT = 16


def time_runtimes(runtimes, pp, tg, reps):
    """Best-of-reps pp and tg tokens/s of each runtime, the runtimes taking
    turns rep by rep: this VM's speed drifts by 10-30% over minutes, so timing
    one runtime's reps and then the other's would compare two different
    machines. runtimes: {label: (reset, eval_tokens, n_vocab)}. A short prompt
    and one generated token first warm each up (JIT compilation, page faults of
    the mapped file); a full warm-up prompt would add a minute per run at the
    7B shape."""
    rng = np.random.default_rng(0)
    for reset, eval_tokens, n_vocab in runtimes.values():
        reset()
        eval_tokens(rng.integers(0, n_vocab, TG_PROMPT))
        eval_tokens(rng.integers(0, n_vocab, 1))
    best = {label: {"pp": float("inf"), "tg": float("inf")} for label in runtimes}
    for _ in range(reps):
        for label, (reset, eval_tokens, n_vocab) in runtimes.items():
            reset()
            t = time.perf_counter()
            eval_tokens(rng.integers(0, n_vocab, pp))
            best[label]["pp"] = min(best[label]["pp"], time.perf_counter() - t)
    for _ in range(reps):
        for label, (reset, eval_tokens, n_vocab) in runtimes.items():
            reset()
            eval_tokens(rng.integers(0, n_vocab, TG_PROMPT))  # untimed short prompt
            t = time.perf_counter()
            for tok in rng.integers(0, n_vocab, tg):
                eval_tokens([int(tok)])
            best[label]["tg"] = min(best[label]["tg"], time.perf_counter() - t)
    return {label: {"pp": pp / b["pp"], "tg": tg / b["tg"]} for label, b in best.items()}


def qinfer_runtime(path, threads, n_ctx, backend="auto"):
    import qinfer

    m = qinfer.load(path, n_ctx=n_ctx, n_threads=threads, backend=backend)
    return f"qinfer/{m.backend.name}", (m.reset, lambda ids: m.eval(ids, last_only=True), m.n_vocab)


def llamacpp_runtime(path, threads, n_ctx):
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    return "llama.cpp", (llm.reset, lambda ids: llm.eval([int(x) for x in ids]), llm.n_vocab())


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
    ap.add_argument("--random-quant", action="store_true",
                    help="write each file type's blocks at random instead of quantizing an F16 file "
                         "with llama.cpp (for shapes too big for that, e.g. mistral-7b)")
    ap.add_argument("--keep-page-cache", action="store_true",
                    help="time the files in whatever page sizes the page cache holds them, instead of "
                         "re-reading each into huge pages first")
    ap.add_argument("--reps", type=int, default=3,
                    help="timed repetitions (best kept) after a short warm-up, the runtimes taking turns")
    args = ap.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    f16 = os.path.join(args.dir, f"{args.shape}-F16.gguf")
    if not args.random_quant and not os.path.exists(f16):
        print(f"writing {f16} ...", file=sys.stderr)
        write_random_f16(f16 + ".tmp", **SHAPES[args.shape])
        os.replace(f16 + ".tmp", f16)
    thread_counts = [int(t) for t in args.threads.split(",")]
    bw = max(bandwidth_gbs(n) for n in sorted(set([1] + thread_counts)))
    from qinfer.kernels.native_backend import cpu_features
    print(f"# shape {args.shape}; memory read bandwidth {bw:.1f} GB/s (best over thread counts); "
          f"cpu count {os.cpu_count()}; cpu features {'+'.join(cpu_features())}")
    print(f"{'type':8s} {'thr':>3s} {'runtime':>13s} {'pp t/s':>9s} {'tg t/s':>8s} {'tg %bw':>7s}")
    for ftype in args.types.split(","):
        path = os.path.join(args.dir, f"{args.shape}-{ftype}{'-random' if args.random_quant else ''}.gguf")
        if args.random_quant and not os.path.exists(path):
            print(f"writing {path} ...", file=sys.stderr)
            write_random_quantized(path + ".tmp", ftype, **SHAPES[args.shape])
            os.replace(path + ".tmp", path)
        elif ftype != "F16" and not os.path.exists(path):
            quantize_with_llamacpp(f16, path + ".tmp", ftype)
            os.replace(path + ".tmp", path)
        per_tok = bytes_per_token(path)
        if not args.keep_page_cache:
            print(f"# {os.path.basename(path)}: {100 * reread_into_huge_pages(path):.0f}% in 2 MiB pages",
                  flush=True)
        for threads in thread_counts:
            n_ctx = max(args.pp, TG_PROMPT) + args.tg + 1
            runtimes = dict(qinfer_runtime(path, threads, n_ctx, b) for b in args.backends.split(","))
            if not args.no_llamacpp:
                runtimes.update([llamacpp_runtime(path, threads, n_ctx)])
            for label, r in time_runtimes(runtimes, args.pp, args.tg, args.reps).items():
                frac = 100 * per_tok * r["tg"] / (bw * 1e9)
                print(f"{ftype:8s} {threads:3d} {label:>13s} {r['pp']:9.1f} {r['tg']:8.2f} {frac:6.1f}%",
                      flush=True)
            del runtimes

if __name__ == "__main__":
    main()
