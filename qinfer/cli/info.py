"""`qinfer info`: what a GGUF file holds, or (--system) what this machine offers."""
NAME = "info"
HELP = "show a GGUF file's metadata, tensor types and memory needs; --system for CPU/backends"


def add_arguments(p):
    p.add_argument("model", nargs="?", help="GGUF file")
    p.add_argument("--system", action="store_true", help="CPU features and compute backends")
    p.add_argument("--ctx", type=int, default=4096, help="context length for the RAM estimate")


def run(args):
    from ..errors import QinferError

    if args.system:
        from ..system import report

        print(report())
        return 0
    if not args.model:
        raise QinferError("give a GGUF file, or --system")
    from ..gguf_info import describe  # provided with the runtime's GGUF reader

    print(describe(args.model, n_ctx=args.ctx))
    return 0
