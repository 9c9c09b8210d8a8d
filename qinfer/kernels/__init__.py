"""Compute backends behind one small interface.

- native: the C core (`qinfer._native`, built by cffi at install time), with
  AVX2/FMA/F16C or NEON code chosen at run time and scalar code elsewhere;
- numba: the same operations jitted, used when the native module is missing;
- numpy: the slow, obviously-correct reference the tests trust.

`QINFER_BACKEND=native|numba|numpy` (or `backend=` arguments) forces one;
"auto" takes native, then numba.
"""
import os
import threading

from ..errors import QinferError

BACKENDS = ("native", "numba", "numpy")

_lock = threading.Lock()
_cache = {}
_failures = {}


def _load(name):
    if name == "native":
        from . import native_backend as mod
    elif name == "numba":
        from . import numba_backend as mod
    elif name == "numpy":
        from . import numpy_backend as mod
    else:
        raise QinferError(f"unknown backend {name!r}; use one of auto, {', '.join(BACKENDS)}")
    return mod.Backend()


def _try(name):
    with _lock:
        if name in _cache:
            return _cache[name]
        if name in _failures:
            return None
        try:
            be = _load(name)
        except QinferError:
            raise
        except Exception as exc:  # ImportError, missing compiler, broken numba
            _failures[name] = f"{type(exc).__name__}: {exc}"
            return None
        _cache[name] = be
        return be


def requested_backend() -> str:
    return os.environ.get("QINFER_BACKEND", "auto").strip().lower() or "auto"


def get_backend(name=None):
    """The backend to use: `name`, else $QINFER_BACKEND, else auto."""
    if name is not None and not isinstance(name, str):
        return name  # already a backend object
    name = (name or requested_backend()).lower()
    if name == "auto":
        for cand in ("native", "numba"):
            be = _try(cand)
            if be is not None:
                return be
        return _try("numpy")
    if name not in BACKENDS:
        raise QinferError(f"unknown backend {name!r}; use one of auto, {', '.join(BACKENDS)}")
    be = _try(name)
    if be is None:
        raise QinferError(f"backend {name!r} is not available: {_failures[name]}")
    return be


def status() -> dict:
    """What each backend is doing here, and which one `auto` picks and why."""
    info = {}
    for name in BACKENDS:
        be = _try(name)
        info[name] = {"available": be is not None,
                      "detail": be.describe() if be is not None else _failures.get(name)}
    req = requested_backend()
    try:
        active = get_backend().name
    except QinferError as exc:
        active = None
        info["error"] = str(exc)
    if req != "auto":
        why = f"forced by QINFER_BACKEND={req}"
    elif active == "native":
        why = "auto: the native C core is built and loads"
    elif active == "numba":
        why = f"auto: native core unavailable ({_failures.get('native')})"
    else:
        why = f"auto: native and numba unavailable ({_failures.get('native')}; {_failures.get('numba')})"
    info["active"] = active
    info["why"] = why
    return info
