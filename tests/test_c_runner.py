"""The C test runner (csrc/tests): every SIMD path of the native core against its scalar path.

csrc/tests/build.sh links csrc/tests/runner.c with all of csrc/*.c (no Python
involved) and discovers the quantize/dequantize functions from csrc/api/*.h;
the runner compares SIMD and scalar results (same bytes for quantizers and
dequantizers, stated tolerances for matmul; details in runner.c). It runs
natively (AVX2 here) and, cross-compiled with aarch64-linux-gnu-gcc -static,
under qemu-aarch64-static, which emulates a CPU with NEON and dotprod, so both
NEON kernels are exercised on an x86 machine.

Without the cross tools the arm64 half is skipped, unless QINFER_REQUIRE_QEMU
is set (CI sets it), in which case missing tools fail the test.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "csrc" / "tests" / "build.sh"


def _build_and_run(tmp_path, cc, launcher=()):
    out = tmp_path / cc.replace("/", "_")
    build = subprocess.run(["sh", str(BUILD), str(out), cc], capture_output=True, text=True,
                           timeout=600)
    assert build.returncode == 0, f"build with {cc} failed:\n{build.stderr}"
    run = subprocess.run([*launcher, str(out / "runner")], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, f"runner failed:\n{run.stdout}\n{run.stderr}"
    assert "all passed" in run.stdout
    return run.stdout


def _have(*tools):
    return all(shutil.which(t) for t in tools)


@pytest.mark.skipif(not _have("gcc"), reason="no C compiler")
def test_runner_native(tmp_path):
    out = _build_and_run(tmp_path, "gcc")
    if "best SIMD level avx2" in out:
        assert "avx2: " in out and "functions checked against scalar" in out


def test_runner_arm64_under_qemu(tmp_path):
    tools = ("aarch64-linux-gnu-gcc", "qemu-aarch64-static")
    if not _have(*tools):
        if os.environ.get("QINFER_REQUIRE_QEMU"):
            pytest.fail(f"QINFER_REQUIRE_QEMU is set but {' or '.join(tools)} is missing")
        pytest.skip("aarch64 cross compiler or qemu-aarch64-static not installed")
    out = _build_and_run(tmp_path, "aarch64-linux-gnu-gcc", ["qemu-aarch64-static"])
    # qemu's default CPU has dotprod: both NEON kernel sets must have been compared.
    assert "neon+dotprod: " in out and "\nneon: " in out
