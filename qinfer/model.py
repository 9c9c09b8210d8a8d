"""qinfer.load(path) -> Model: a memory-mapped GGUF model with a KV cache.

    m = qinfer.load("mistral.gguf", n_ctx=4096)
    m.logits(m.tokenize("Hello"))      # float32 [n, n_vocab], fresh cache
    m.eval(ids)                         # append to the cache, logits of the new positions
    m.truncate(n); m.reset()            # keep a prefix of the cache / clear it
    for text in m.generate("Once upon a time", max_tokens=32): ...

A Model is used by one thread at a time: a call from a second thread while
another is running (including an unfinished streamed generation) raises
QinferError; two Models work in two threads.
"""
import inspect
import os
import threading
from contextlib import contextmanager

import numpy as np

from . import kernels
from .errors import QinferError
from .forward import Forward
from .gguf_file import GGUFFile
from .hparams import read_hparams
from .kv_cache import KVCache
from .model_weights import bind_weights

N_BATCH = 512  # positions per forward call: bounds scratch memory on long prompts


class _OwnerLock:
    """Non-blocking ownership: the holding thread may re-enter, others fail.
    Unlike threading.RLock it may be released from another thread, which is
    what happens when a streamed generator is closed by the garbage collector."""

    def __init__(self):
        self._mutex = threading.Lock()
        self._owner = None
        self._depth = 0

    def acquire(self):
        me = threading.get_ident()
        with self._mutex:
            if self._owner not in (None, me):
                return False
            self._owner, self._depth = me, self._depth + 1
            return True

    def release(self):
        with self._mutex:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None


class Model:
    def __init__(self, gguf, n_ctx=4096, n_threads=None, backend="auto", kv_type="f16"):
        self._file = gguf
        self.path = gguf.path
        self.metadata = gguf.metadata
        self.hparams = hp = read_hparams(gguf.metadata, gguf.tensors, gguf.path)
        self._weights = bind_weights(gguf, hp)
        if not isinstance(n_ctx, (int, np.integer)) or n_ctx < 1:
            raise QinferError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        self.n_ctx = int(n_ctx)
        self.n_threads = n_threads or os.cpu_count() or 1
        self.backend = kernels.get_backend(None if backend == "auto" else backend)
        self._cache = KVCache(hp.n_layer, self.n_ctx, hp.n_head_kv, hp.head_dim, hp.head_dim_v, kv_type)
        self._forward = Forward(hp, self._weights, self._cache, self.backend, self.n_threads)
        self._ids = []
        self._lock = _OwnerLock()
        self._tokenizer = None
        self.chat_replies = {}   # {prompt ids: (reply ids, text)} of chat() answers, for cache reuse

    # -- concurrency -------------------------------------------------------------

    @contextmanager
    def _using(self):
        if not self._lock.acquire():
            raise QinferError("this Model is in use by another thread; use one Model per thread")
        try:
            yield
        finally:
            self._lock.release()

    def _locked_stream(self, gen):
        with self._using():
            yield from gen

    # -- vocabulary ----------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        return self.hparams.n_vocab

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from .tokenizer import from_gguf

            self._tokenizer = from_gguf(self.metadata)
        return self._tokenizer

    def tokenize(self, text, add_bos=True):
        return self.tokenizer.encode(text, add_bos=add_bos)

    def detokenize(self, ids):
        return self.tokenizer.decode(list(ids))

    # -- the KV cache ----------------------------------------------------------------

    @property
    def n_past(self) -> int:
        """Positions held in the KV cache."""
        return len(self._ids)

    @property
    def cached_ids(self) -> tuple:
        """The token ids whose keys/values are in the cache, in order."""
        return tuple(self._ids)

    def reset(self):
        with self._using():
            self._ids = []

    def truncate(self, n):
        """Keep the first n cached positions (prompt-prefix reuse)."""
        with self._using():
            if not 0 <= n <= len(self._ids):
                raise QinferError(f"cannot truncate the cache to {n} positions: it holds {len(self._ids)}")
            del self._ids[n:]

    # -- evaluation --------------------------------------------------------------------

    def _check_ids(self, ids):
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise QinferError("token ids must be a flat sequence of integers")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_vocab):
            bad = int(arr[(arr < 0) | (arr >= self.n_vocab)][0])
            raise QinferError(f"token id {bad} is outside the vocabulary (0..{self.n_vocab - 1})")
        return arr

    def eval(self, ids, last_only=False):
        """Append `ids` to the cache; return float32 logits of every new position
        ([len(ids), n_vocab]) or, with last_only, of the last one ([1, n_vocab])."""
        with self._using():
            arr = self._check_ids(ids)
            n = arr.size
            if self.n_past + n > self.n_ctx:
                raise QinferError(f"context full: {self.n_past} cached + {n} new tokens exceed "
                                  f"n_ctx = {self.n_ctx}")
            if n == 0:
                return np.zeros((0, self.n_vocab), dtype=np.float32)
            out = None if last_only else np.empty((n, self.n_vocab), dtype=np.float32)
            for a in range(0, n, N_BATCH):
                b = min(n, a + N_BATCH)
                last = last_only and b == n
                if last_only and not last:
                    # Only the cache matters for these positions: skip most of the output.
                    self._forward(arr[a:b], self.n_past, last_only=True)
                else:
                    logits = self._forward(arr[a:b], self.n_past, last_only=last)
                    if last_only:
                        out = logits
                    else:
                        out[a:b] = logits
                self._ids.extend(int(t) for t in arr[a:b])
            return out

    def logits(self, ids):
        """float32 [len(ids), n_vocab]: logits at every position, from a fresh cache."""
        with self._using():
            self._ids = []
            return self.eval(ids)

    # -- generation (qinfer.generation does the work) ---------------------------------

    def _delegate(self, fn, *args, **kwargs):
        with self._using():
            res = fn(self, *args, **kwargs)
        if inspect.isgenerator(res):
            return self._locked_stream(res)
        return res

    def generate(self, prompt, **kwargs):
        """See qinfer.generation.generate."""
        from . import generation

        return self._delegate(generation.generate, prompt, **kwargs)

    def chat(self, messages, *, tools=None, **kwargs):
        """OpenAI-style chat completion in the model's chat format; `tools`: OpenAI
        tool schemas (Mistral v2+ formats). See qinfer.generation.chat."""
        from . import generation

        return self._delegate(generation.chat, messages, tools=tools, **kwargs)

    def __repr__(self):
        hp = self.hparams
        kind = f"Mixtral {hp.n_expert}x top-{hp.n_expert_used}" if hp.is_moe else "Mistral"
        return (f"<qinfer.Model {os.path.basename(self.path)}: {kind}, {hp.n_layer} layers, "
                f"dim {hp.n_embd}, n_ctx {self.n_ctx}, backend {self.backend.name}>")


def load(path, n_ctx=4096, n_threads=None, backend="auto", kv_type="f16") -> Model:
    """Open a GGUF model (memory-mapped, nothing copied) with an n_ctx KV cache.
    kv_type: "f16" (default, as llama.cpp) or "f32"."""
    return Model(GGUFFile(path), n_ctx=n_ctx, n_threads=n_threads, backend=backend, kv_type=kv_type)
