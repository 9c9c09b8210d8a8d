"""The `qinfer` command. Each subcommand lives in its own module here and
provides NAME, HELP, add_arguments(parser) and run(args) -> exit code."""
import argparse
import importlib
import sys

from ..errors import QinferError

# Order shown by `qinfer --help`.
COMMANDS = ["convert", "quantize", "info", "run", "chat", "bench", "perplexity", "demo"]


def _modules():
    for name in COMMANDS:
        try:
            yield importlib.import_module(f"qinfer.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"qinfer.cli.{name}":
                raise


def build_parser():
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="qinfer",
        description="Convert Mistral/Mixtral checkpoints to GGUF and run them on the CPU.")
    parser.add_argument("--version", action="version", version=f"qinfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except QinferError as exc:
        print(f"qinfer {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"qinfer {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
