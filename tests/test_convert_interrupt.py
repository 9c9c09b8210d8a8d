"""`qinfer convert` when the output cannot be finished: a full disk (or a file-size
limit) and Ctrl-C each leave neither the output nor the temporary file behind."""
import os
import resource
import signal
import subprocess
import sys
import time

from cli import _NEUTRAL, clean_env
from demo_model import TAR


def _start(out, env=None, preexec_fn=None):
    return subprocess.Popen([sys.executable, "-m", "qinfer", "convert", str(TAR), "-o", str(out),
                             "--type", "Q4_K_M", "-q"], cwd=_NEUTRAL, env=env or clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec_fn)


def _leftovers(folder):
    return [p.name for p in folder.iterdir()]


def test_a_full_disk_gives_one_line_and_no_file(tmp_path):
    def limit_file_size():
        # writes past 1 MiB fail with EFBIG, the way a full disk fails them with ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    out = tmp_path / "out.gguf"
    p = _start(out, preexec_fn=limit_file_size)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(out) in err and "cannot write" in err, err
    assert _leftovers(tmp_path) == []


def test_ctrl_c_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out.gguf"
    # the numpy reference quantizers make the conversion take many seconds
    # test runners (pytest-xdist workers) may ignore SIGINT, and a Python started with
    # SIGINT ignored keeps ignoring it: give the command a terminal's default instead
    p = _start(out, env=clean_env(QINFER_BACKEND="numpy"),
               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 600

    def written():
        parts = [q for q in tmp_path.iterdir() if q.name.endswith(".gguf.part")]
        return parts[0].stat().st_size if parts else 0

    # interrupt once tensor data is being written (the header and vocabulary take ~100 KB;
    # the whole file ~2.9 MB), whatever the machine's load
    while written() < 400_000:
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    assert _leftovers(tmp_path) == []
