"""Bind a GGUF file's tensors to the transformer's weights, checking every shape.

Matrices stay in the file's memory map (uint8 rows of their quantized type, no
copy); only the small vectors (norm weights, the MoE router) are decoded to
float32 up front. Everything is validated against the hyperparameters before
any compute, so a file whose tensors contradict its metadata is refused with
one clear error.

Shapes below are in GGUF (ggml) order: shape[0] is the input length of a
matrix (the contiguous row), shape[1] its output length.
"""
import re
from dataclasses import dataclass

import numpy as np

from . import quants
from .errors import FormatError, UnsupportedError
from .quants.types import QuantType


@dataclass(frozen=True)
class Matrix:
    """A weight matrix W used as y = x @ W.T: n_out rows of n_in values."""
    name: str
    qtype: QuantType
    data: np.ndarray     # uint8 [n_out, row_bytes], a view of the file
    n_in: int
    n_out: int


@dataclass(frozen=True)
class DenseFFN:
    gate: Matrix
    up: Matrix
    down: Matrix


@dataclass(frozen=True)
class MoEFFN:
    router: np.ndarray   # float32 [n_expert, n_embd]
    gate: tuple          # one Matrix per expert
    up: tuple
    down: tuple


@dataclass(frozen=True)
class Layer:
    attn_norm: np.ndarray
    wq: Matrix
    wk: Matrix
    wv: Matrix
    wo: Matrix
    ffn_norm: np.ndarray
    ffn: object          # DenseFFN | MoEFFN


@dataclass(frozen=True)
class Weights:
    token_embd: Matrix   # rows are token embeddings (n_out = n_vocab)
    layers: tuple
    output_norm: np.ndarray
    output: Matrix       # token_embd when the file ties them

    @property
    def tied(self) -> bool:
        return self.output is self.token_embd


class _Binder:
    def __init__(self, gguf, hp):
        self.f, self.hp, self.used = gguf, hp, set()

    def fail(self, msg):
        raise FormatError(f"{self.f.path}: {msg}")

    def info(self, name, shape):
        t = self.f.tensors.get(name)
        if t is None:
            self.fail(f"tensor {name} is missing")
        if t.shape != tuple(shape):
            self.fail(f"tensor {name} has shape {list(t.shape)}, expected {list(shape)} "
                      "from the hyperparameters")
        self.used.add(name)
        return t

    def vector(self, name, n):
        t = self.info(name, (n,))
        return quants.dequantize(self.f.tensor_data(t), t.qtype, (n,)).astype(np.float32, copy=False)

    def matrix(self, name, n_in, n_out):
        t = self.info(name, (n_in, n_out))
        return Matrix(name, t.qtype, self.f.tensor_data(t), n_in, n_out)

    def experts(self, name, n_in, n_out, n_expert):
        t = self.info(name, (n_in, n_out, n_expert))
        data = self.f.tensor_data(t)  # [n_expert, n_out, row_bytes]; expert-major
        return tuple(Matrix(f"{name}[{e}]", t.qtype, data[e], n_in, n_out) for e in range(n_expert))

    def layer(self, i):
        hp, p = self.hp, f"blk.{i}."
        e, q_out, kv_out = hp.n_embd, hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
        v_out = hp.n_head_kv * hp.head_dim_v
        attn = dict(
            attn_norm=self.vector(p + "attn_norm.weight", e),
            wq=self.matrix(p + "attn_q.weight", e, q_out),
            wk=self.matrix(p + "attn_k.weight", e, kv_out),
            wv=self.matrix(p + "attn_v.weight", e, v_out),
            wo=self.matrix(p + "attn_output.weight", hp.n_head * hp.head_dim_v, e),
            ffn_norm=self.vector(p + "ffn_norm.weight", e),
        )
        return Layer(ffn=self.moe(p) if hp.is_moe else self.dense(p), **attn)

    def dense(self, p):
        e, ff = self.hp.n_embd, self.hp.n_ff
        return DenseFFN(self.matrix(p + "ffn_gate.weight", e, ff), self.matrix(p + "ffn_up.weight", e, ff),
                        self.matrix(p + "ffn_down.weight", ff, e))

    def moe(self, p):
        e, ff, n = self.hp.n_embd, self.hp.n_ff, self.hp.n_expert
        t = self.info(p + "ffn_gate_inp.weight", (e, n))
        router = quants.dequantize(self.f.tensor_data(t), t.qtype, (n, e))
        if p + "ffn_gate_exps.weight" in self.f.tensors:
            # Merged 3-D tensors, as current llama.cpp writes them.
            gate = self.experts(p + "ffn_gate_exps.weight", e, ff, n)
            up = self.experts(p + "ffn_up_exps.weight", e, ff, n)
            down = self.experts(p + "ffn_down_exps.weight", ff, e, n)
        else:
            # Older files: one 2-D tensor per expert, blk.N.ffn_gate.E.weight.
            gate = tuple(self.matrix(f"{p}ffn_gate.{x}.weight", e, ff) for x in range(n))
            up = tuple(self.matrix(f"{p}ffn_up.{x}.weight", e, ff) for x in range(n))
            down = tuple(self.matrix(f"{p}ffn_down.{x}.weight", ff, e) for x in range(n))
        return MoEFFN(np.ascontiguousarray(router, dtype=np.float32), gate, up, down)


def bind_weights(gguf, hp) -> Weights:
    """All weights of a Mistral/Mixtral GGUF, validated against `hp`."""
    b = _Binder(gguf, hp)
    token_embd = b.matrix("token_embd.weight", hp.n_embd, hp.n_vocab)
    layers = tuple(b.layer(i) for i in range(hp.n_layer))
    output_norm = b.vector("output_norm.weight", hp.n_embd)
    output = b.matrix("output.weight", hp.n_embd, hp.n_vocab) if "output.weight" in gguf.tensors \
        else token_embd
    extra = [n for n in gguf.tensors if n not in b.used]
    if extra:
        more_layers = [n for n in extra if re.match(r"blk\.(\d+)\.", n)
                       and int(n.split(".")[1]) >= hp.n_layer]
        if more_layers:
            b.fail(f"tensor {more_layers[0]} belongs to a layer past block_count = {hp.n_layer}")
        raise UnsupportedError(f"{gguf.path}: tensor {extra[0]} is not part of the Mistral/Mixtral "
                               f"architecture qinfer runs ({len(extra)} unused tensors)")
    return Weights(token_embd, layers, output_norm, output)
