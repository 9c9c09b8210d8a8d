"""Build script: the native core is optional.

`pip install .` compiles csrc/ into `qinfer._native` with cffi (out-of-line API
mode). When that fails (no compiler, CC=false, exotic platform) the install
still succeeds and qinfer runs on its Numba backend; `qinfer info --system`
then reports why the native backend is missing.
"""
import os
import sys

from setuptools import setup, find_packages
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed native build into a warning."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure is non-fatal
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)

    @staticmethod
    def _warn(exc):
        sys.stderr.write(
            "\nqinfer: the native C core could not be built (%s: %s).\n"
            "qinfer will use its Numba backend instead.\n\n" % (type(exc).__name__, exc))


packages = find_packages(include=["qinfer", "qinfer.*"])
packages += ["qinfer.convert"] + ["qinfer.convert." + p for p in find_packages("convert")]

kwargs = {}
if os.environ.get("QINFER_NO_NATIVE", "") not in ("1", "true", "yes"):
    kwargs["cffi_modules"] = ["csrc/build_native.py:ffibuilder"]

setup(
    packages=packages,
    package_dir={"qinfer": "qinfer", "qinfer.convert": "convert"},
    package_data={"qinfer": ["data/*"]},
    cmdclass={"build_ext": OptionalBuildExt},
    **kwargs,
)
