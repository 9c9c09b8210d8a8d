"""The tensor types qinfer reads and writes, with ggml's ids and block sizes."""
from dataclasses import dataclass

from ..errors import UnsupportedError


@dataclass(frozen=True)
class QuantType:
    name: str          # ggml's name, e.g. "Q4_K"
    ggml_id: int       # ggml_type enum value (GGUF tensor info)
    block_size: int    # elements per block
    type_size: int     # bytes per block
    module: str        # family module under qinfer/quants (and kernels/numba)
    searched: bool     # has a scale search, i.e. "ggml" and "best" quantizers differ

    @property
    def key(self) -> str:
        """Lower-case name used in function names: qi_quantize_<key>_<quantizer>."""
        return self.name.lower()

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.type_size / self.block_size

    def row_bytes(self, n_per_row: int) -> int:
        if n_per_row % self.block_size:
            raise UnsupportedError(
                f"{self.name} needs rows that are a multiple of {self.block_size} "
                f"elements, got {n_per_row}")
        return n_per_row // self.block_size * self.type_size


_ALL = [
    QuantType("F32", 0, 1, 4, "floats", False),
    QuantType("F16", 1, 1, 2, "floats", False),
    QuantType("BF16", 30, 1, 2, "floats", False),
    QuantType("Q4_0", 2, 32, 18, "legacy", True),
    QuantType("Q4_1", 3, 32, 20, "legacy", True),
    QuantType("Q5_0", 6, 32, 22, "legacy", True),
    QuantType("Q5_1", 7, 32, 24, "legacy", True),
    QuantType("Q8_0", 8, 32, 34, "legacy", True),
    QuantType("Q2_K", 10, 256, 84, "q2_k", True),
    QuantType("Q3_K", 11, 256, 110, "q3_k", True),
    QuantType("Q4_K", 12, 256, 144, "q45_k", True),
    QuantType("Q5_K", 13, 256, 176, "q45_k", True),
    QuantType("Q6_K", 14, 256, 210, "q6_k", True),
    QuantType("Q8_K", 15, 256, 292, "q8_k", False),
]

TYPES = {t.name: t for t in _ALL}
BY_ID = {t.ggml_id: t for t in _ALL}
QUANTIZERS = ("best", "ggml")


def get_type(t) -> QuantType:
    """Accept a QuantType, a name (any case) or a ggml type id."""
    if isinstance(t, QuantType):
        return t
    if isinstance(t, int):
        if t in BY_ID:
            return BY_ID[t]
        raise UnsupportedError(f"unsupported ggml tensor type id {t}")
    name = str(t).upper()
    if name in TYPES:
        return TYPES[name]
    raise UnsupportedError(
        f"unsupported tensor type {t!r}; supported: {', '.join(TYPES)}")
