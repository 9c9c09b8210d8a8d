"""`qinfer chat` driven like a user would, in a real terminal (tmux): streamed
replies, /commands, Ctrl-C stopping a reply but not the program, Ctrl-D
leaving. The model is the bundled demo model, converted to F16."""
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")

PROMPT = ">>> "


class Terminal:
    """One tmux session on a private server, running a command."""

    def __init__(self, command, env, cwd, width=160, height=50):
        self.sock = "qinfer-test-" + uuid.uuid4().hex[:8]
        env_args = [f"{k}={v}" for k, v in env.items()]
        # from a neutral folder: `python -m` must import the installed package (tests/support/cli.py)
        subprocess.run(["tmux", "-L", self.sock, "-f", os.devnull, "new-session", "-d", "-s", "t",
                        "-x", str(width), "-y", str(height), "-c", str(cwd),
                        "env", *env_args, *command], check=True)
        self.tmux("set-option", "-t", "t", "remain-on-exit", "on")

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True).stdout

    def screen(self):
        return self.tmux("capture-pane", "-p", "-J", "-t", "t", "-S", "-2000")

    def send(self, *keys):
        self.tmux("send-keys", "-t", "t", *keys)

    def type_line(self, text):
        self.send("-l", text)
        self.send("Enter")

    def wait_for(self, predicate, timeout=120, what="the expected output"):
        end = time.time() + timeout
        while time.time() < end:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{self.screen()}")

    def prompts(self, text=None):
        return (text or self.screen()).count(PROMPT)

    def dead(self):
        return self.tmux("display-message", "-p", "-t", "t", "#{pane_dead}").strip() == "1"

    def close(self):
        self.tmux("kill-server")


@pytest.fixture(scope="module")
def demo_gguf(tmp_path_factory):
    """The bundled demo model as an F16 GGUF, converted once for the module."""
    import qinfer
    from qinfer.cli.demo import DEMO_TARBALL, bundled

    out = tmp_path_factory.mktemp("demo") / "demo-F16.gguf"
    qinfer.convert(bundled(DEMO_TARBALL), str(out), type="F16")
    return str(out)


@pytest.fixture
def chat_env(tmp_path):
    env = {"QINFER_CACHE": str(tmp_path / "cache"), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
           "PYTHONUNBUFFERED": "1", "TERM": "xterm", "HOME": str(tmp_path)}
    for key in ("PATH", "QINFER_BACKEND", "NUMBA_CACHE_DIR"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def start_chat(env, *args):
    return Terminal([sys.executable, "-m", "qinfer", "chat", *args], env, cwd=env["HOME"])


def test_chat_session(chat_env, demo_gguf, tmp_path):
    term = start_chat(chat_env, demo_gguf, "--temp", "0", "-n", "40")
    try:
        screen = term.wait_for(lambda s: PROMPT in s, what="the first prompt")
        assert "Type a message; /help for commands" in screen

        term.type_line("/help")
        term.wait_for(lambda s: "/save FILE" in s and term.prompts(s) == 2, what="/help")

        term.type_line("What does the json module do?")
        screen = term.wait_for(lambda s: term.prompts(s) == 3, what="the reply")
        reply = screen.split("What does the json module do?", 1)[1].rsplit(PROMPT, 1)[0].strip()
        assert reply and "Traceback" not in screen

        saved = tmp_path / "conv.json"
        term.type_line(f"/save {saved}")
        term.wait_for(lambda s: "[saved 2 messages" in s, what="/save")
        data = json.loads(saved.read_text())
        assert data["system"] is None
        assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
        assert data["messages"][0]["content"] == "What does the json module do?"
        assert data["messages"][1]["content"].split() == reply.split()

        term.type_line("/reset")
        term.wait_for(lambda s: "[new conversation]" in s, what="/reset")
        term.type_line(f"/load {saved}")
        term.wait_for(lambda s: "[loaded 2 messages" in s, what="/load")
        term.type_line("/load /nonexistent/file.json")
        term.wait_for(lambda s: "cannot read" in s, what="the /load error")
        term.type_line("/bogus")
        term.wait_for(lambda s: "unknown command /bogus" in s, what="the unknown-command hint")

        term.send("C-d")
        term.wait_for(lambda s: term.dead(), timeout=30, what="exit on Ctrl-D")
        assert "Traceback" not in term.screen()
    finally:
        term.close()


def test_ctrl_c_stops_the_reply_not_the_program(chat_env, demo_gguf):
    import qinfer

    # Near-uniform sampling over the whole vocabulary makes a long reply. The
    # sampled tokens are fixed by the seed: check first that this reply really
    # runs past 400 tokens, far more than are generated between its first
    # characters on screen and the Ctrl-C below.
    question = "Tell me everything."
    sampling = dict(temperature=5, top_k=0, top_p=1, min_p=0, repeat_penalty=1, seed=1)
    probe = qinfer.load(demo_gguf, n_ctx=1024).chat([{"role": "user", "content": question}],
                                                    max_tokens=400, **sampling)
    assert probe["choices"][0]["finish_reason"] == "length"
    term = start_chat(chat_env, demo_gguf, "--temp", "5", "--top-k", "0", "--top-p", "1", "--min-p", "0",
                      "--repeat-penalty", "1", "-n", "3000", "--seed", "1")
    try:
        term.wait_for(lambda s: PROMPT in s, what="the first prompt")
        term.send("C-c")   # at the prompt: a hint, not an exit
        term.wait_for(lambda s: "/quit or Ctrl-D to leave" in s, what="the Ctrl-C hint")

        term.type_line(question)
        term.wait_for(lambda s: s.rstrip().split(question, 1)[-1].strip() != "", timeout=60,
                      what="the reply to start")
        term.send("C-c")
        screen = term.wait_for(lambda s: "[stopped]" in s, timeout=30, what="[stopped]")
        assert screen.split(question, 1)[1].split("[stopped]", 1)[0].strip()   # streamed text before the stop
        term.wait_for(lambda s: term.prompts(s) >= 3, timeout=30, what="the prompt after Ctrl-C")
        assert not term.dead()

        term.type_line("/quit")
        term.wait_for(lambda s: term.dead(), timeout=30, what="exit on /quit")
        assert "Traceback" not in term.screen()
    finally:
        term.close()
