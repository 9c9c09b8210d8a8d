"""Matmul rows shared out by an atomic counter between the calling thread and
persistent worker threads (the Numba backend's matmul threading).

Numba's prange runs on OpenMP, whose parallel region ends in a barrier: the
caller waits until every worker has been scheduled, and on a machine whose
cores are busy that costs a scheduler time slice per region (benches/README.md,
"Numba backend": ~1 ms per region, ~110 regions per generated token). Here the
kernels are plain nogil functions that claim chunks of rows from a counter
(`claim`) until none are left; the caller runs the same loop, so if a worker is
slow to wake the caller simply takes every chunk and only waits for chunks a
worker has already started. Each call has its own counter, so a worker that
wakes after its call has finished finds nothing left to claim.

Kernels follow this pattern (state: int64[2] = next chunk, rows done):

    while True:
        r0, r1 = claim(state, chunk_rows, n_rows)
        if r0 >= r1:
            break
        ...rows r0..r1-1...
        finish(state, r1 - r0)
"""
import os
import queue
import threading
import time

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

CHUNKS_PER_THREAD = 8    # chunks per participating thread: small enough to balance a late or slow thread
SPIN = 1 << 14           # polls of the done counter before the caller yields its core
WAKE_SPINS = 1 << 14     # signal polls (~0.3 ms) a worker makes after a job before blocking
MAX_THREADS = os.cpu_count() or 1   # read once: ~50 us per call in a container


@intrinsic
def atomic_add(typingctx, arr, idx, val):
    """arr[idx] += val as one atomic read-modify-write (int64 array); the old value."""
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")
    return sig, codegen


@njit(cache=True, inline="always")
def claim(state, chunk_rows, n_rows):
    """Rows [r0, r1) of the next unclaimed chunk (r0 >= r1 when none is left)."""
    r0 = atomic_add(state, 0, 1) * chunk_rows
    return r0, min(n_rows, r0 + chunk_rows)


@njit(cache=True, inline="always")
def finish(state, n):
    """n rows written (published to the caller with the atomic's ordering)."""
    atomic_add(state, 1, n)


@njit(cache=True, nogil=True)
def _rows_done(state, n_rows, spins):
    for _ in range(spins):
        if atomic_add(state, 1, 0) >= n_rows:
            return True
    return False


@njit(cache=True)
def _bump(signal):
    atomic_add(signal, 0, 1)


@njit(cache=True, nogil=True)
def _await_signal(signal, seen, spins):
    """Poll signal[0] (without the GIL) until it differs from seen, at most
    `spins` times; the new value or seen."""
    for _ in range(spins):
        v = atomic_add(signal, 0, 0)
        if v != seen:
            return v
    return seen


class _Worker:
    """A thread running the kernels put in its queue. After each job it polls
    a signal counter for WAKE_SPINS rounds without the GIL before blocking on
    the queue: a blocked thread woke too late on a busy machine (after the
    caller had claimed every chunk of a 2 ms matvec), a polling one starts at
    once. The queue carries the jobs; the signal is only a hint."""

    def __init__(self):
        self.jobs = queue.SimpleQueue()
        self.signal = np.zeros(1, dtype=np.int64)
        threading.Thread(target=self._loop, daemon=True, name="qinfer-numba-rows").start()

    def submit(self, job):
        self.jobs.put(job)
        _bump(self.signal)

    def _loop(self):
        seen = 0
        while True:
            seen = _await_signal(self.signal, seen, WAKE_SPINS)
            kernel, args = self.jobs.get()
            kernel(*args)


_workers = []
_workers_lock = threading.Lock()


def _get_workers(n):
    with _workers_lock:
        while len(_workers) < n:
            _workers.append(_Worker())
        return _workers[:n]


def run(kernel, args, n_rows, n_threads):
    """kernel(*args, state, chunk_rows) on the calling thread and n_threads - 1
    workers until all n_rows rows are done (kernel: nogil, module doc)."""
    n_threads = max(1, min(int(n_threads or 1), MAX_THREADS, n_rows))
    chunk_rows = max(1, -(-n_rows // (CHUNKS_PER_THREAD * n_threads)))
    state = np.zeros(2, dtype=np.int64)
    for worker in _get_workers(n_threads - 1):
        worker.submit((kernel, args + (state, chunk_rows)))
    kernel(*args, state, chunk_rows)
    while not _rows_done(state, n_rows, SPIN):
        time.sleep(0)   # a worker is finishing a chunk: let it have the core
