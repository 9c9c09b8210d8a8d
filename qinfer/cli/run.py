"""`qinfer run`: continue a prompt, printing the text as it is generated."""
import sys

NAME = "run"
HELP = "generate a continuation of a prompt with a GGUF model"


def add_sampling_arguments(p, max_tokens=128, temp=0.8, seed=None):
    """Options shared by run, chat and demo (defaults: qinfer.generation's)."""
    p.add_argument("-n", "--max-tokens", type=int, default=max_tokens, metavar="N",
                   help=f"tokens to generate at most (default {max_tokens})")
    p.add_argument("--temp", type=float, default=temp, help=f"temperature; 0 = greedy (default {temp})")
    p.add_argument("--top-k", type=int, default=40, help="keep the k most likely tokens; 0 = off (default 40)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus probability mass; 1 = off (default 0.95)")
    p.add_argument("--min-p", type=float, default=0.05,
                   help="drop tokens below this fraction of the best one's probability (default 0.05)")
    p.add_argument("--repeat-penalty", type=float, default=1.1,
                   help="penalty for tokens among the last 64; 1 = off (default 1.1)")
    p.add_argument("--seed", type=int, default=seed,
                   help="random seed (default: %s)" % ("a random one" if seed is None else seed))


def add_model_arguments(p):
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--ctx", type=int, default=4096, help="context length in tokens (default 4096)")


def sampling_kwargs(args):
    return dict(max_tokens=args.max_tokens, temperature=args.temp, top_k=args.top_k,
                top_p=args.top_p, min_p=args.min_p, repeat_penalty=args.repeat_penalty,
                seed=args.seed)


def add_arguments(p):
    p.add_argument("model", help="GGUF file")
    p.add_argument("-p", "--prompt", required=True, help="text to continue")
    add_sampling_arguments(p)
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop when this text appears (repeatable; default: none)")
    add_model_arguments(p)


def format_stats(stats, load_seconds=None):
    parts = []
    if load_seconds is not None:
        parts.append(f"load {load_seconds:.2f} s")
    cached = f", {stats.cached_tokens} cached" if stats.cached_tokens else ""
    parts.append(f"prompt {stats.prompt_tokens} tokens{cached} in {stats.prompt_seconds:.2f} s "
                 f"({stats.prompt_tokens_per_second:.1f} tok/s)")
    parts.append(f"generated {stats.completion_tokens} tokens in {stats.generation_seconds:.2f} s "
                 f"({stats.generation_tokens_per_second:.1f} tok/s)")
    parts.append(f"stopped: {stats.finish_reason}" + (" (context full)" if stats.context_full else ""))
    return "; ".join(parts)


def run(args):
    import time

    from .. import load
    from ..generation import GenerationStats

    t0 = time.perf_counter()
    model = load(args.model, n_ctx=args.ctx, n_threads=args.threads)
    load_seconds = time.perf_counter() - t0
    stats = GenerationStats()
    for text in model.generate(args.prompt, stop=args.stop, stats=stats, **sampling_kwargs(args)):
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    print(format_stats(stats, load_seconds), file=sys.stderr)
    return 0
