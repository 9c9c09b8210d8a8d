"""Numba implementations, one module per type family (see numba_backend)."""
