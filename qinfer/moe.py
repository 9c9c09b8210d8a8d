"""Mixture-of-experts FFN (Mixtral), as llama.cpp's graph computes it:

    probs   = softmax(router @ x)                 over all experts
    top     = the k most probable experts          (k = expert_used_count)
    weights = probs[top] / sum(probs[top])         renormalised
    y       = sum_j weights_j * down_j(silu(gate_j x) * up_j x)

Tokens are grouped by expert, so each expert's matrices are read once per
batch no matter how many tokens chose it.
"""
import numpy as np


def route(h, router, n_used, ops):
    """Top-k experts per token and their renormalised weights.
    h: float32 [n, n_embd]; router: float32 [n_expert, n_embd].
    Returns (experts int64 [n, k], weights float32 [n, k])."""
    probs = ops.softmax(np.ascontiguousarray(h @ router.T, dtype=np.float32))
    # Stable sort of -p: on exact ties the lower expert id wins.
    top = np.argsort(-probs, axis=1, kind="stable")[:, :n_used]
    w = np.take_along_axis(probs, top, axis=1)
    return top, (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def moe_ffn(h, ffn, n_used, linear, ops):
    """The MoE block's output for normalised hidden states h [n, n_embd].
    linear(matrix, x) -> x @ W.T runs one expert matrix over gathered rows."""
    experts, weights = route(h, ffn.router, n_used, ops)
    out = np.zeros_like(h)
    for e in np.unique(experts):
        rows, slot = np.nonzero(experts == e)   # a token picks an expert at most once
        xe = np.ascontiguousarray(h[rows])
        ye = linear(ffn.down[e], ops.silu_mul(linear(ffn.gate[e], xe), linear(ffn.up[e], xe)))
        out[rows] += weights[rows, slot][:, None] * ye
    return out
