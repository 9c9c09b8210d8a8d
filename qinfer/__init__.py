"""qinfer: Mistral/Mixtral to GGUF (Q2_K..Q8_0), and fast CPU inference.

    import qinfer
    m = qinfer.load("model.gguf")
    qinfer.convert("mistral-7B-v0.3.tar", "model.gguf", type="Q4_K_M")
"""
import importlib

from .errors import FormatError, QinferError, UnsupportedError

__version__ = "0.1.0"

# Public entry points, imported on first use so `import qinfer` stays cheap
# (no numba, no model code) for apps and for the CLI's start-up.
_LAZY = {
    "load": ("qinfer.model", "load"),
    "Model": ("qinfer.model", "Model"),
    "quantize": ("qinfer.convert.api", "quantize"),
}

__all__ = ["QinferError", "FormatError", "UnsupportedError", "__version__", "convert", *_LAZY]


def __getattr__(name):
    if name == "convert":
        # The subpackage is callable (convert/__init__.py): qinfer.convert(src, out, ...)
        # works whether or not something imported qinfer.convert.* first.
        return importlib.import_module("qinfer.convert")
    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qinfer' has no attribute {name!r}")
