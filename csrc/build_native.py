"""cffi builder for the native core `qinfer._native`.

Every `csrc/*.c` file is compiled into one shared object. The C declarations
that Python may call live in `csrc/api/*.h` (plain declarations only, no
macros, so cffi can parse them); their concatenation is the cdef.

Run directly (`python csrc/build_native.py`) to rebuild the module in place
during development; `pip install .` uses it through setup.py's cffi_modules.
"""
import glob
import os
import shutil
import sys

import cffi

HERE = os.path.dirname(os.path.abspath(__file__))


def _rel(path):
    # setuptools wants sources relative to the directory setup.py runs in.
    try:
        return os.path.relpath(path)
    except ValueError:  # different drive on Windows
        return path


def _compile_args():
    if sys.platform == "win32":
        return ["/O2"]
    # -ffp-contract=off: the ggml-compatible quantizers must round exactly like
    # llama.cpp's ggml-base, which is compiled without FMA contraction on x86-64.
    # SIMD kernels use explicit FMA intrinsics where they want fused operations.
    return ["-O3", "-std=gnu11", "-ffp-contract=off", "-fno-math-errno", "-pthread",
            "-Wall", "-Wno-unused-function"]


def make_builder(relative=True):
    """relative: setuptools (setup.py cffi_modules) wants sources relative to
    the directory it runs in; cffi's own compile() builds inside its tmpdir and
    needs absolute paths."""
    path = _rel if relative else os.path.abspath
    headers = sorted(glob.glob(os.path.join(HERE, "api", "*.h")))
    sources = sorted(glob.glob(os.path.join(HERE, "*.c")))
    cdef = "\n".join(open(h, encoding="utf-8").read() for h in headers)
    includes = "".join('#include "api/%s"\n' % os.path.basename(h) for h in headers)
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source(
        "qinfer._native",
        '#include "qinfer.h"\n' + includes,
        sources=[path(s) for s in sources],
        include_dirs=[path(HERE)],
        extra_compile_args=_compile_args(),
        extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
        libraries=[] if sys.platform == "win32" else ["m"],
    )
    return ffi


ffibuilder = make_builder()


def build_inplace():
    """Compile into <repo>/qinfer/ for an editable checkout."""
    root = os.path.dirname(HERE)
    tmp = os.path.join(root, "build", "native")
    os.makedirs(tmp, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        lib = make_builder(relative=False).compile(tmpdir=tmp, verbose=False)
    finally:
        os.chdir(cwd)
    dest = os.path.join(root, "qinfer", os.path.basename(lib))
    # A stale module of another ABI tag (e.g. pip's _native.abi3.so) would
    # shadow or be shadowed by the fresh one: keep only the new build.
    for old in glob.glob(os.path.join(root, "qinfer", "_native*")):
        if os.path.basename(old) != os.path.basename(dest):
            os.remove(old)
    shutil.copyfile(lib, dest + ".tmp")
    os.replace(dest + ".tmp", dest)
    print(dest)


if __name__ == "__main__":
    build_inplace()
