"""llama.cpp's own converter (convert_hf_to_gguf.py) as a test oracle.

It is not in the llama-cpp-python wheel, only in its source distribution, so
the script, its `conversion` package and the matching gguf-py are taken from
the sdist of the installed llama-cpp-python version (from PyPI, checked against
the index's sha256, cached in ~/.cache/qinfer-tests) and run in a subprocess with that gguf-py first on the
path. QINFER_LLAMACPP_SRC may point at an unpacked llama.cpp tree instead.
"""
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

WANTED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def _sdist_url(version):
    """The sdist's URL and sha256 from PyPI's simple index (what pip itself reads)."""
    import re
    import urllib.request
    page = urllib.request.urlopen("https://pypi.org/simple/llama-cpp-python/", timeout=60).read().decode()
    m = re.search(r'href="([^"]*/llama_cpp_python-%s\.tar\.gz)#sha256=([0-9a-f]{64})"' % re.escape(version), page)
    if not m:
        raise OSError(f"no sdist of llama-cpp-python {version} on PyPI")
    return m.group(1), m.group(2)


def _fetch(version, root):
    import hashlib
    import urllib.request
    url, sha = _sdist_url(version)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sdist.tar.gz"
        h = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=120) as r, open(path, "wb") as f:
            while chunk := r.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != sha:
            raise OSError(f"{url}: sha256 mismatch")
        part = root.with_name(root.name + ".part")
        with tarfile.open(path) as tf:
            members = []
            for m in tf.getmembers():
                rel = m.name.split("/vendor/llama.cpp/", 1)
                if len(rel) == 2 and rel[1].startswith(WANTED) and (m.isfile() or m.isdir()):
                    m.name = rel[1]
                    members.append(m)
            tf.extractall(part, members=members, filter="data")
        part.rename(root)


def llamacpp_tree():
    """Path of a llama.cpp source tree holding convert_hf_to_gguf.py; skips (or,
    with QINFER_REQUIRE_LLAMACPP_SRC set, fails) when it cannot be obtained."""
    import fcntl

    import llama_cpp
    if os.environ.get("QINFER_LLAMACPP_SRC"):
        return Path(os.environ["QINFER_LLAMACPP_SRC"])
    root = Path.home() / ".cache" / "qinfer-tests" / f"llama.cpp-{llama_cpp.__version__}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # one download for all test workers
        if not (root / "convert_hf_to_gguf.py").exists():
            try:
                _fetch(llama_cpp.__version__, root)
            except OSError as exc:
                msg = f"cannot fetch llama-cpp-python {llama_cpp.__version__}'s sources: {exc}"
                if os.environ.get("QINFER_REQUIRE_LLAMACPP_SRC"):
                    pytest.fail(msg)
                pytest.skip(msg)
    return root


def convert_with_llamacpp(src, out, mistral_format=False):
    """Run llama.cpp's converter on an HF folder (or a Mistral folder) to an F32 GGUF."""
    tree = llamacpp_tree()
    env = dict(os.environ, PYTHONPATH=str(tree / "gguf-py"), NO_LOCAL_GGUF="")
    cmd = [sys.executable, str(tree / "convert_hf_to_gguf.py"), str(src), "--outtype", "f32",
           "--outfile", str(out)]
    if mistral_format:
        cmd.append("--mistral-format")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return out
