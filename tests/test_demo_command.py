"""`qinfer demo`: the bundled tarball converted in a cache folder, loaded,
and asked a question, as a user runs it."""
from cli import run_qinfer


def test_demo_command_runs_in_a_fresh_cache(tmp_path):
    cache = tmp_path / "cache"
    cmd = ["demo", "--cache-dir", cache, "-n", "24"]          # the default type, Q4_K_M
    first = run_qinfer(*cmd)
    assert first.returncode == 0, first.stderr
    ggufs = list(cache.glob("demo-mistral-*-Q4_K_M.gguf"))
    assert len(ggufs) == 1 and ggufs[0].stat().st_size > 1e6
    assert "converted in" in first.stdout
    answer = first.stdout.split("  answer   ", 1)[1].split("\n", 1)[0]
    assert answer.strip(), first.stdout
    assert "tok/s" in first.stdout
    again = run_qinfer(*cmd)
    assert again.returncode == 0 and "already converted" in again.stdout
    assert again.stdout.split("  answer   ", 1)[1].split("\n", 1)[0] == answer   # seed 0 by default


def test_demo_refuses_an_unwritable_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = run_qinfer("demo", "--cache-dir", blocker / "sub", timeout=120)
    assert res.returncode == 1
    assert res.stderr.startswith("qinfer demo: error:") and "cache folder" in res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1
