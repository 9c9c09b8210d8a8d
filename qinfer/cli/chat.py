"""`qinfer chat`: a terminal chat with a GGUF model (or the bundled demo model).

Replies stream as they are generated; Ctrl-C stops a reply (the program goes
on), Ctrl-D or /quit leaves. Earlier turns stay in the model's KV cache, so a
new message costs only its own tokens.
"""
import json
import os
import signal
import sys
import threading

NAME = "chat"
HELP = "chat with a GGUF model in the terminal (no model: the bundled demo model)"

COMMANDS = """commands:
  /system TEXT   set the system prompt (and start a new conversation)
  /reset         start a new conversation (keeps the system prompt)
  /save FILE     save the conversation as JSON
  /load FILE     load a conversation saved with /save
  /help          this list
  /quit          leave (Ctrl-D works too)
Ctrl-C stops the reply being written."""


def add_arguments(p):
    from .run import add_model_arguments, add_sampling_arguments

    p.add_argument("model", nargs="?", help="GGUF file (default: the bundled demo model)")
    p.add_argument("--system", default=None, help="system prompt")
    add_sampling_arguments(p, max_tokens=512)
    add_model_arguments(p)


class Conversation:
    def __init__(self, system=None):
        self.system = system
        self.turns = []   # user/assistant messages

    def messages(self):
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"system": self.system, "messages": self.turns}, f, indent=2, ensure_ascii=False)
            f.write("\n")

    @classmethod
    def load(cls, path):
        from ..errors import FormatError

        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise FormatError(f"{path}: cannot read ({exc.strerror})") from None
        except ValueError as exc:
            raise FormatError(f"{path}: not a saved conversation (invalid JSON: {exc})") from None
        turns = data.get("messages") if isinstance(data, dict) else None
        ok = isinstance(turns, list) and all(
            isinstance(m, dict) and m.get("role") in ("user", "assistant")
            and isinstance(m.get("content"), str) for m in turns)
        if not ok or not isinstance(data.get("system"), (str, type(None))):
            raise FormatError(f"{path}: not a saved conversation (expected "
                              "{'system': ..., 'messages': [{'role', 'content'}, ...]})")
        conv = cls(data.get("system"))
        conv.turns = [{"role": m["role"], "content": m["content"]} for m in turns]
        return conv


def _history_file():
    from .demo import cache_dir

    return os.path.join(cache_dir(), "chat_history")


def _setup_readline():
    """Line editing and a persistent input history, where readline exists."""
    try:
        import atexit
        import readline
    except ImportError:
        return
    path = _history_file()
    try:
        readline.read_history_file(path)
    except OSError:
        pass

    def save():
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            readline.set_history_length(1000)
            readline.write_history_file(path)
        except OSError:
            pass

    atexit.register(save)


def _reply(model, conv, sampling):
    """Stream one reply to stdout; Ctrl-C (SIGINT) cancels it within a token.
    Returns the reply text (partial if stopped)."""
    from ..generation import GenerationStats

    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    stats = GenerationStats()
    parts = []
    try:
        for chunk in model.chat(conv.messages(), stream=True, cancel=cancel, stats=stats, **sampling):
            text = chunk["choices"][0]["delta"].get("content")
            if text:
                parts.append(text)
                sys.stdout.write(text)
                sys.stdout.flush()
    finally:
        signal.signal(signal.SIGINT, previous)
    sys.stdout.write("\n")
    if stats.finish_reason == "cancelled":
        print("[stopped]", file=sys.stderr)
    elif stats.context_full:
        print("[context full: /reset to start again]", file=sys.stderr)
    return "".join(parts)


def _command(line, conv):
    """Handle a /command; returns the conversation to continue with, or None to quit."""
    from ..errors import QinferError

    name, _, arg = line.partition(" ")
    arg = arg.strip()
    if name in ("/quit", "/exit"):
        return None
    if name == "/help":
        print(COMMANDS)
    elif name == "/reset":
        conv = Conversation(conv.system)
        print("[new conversation]")
    elif name == "/system":
        conv = Conversation(arg or None)
        print("[system prompt set; new conversation]" if arg else "[system prompt cleared]")
    elif name in ("/save", "/load") and not arg:
        print(f"usage: {name} FILE")
    elif name == "/save":
        try:
            conv.save(arg)
            print(f"[saved {len(conv.turns)} messages to {arg}]")
        except OSError as exc:
            print(f"cannot write {arg}: {exc.strerror}")
    elif name == "/load":
        try:
            conv = Conversation.load(arg)
            print(f"[loaded {len(conv.turns)} messages from {arg}]")
        except QinferError as exc:
            print(exc)
    else:
        print(f"unknown command {name}; /help lists the commands")
    return conv


def run(args):
    from .. import load
    from ..errors import QinferError
    from .run import sampling_kwargs

    path = args.model
    if path is None:
        from .demo import demo_gguf

        path, _ = demo_gguf()
        print(f"No model given: using the bundled demo model ({path}), a tiny model that knows "
              "a little about Python's standard library.")
    model = load(path, n_ctx=args.ctx, n_threads=args.threads)
    sampling = sampling_kwargs(args)
    conv = Conversation(args.system)
    interactive = sys.stdin.isatty()
    if interactive:
        _setup_readline()
        print("Type a message; /help for commands, Ctrl-C stops a reply, Ctrl-D quits.")
    while True:
        try:
            line = input(">>> " if interactive else "")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print("\n(/quit or Ctrl-D to leave)")
            continue
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            conv = _command(line, conv)
            if conv is None:
                return 0
            continue
        conv.turns.append({"role": "user", "content": line})
        try:
            reply = _reply(model, conv, sampling)
        except QinferError as exc:
            reply = ""
            print(f"error: {exc}", file=sys.stderr)
        if reply:
            conv.turns.append({"role": "assistant", "content": reply})
        else:
            conv.turns.pop()   # keep user/assistant turns alternating, as chat templates require
