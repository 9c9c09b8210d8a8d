"""Run the `qinfer` command as a user would, in a subprocess.

`python -m qinfer` puts the current directory first on sys.path; run from the
repository root that would import the bare source tree (without the compiled
native module) instead of the installed package. So the command runs from a
neutral directory unless the caller names one.
"""
import os
import subprocess
import sys
import tempfile

_NEUTRAL = tempfile.mkdtemp(prefix="qinfer-cli-")


def run_qinfer(*args, env=None, cwd=None, input=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "qinfer", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd or _NEUTRAL, input=input, timeout=timeout)


def clean_env(**overrides):
    """The current environment without qinfer's backend overrides, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if k not in ("QINFER_BACKEND", "QINFER_SIMD")}
    env.update(overrides)
    return env
