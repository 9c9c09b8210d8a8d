"""The package installs without a compiler, and its CLI basics work."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli import run_qinfer
from qinfer import kernels

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None):
    return run_qinfer(*args, env=env, timeout=300)


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "info" in r.stdout


def test_info_system_names_backend_and_features():
    r = run_cli("info", "--system")
    assert r.returncode == 0, r.stderr
    st = kernels.status()
    assert f"backend in use: {st['active']}" in r.stdout
    assert "CPU features:" in r.stdout


def test_forced_backend_is_reported():
    env = dict(os.environ, QINFER_BACKEND="numpy")
    r = run_cli("info", "--system", env=env)
    assert r.returncode == 0
    assert "backend in use: numpy (forced by QINFER_BACKEND=numpy)" in r.stdout


def test_unknown_backend_is_one_clear_line():
    env = dict(os.environ, QINFER_BACKEND="cuda")
    r = run_cli("info", "--system", env=env)
    assert "unknown backend 'cuda'" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(not (ROOT / "setup.py").exists(), reason="needs the source tree")
def test_install_without_compiler_falls_back_to_numba(tmp_path):
    target = tmp_path / "site"
    # Install from a clean copy: an earlier `pip install .` leaves build/ with a
    # compiled module that setuptools would reuse instead of compiling.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        "build", ".git", ".ci-venv", "*.egg-info", "_native*", "__pycache__", ".hypothesis"))
    env = dict(os.environ, CC="false", CXX="false", LDSHARED="false", PIP_NO_INPUT="1")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                        "--no-cache-dir", "--target", str(target), str(src)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert not list((target / "qinfer").glob("_native*")), "native module was built with CC=false"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        # A developer's editable install adds a finder that would resolve
        # qinfer._native from the source tree; only the scratch install counts.
        "sys.meta_path = [f for f in sys.meta_path if '__editable__' not in repr(f)]\n"
        "import numpy as np, qinfer, qinfer.quants as q, qinfer.kernels as k\n"
        "assert qinfer.__file__.startswith(sys.argv[1]), qinfer.__file__\n"
        "be = k.get_backend()\n"
        "x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(2, 32)\n"
        "y = q.dequantize(q.quantize(x, 'F16'), 'F16', x.shape)\n"
        "print(be.name, float(abs(y - x).max()))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "QINFER_BACKEND"},
                       timeout=600)
    assert r.returncode == 0, r.stderr
    name, err = r.stdout.split()
    assert name == "numba"
    assert float(err) < 2e-3
    r = subprocess.run([sys.executable, "-c", code.replace("print(be.name", "import qinfer.system as s; print(s.report());print(be.name"), str(target)],
                       capture_output=True, text=True, timeout=600)
    assert "native  unavailable" in r.stdout
