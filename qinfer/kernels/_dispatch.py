"""Shared plumbing of the backends: output allocation and row splitting."""
import numpy as np

from ..errors import UnsupportedError


def alloc_blocks(qt, x):
    return np.empty((x.shape[0], qt.row_bytes(x.shape[1])), dtype=np.uint8)


def missing(backend, what):
    raise UnsupportedError(f"{what} is not implemented by the {backend} backend")


def row_ranges(nrows, nparts):
    """Split range(nrows) into at most nparts contiguous, near-equal chunks."""
    nparts = max(1, min(nparts, nrows))
    bounds = np.linspace(0, nrows, nparts + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
