"""`qinfer bench MODEL`: prompt processing (pp) and generation (tg) speed, like llama-bench.

pp: one forward pass over a prompt of -p tokens from an empty cache.
tg: -n tokens evaluated one at a time after a short prompt (each one a full
forward pass with a growing cache, as in generation; sampling is excluded).
Tokens are random ids (the speed does not depend on their values). The best
of --reps runs is reported after one untimed warm-up (JIT compilation, page
faults on the memory-mapped weights).
"""
import os
import time

import numpy as np

NAME = "bench"
HELP = "measure prompt (pp) and generation (tg) tokens/s"


def add_arguments(p):
    p.add_argument("model", help="GGUF file")
    p.add_argument("-p", "--prompt-tokens", type=int, default=256, help="prompt length for pp (default 256)")
    p.add_argument("-n", "--gen-tokens", type=int, default=64, help="tokens for tg (default 64)")
    p.add_argument("-t", "--threads", type=int, action="append",
                   help="thread count (repeatable; default: all cores)")
    p.add_argument("--reps", type=int, default=3, help="runs per test, best kept (default 3)")
    p.add_argument("--backend", default="auto", help="native, numba, numpy or auto (default)")


def bench_pp(model, n, reps, rng):
    best = float("inf")
    for _ in range(reps + 1):  # the first run warms up
        ids = rng.integers(0, model.n_vocab, n)
        model.reset()
        t = time.perf_counter()
        model.eval(ids, last_only=True)
        best = min(best, time.perf_counter() - t)
    return n / best


def bench_tg(model, n, reps, rng):
    best = float("inf")
    for _ in range(reps + 1):
        model.reset()
        model.eval(rng.integers(0, model.n_vocab, 1))
        t = time.perf_counter()
        for tok in rng.integers(0, model.n_vocab, n):
            model.eval([int(tok)], last_only=True)
        best = min(best, time.perf_counter() - t)
    return n / best


def run(args):
    from .. import load
    from ..errors import QinferError

    if args.prompt_tokens < 1 or args.gen_tokens < 1 or args.reps < 1:
        raise QinferError("--prompt-tokens, --gen-tokens and --reps must be positive")
    rng = np.random.default_rng(0)
    size = os.path.getsize(args.model) if os.path.exists(args.model) else 0
    print(f"{'model':30s} {'size':>10s} {'backend':>8s} {'threads':>7s} {'test':>8s} {'t/s':>10s}")
    for threads in args.threads or [os.cpu_count() or 1]:
        model = load(args.model, n_ctx=args.prompt_tokens + args.gen_tokens + 1, n_threads=threads,
                     backend=args.backend)
        name = os.path.basename(args.model)[:30]
        for test, fn, n in (("pp", bench_pp, args.prompt_tokens), ("tg", bench_tg, args.gen_tokens)):
            tps = fn(model, n, args.reps, rng)
            print(f"{name:30s} {size / 2**30:8.2f}GiB {model.backend.name:>8s} {threads:7d} "
                  f"{test}{n:<6d} {tps:10.2f}", flush=True)
    return 0
