"""Token sampling with llama.cpp's semantics, vectorised with numpy.

The chain runs in llama.cpp's order:

    penalties -> top-k -> top-p -> min-p -> temperature -> dist

and each step does what llama.cpp's sampler of the same name does
(src/llama-sampler.cpp), in float32 like llama.cpp:

- penalties: every token seen among the last `penalty_last_n` accepted tokens
  (the prompt included, as llama-cli and llama-server do) has its logit divided
  by `repeat_penalty` if positive, multiplied if not, then lowered by
  count * frequency_penalty + presence_penalty;
- top-k: keep the k largest logits, sorted in descending order (k <= 0: off);
- top-p: softmax over the candidates; keep the shortest descending prefix whose
  probabilities sum to at least p (p >= 1: off);
- min-p: keep candidates whose logit is at least max + log(p), i.e. whose
  probability is at least p times the largest (p <= 0: off);
- temperature: logits / t; t <= 0 means greedy: the first largest logit wins;
- dist: probabilities exp(logit - max) summed in double, one uniform double u
  from a Mersenne twister seeded with `seed` (the draws of C++'s std::mt19937
  and uniform_real_distribution<double>, as llama.cpp's dist sampler makes
  them), and the first candidate whose running sum reaches u * total.

Candidates keep llama.cpp's order (descending once a step has sorted them,
vocabulary order otherwise), so for the same logits, history and seed the
chosen tokens are llama.cpp's. Ties in sorting are broken by the lower token id.
"""
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from .errors import QinferError


class Candidates(NamedTuple):
    """Token ids with their logits; `sorted` if in descending logit order."""

    ids: np.ndarray      # int64
    logits: np.ndarray   # float32
    sorted: bool


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: Optional[int] = 0

    def __post_init__(self):
        def check(ok, what):
            if not ok:
                raise QinferError(f"invalid sampling parameter: {what}")

        check(np.isfinite(self.temperature) and self.temperature >= 0,
              f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        check(0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}")
        check(self.repeat_penalty > 0, f"repeat_penalty must be > 0, got {self.repeat_penalty}")
        check(int(self.top_k) == self.top_k, f"top_k must be an integer, got {self.top_k}")
        check(int(self.penalty_last_n) == self.penalty_last_n and self.penalty_last_n >= 0,
              f"penalty_last_n must be an integer >= 0, got {self.penalty_last_n}")
        check(self.seed is None or (int(self.seed) == self.seed and 0 <= self.seed < 2**32),
              f"seed must be None or an integer in [0, 2**32), got {self.seed}")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


# -- the steps, as pure functions --------------------------------------------------------------


def apply_penalties(logits, history, repeat=1.0, frequency=0.0, presence=0.0):
    """Return a copy of float32 `logits` [n_vocab] penalised for the tokens in `history`."""
    out = np.array(logits, dtype=np.float32, copy=True)
    if len(history) == 0 or (repeat == 1.0 and frequency == 0.0 and presence == 0.0):
        return out
    tokens, counts = np.unique(np.asarray(history, dtype=np.int64), return_counts=True)
    vals = out[tokens]
    vals = np.where(vals <= 0, vals * np.float32(repeat), vals / np.float32(repeat))
    vals = vals - (counts.astype(np.float32) * np.float32(frequency) + np.float32(presence))
    out[tokens] = vals.astype(np.float32)
    return out


def all_candidates(logits):
    logits = np.asarray(logits, dtype=np.float32)
    return Candidates(np.arange(logits.size, dtype=np.int64), logits, False)


def _sort_desc(c):
    # lexsort: the last key is primary -> by logit descending, then id ascending
    order = np.lexsort((c.ids, -c.logits))
    return Candidates(c.ids[order], c.logits[order], True)


def top_k(c, k):
    if k <= 0:
        return c
    k = min(int(k), c.ids.size)
    if k < c.ids.size:
        kth = np.partition(c.logits, c.ids.size - k)[c.ids.size - k]
        keep = c.logits >= kth   # ties at the boundary: all kept here, cut after sorting
        c = Candidates(c.ids[keep], c.logits[keep], False)
    s = c if c.sorted else _sort_desc(c)
    return Candidates(s.ids[:k], s.logits[:k], True)


def softmax32(logits):
    """llama.cpp's softmax: float32 exp, float32 sequential sum."""
    e = np.exp(logits - logits.max(), dtype=np.float32)
    total = np.cumsum(e, dtype=np.float32)[-1]
    return e / total


def top_p(c, p):
    if p >= 1.0 or c.ids.size == 0:
        return c
    # Normalise in the current order before sorting: the float32 total then
    # has llama.cpp's rounding, which decides borderline cut-offs.
    probs = softmax32(c.logits)
    if c.sorted:
        s = c
    else:
        order = np.lexsort((c.ids, -c.logits))
        s, probs = Candidates(c.ids[order], c.logits[order], True), probs[order]
    cum = np.cumsum(probs, dtype=np.float32)
    reached = np.nonzero(cum >= np.float32(p))[0]
    n = int(reached[0]) + 1 if reached.size else s.ids.size
    return Candidates(s.ids[:n], s.logits[:n], True)


def min_p(c, p):
    if p <= 0.0 or c.ids.size == 0:
        return c
    with np.errstate(divide="ignore"):   # p below float32's range: log -> -inf, keeps all
        threshold = np.float32(c.logits.max()) + np.float32(np.log(np.float32(p)))
    keep = c.logits >= threshold
    return Candidates(c.ids[keep], c.logits[keep], c.sorted)


def apply_temperature(c, t):
    if t <= 0:
        best = int(np.argmax(c.logits))
        return Candidates(c.ids[best:best + 1], c.logits[best:best + 1], True)
    return Candidates(c.ids, (c.logits / np.float32(t)).astype(np.float32), c.sorted)


def pick(c, u):
    """Index into `c` chosen by the uniform number u in [0, 1), as llama.cpp's dist."""
    if c.ids.size == 1:
        return 0
    p = np.exp(c.logits - c.logits.max(), dtype=np.float32).astype(np.float64)
    running = np.cumsum(p)   # sequential float64 sum, as the C loop
    hit = np.nonzero(running >= running[-1] * u)[0]
    return int(hit[0]) if hit.size else c.ids.size - 1


# -- the random numbers -------------------------------------------------------------------------


class MersenneUniform:
    """Uniform doubles in [0, 1) drawn exactly as libstdc++'s
    uniform_real_distribution<double> over std::mt19937(seed): two 32-bit
    outputs a, b -> (a + b * 2**32) / 2**64. numpy's MT19937 generates the
    words; only its seeding differs from C++'s, so the state is set here with
    the reference init_genrand recurrence."""

    def __init__(self, seed):
        key = np.empty(624, dtype=np.uint32)
        key[0] = seed & 0xFFFFFFFF
        x = int(key[0])
        for i in range(1, 624):
            x = (1812433253 * (x ^ (x >> 30)) + i) & 0xFFFFFFFF
            key[i] = x
        self._bits = np.random.MT19937()
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 624}}

    def uniform(self) -> float:
        a, b = (int(w) for w in self._bits.random_raw(2))
        u = (a + b * 4294967296.0) / 18446744073709551616.0
        return min(u, np.nextafter(1.0, 0.0))


# -- the chain with its state ----------------------------------------------------------------------


class Sampler:
    """The sampling chain plus its state: penalty history and random generator.

        s = Sampler(SamplingParams(temperature=0.7, seed=1))
        s.accept(prompt_ids)              # history for the penalties
        tok = s.sample(logits)            # chooses and accepts one token
    """

    def __init__(self, params: SamplingParams = SamplingParams()):
        self.params = params
        self.history = deque(maxlen=params.penalty_last_n)
        seed = params.seed
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self._rng = MersenneUniform(seed)

    def accept(self, tokens):
        """Add accepted tokens (an id or a sequence of ids) to the penalty history."""
        if self.history.maxlen:
            self.history.extend([int(tokens)] if np.isscalar(tokens) else (int(t) for t in tokens))

    def candidates(self, logits) -> Candidates:
        """The candidates left after every filter, before the draw."""
        p = self.params
        logits = np.asarray(logits, dtype=np.float32).reshape(-1)
        if p.penalty_last_n:
            logits = apply_penalties(logits, self.history, p.repeat_penalty,
                                     p.frequency_penalty, p.presence_penalty)
        c = all_candidates(logits)
        if p.greedy:
            return apply_temperature(c, 0)
        c = min_p(top_p(top_k(c, p.top_k), p.top_p), p.min_p)
        return apply_temperature(c, p.temperature)

    def sample(self, logits) -> int:
        c = self.candidates(logits)
        if self.params.greedy:
            token = int(c.ids[0])
        else:
            token = int(c.ids[pick(c, self._rng.uniform())])
        self.accept(token)
        return token
