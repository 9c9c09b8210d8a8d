"""`qinfer chat` with its input from a pipe: the same commands as in a
terminal, replies and command messages on stdout. (The terminal session
itself, with Ctrl-C and the demo model: test_cli_chat.py.)"""
import json

from cli import run_qinfer

PROMPT = ">>> "


def test_piped_conversation_with_a_model_file(tmp_path):
    """Without a terminal (input from a pipe) the same commands work and
    only the replies and command messages are printed."""
    import qinfer
    from qinfer.cli.demo import DEMO_TARBALL, bundled

    gguf = tmp_path / "demo-F16.gguf"
    qinfer.convert(bundled(DEMO_TARBALL), str(gguf), type="F16")
    saved, bad = tmp_path / "conv.json", tmp_path / "bad.json"
    bad.write_text('{"messages": [{"role": "robot", "content": 1}]}')
    script = "\n".join(["/system You answer questions about Python.", "What does the json module do?",
                        f"/save {saved}", "/reset", f"/load {bad}", f"/load {saved}", "/quit", ""])
    res = run_qinfer("chat", gguf, "--temp", "0", "-n", "30", input=script, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "[system prompt set; new conversation]"
    reply = lines[1]
    assert reply.strip() and not reply.startswith(("[", PROMPT))
    assert lines[2:] == [f"[saved 2 messages to {saved}]", "[new conversation]",
                         f"{bad}: not a saved conversation (expected {{'system': ..., 'messages': "
                         "[{'role', 'content'}, ...]})", f"[loaded 2 messages from {saved}]"]
    data = json.loads(saved.read_text())
    assert data["system"] == "You answer questions about Python."
    assert data["messages"] == [{"role": "user", "content": "What does the json module do?"},
                                {"role": "assistant", "content": reply}]
