"""Reference backend: the numpy implementations in qinfer.quants.<family>.

Per type, module qinfer.quants.<qt.module> provides
    quantize_<key>_<quantizer>(x: f32[rows, n], imatrix: f32[n] | None) -> u8[rows, row_bytes]
    dequantize_<key>(blocks: u8[rows, row_bytes], n_per_row) -> f32[rows, n]
"""
import importlib

from ._dispatch import missing


class Backend:
    name = "numpy"

    def describe(self):
        return "numpy reference (slow, used as the oracle)"

    def _fn(self, qt, prefix):
        try:
            mod = importlib.import_module(f"qinfer.quants.{qt.module}")
        except ModuleNotFoundError as exc:
            if not exc.name or not exc.name.startswith("qinfer."):
                raise
            missing(self.name, f"{prefix} ({qt.name})")
        fn = getattr(mod, f"{prefix}", None)
        if fn is None:
            missing(self.name, f"{prefix} ({qt.name})")
        return fn

    def quantize(self, qt, quantizer, x, imatrix, n_threads=None):
        return self._fn(qt, f"quantize_{qt.key}_{quantizer}")(x, imatrix)

    def dequantize(self, qt, rows, n_per_row):
        return self._fn(qt, f"dequantize_{qt.key}")(rows, n_per_row)
