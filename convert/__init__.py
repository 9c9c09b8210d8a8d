"""qinfer.convert: Mistral raw and Hugging Face checkpoints to GGUF.

Installed as the subpackage `qinfer.convert` (setup.py package_dir). The
public API also promises `qinfer.convert(src, out, type=...)`; once this
subpackage is imported Python binds the name `qinfer.convert` to it, so the
module itself is callable and forwards to `qinfer.convert.api.convert`.
"""
import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from .api import convert

        return convert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
