"""`qinfer demo`: the whole pipeline on the tiny Mistral bundled with qinfer.

The bundled model (qinfer/data/demo-mistral.tar, trained by
tools/train_demo_model.py) is a raw Mistral tarball like the ones Mistral
publishes: it is converted to GGUF in a cache folder (once per model and
file type), loaded, and asked a question.
"""
import hashlib
import json
import os
import sys
import time
from importlib import resources

NAME = "demo"
HELP = "convert the bundled tiny Mistral to GGUF, load it and answer a question"

DEMO_TARBALL = "demo-mistral.tar"
DEMO_PROMPT = "Hello!"


def add_arguments(p):
    from .run import add_model_arguments, add_sampling_arguments

    p.add_argument("-p", "--prompt", default=DEMO_PROMPT, help=f"question (default: {DEMO_PROMPT!r})")
    p.add_argument("--type", default="Q4_K_M", help="GGUF file type to convert to (default Q4_K_M)")
    p.add_argument("--cache-dir", default=None,
                   help="where the converted model is kept (default: $QINFER_CACHE or ~/.cache/qinfer)")
    p.add_argument("--force", action="store_true", help="convert again even if a converted file exists")
    add_sampling_arguments(p, max_tokens=64, temp=0.0, seed=0)
    add_model_arguments(p)


def cache_dir(path=None):
    """The folder for converted models: `path`, $QINFER_CACHE, $XDG_CACHE_HOME/qinfer or ~/.cache/qinfer."""
    if path:
        return path
    if os.environ.get("QINFER_CACHE"):
        return os.environ["QINFER_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "qinfer")


def bundled(name):
    """Path of a file in qinfer/data (installed as package data)."""
    return str(resources.files("qinfer").joinpath("data", name))


def model_card():
    """Training facts written next to the tarball by tools/train_demo_model.py."""
    try:
        with open(bundled(os.path.splitext(DEMO_TARBALL)[0] + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def demo_gguf(cache=None, type="Q4_K_M", force=False):
    """Convert the bundled tarball (if not done yet) -> (gguf path, seconds spent converting or None)."""
    from ..errors import QinferError

    tar = bundled(DEMO_TARBALL)
    if not os.path.isfile(tar):
        raise QinferError(f"{tar}: the bundled demo model is missing from this installation")
    with open(tar, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    folder = cache_dir(cache)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise QinferError(f"{folder}: cannot create the cache folder ({exc.strerror})") from None
    out = os.path.join(folder, f"demo-mistral-{digest}-{type}.gguf")
    if os.path.exists(out) and not force:
        return out, None
    from .. import convert

    t0 = time.perf_counter()
    convert(tar, out, type=type, force=True)
    return out, time.perf_counter() - t0


def _mb(path):
    return f"{os.path.getsize(path) / 1e6:.1f} MB"


def run(args):
    from .. import load
    from ..generation import GenerationStats
    from .run import format_stats, sampling_kwargs

    card = model_card()
    about = f"{card['parameters'] / 1e6:.1f} M parameters, " if "parameters" in card else ""
    print(f"qinfer demo: a tiny Mistral-architecture model bundled with qinfer "
          f"({about}trained by the project on Python's documentation)")
    tar = bundled(DEMO_TARBALL)
    print(f"  tarball  {tar} ({_mb(tar)}: params.json, consolidated.safetensors, tokenizer.model)")
    path, seconds = demo_gguf(args.cache_dir, args.type, args.force)
    how = "already converted" if seconds is None else f"converted in {seconds:.2f} s"
    print(f"  {args.type:<8} {path} ({_mb(path)}, {how})")
    t0 = time.perf_counter()
    model = load(path, n_ctx=args.ctx, n_threads=args.threads)
    print(f"  load     {time.perf_counter() - t0:.2f} s, backend {model.backend.name}, "
          f"{model.n_threads} threads")
    print(f"  question {args.prompt}")
    sys.stdout.write("  answer   ")
    sys.stdout.flush()
    stats = GenerationStats()
    messages = [{"role": "user", "content": args.prompt}]
    for chunk in model.chat(messages, stream=True, stats=stats, **sampling_kwargs(args)):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
    print()
    print(f"  speed    {format_stats(stats)}")
    return 0
