"""`qinfer perplexity MODEL -f TEXT [--kl-base BASE]`: perplexity of a text, as llama.cpp measures it.

The text's tokens are cut into chunks of --ctx tokens (the first token of each
chunk replaced by BOS, as llama-perplexity does); each chunk is evaluated
from an empty cache and the negative log-likelihood of the second half of its
positions is averaged (every scored token then has at least ctx/2 tokens of
context). With --kl-base, a second model (e.g. the F16 file the quantized one
came from) runs on the same chunks and the mean KL divergence of the model's
next-token distribution from the base's, the share of positions where both
pick the same top token, and both perplexities are reported.
"""
import math
import sys
import time

import numpy as np

NAME = "perplexity"
HELP = "perplexity of a text file (and KL divergence from a base model with --kl-base)"


def add_arguments(p):
    p.add_argument("model", help="GGUF file")
    p.add_argument("-f", "--file", required=True, help="UTF-8 text file")
    p.add_argument("--kl-base", metavar="BASE", help="GGUF file to compare against (e.g. the F16 model)")
    p.add_argument("--ctx", type=int, default=512, help="tokens per chunk (default 512)")
    p.add_argument("--chunks", type=int, default=0, help="score at most this many chunks (default: all)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")


def _log_softmax(logits):
    x = logits.astype(np.float64)
    return x - np.logaddexp.reduce(x, axis=1, keepdims=True)


def chunk_ids(ids, n_ctx, bos_id=None, max_chunks=0):
    """Chunks of n_ctx tokens; the first of each becomes BOS when there is one."""
    n = len(ids) // n_ctx
    if max_chunks:
        n = min(n, max_chunks)
    chunks = []
    for c in range(n):
        chunk = list(ids[c * n_ctx:(c + 1) * n_ctx])
        if bos_id is not None:
            chunk[0] = bos_id
        chunks.append(chunk)
    return chunks


def score(model, chunks, base=None, progress=None):
    """Per-token statistics over the second half of every chunk.
    Returns dict(nll=array, base_nll=array|None, kl=array|None, same_top=array|None)."""
    nll, base_nll, kl, same = [], [], [], []
    for i, chunk in enumerate(chunks):
        first = len(chunk) // 2
        target = np.asarray(chunk[first + 1:])
        lp = _log_softmax(model.logits(chunk)[first:-1])
        nll.append(-lp[np.arange(len(target)), target])
        if base is not None:
            bp = _log_softmax(base.logits(chunk)[first:-1])
            base_nll.append(-bp[np.arange(len(target)), target])
            kl.append((np.exp(bp) * (bp - lp)).sum(axis=1))
            same.append(bp.argmax(1) == lp.argmax(1))
        if progress:
            progress(i + 1, len(chunks), math.exp(np.concatenate(nll).mean()))
    cat = (lambda xs: np.concatenate(xs) if xs else None)
    return dict(nll=cat(nll), base_nll=cat(base_nll), kl=cat(kl), same_top=cat(same))


def _ppl(nll):
    """Perplexity and its standard error (delta method on the mean NLL)."""
    mean = nll.mean()
    err = nll.std(ddof=1) / math.sqrt(len(nll)) if len(nll) > 1 else float("nan")
    return math.exp(mean), math.exp(mean) * err


def run(args):
    from .. import load
    from ..errors import QinferError

    try:
        with open(args.file, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise QinferError(f"{args.file}: cannot read the text: {exc}") from None
    model = load(args.model, n_ctx=args.ctx, n_threads=args.threads)
    base = load(args.kl_base, n_ctx=args.ctx, n_threads=args.threads) if args.kl_base else None
    ids = model.tokenize(text, add_bos=False)
    if base is not None and base.n_vocab != model.n_vocab:
        raise QinferError(f"{args.kl_base}: vocabulary of {base.n_vocab} tokens differs from "
                          f"{args.model}'s {model.n_vocab}")
    chunks = chunk_ids(ids, args.ctx, getattr(model.tokenizer, "bos_id", None), args.chunks)
    if not chunks:
        raise QinferError(f"{args.file}: {len(ids)} tokens are fewer than one chunk of --ctx {args.ctx}")
    t0 = time.time()

    def progress(i, n, ppl):
        if sys.stderr.isatty():
            print(f"\rchunk {i}/{n}  ppl {ppl:.4f}  {time.time() - t0:.0f} s", end="", file=sys.stderr)

    res = score(model, chunks, base, progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    ppl, err = _ppl(res["nll"])
    print(f"{args.model}: perplexity {ppl:.4f} ± {err:.4f} over {len(res['nll'])} tokens "
          f"({len(chunks)} chunks of {args.ctx})")
    if base is not None:
        bppl, berr = _ppl(res["base_nll"])
        print(f"{args.kl_base}: perplexity {bppl:.4f} ± {berr:.4f}")
        print(f"mean KL divergence {res['kl'].mean():.6f} (max {res['kl'].max():.4f}); "
              f"same top token {100 * res['same_top'].mean():.2f}%; "
              f"Δppl {ppl - bppl:+.4f}")
    return 0
