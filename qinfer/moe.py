"""Mixture-of-experts FFN (Mixtral), as llama.cpp's graph computes it:

    probs   = softmax(router @ x)                 over all experts
    top     = the k most probable experts          (k = expert_used_count)
    weights = probs[top] / sum(probs[top])         renormalised
    y       = sum_j weights_j * down_j(silu(gate_j x) * up_j x)

The routing (softmax, top-k, renormalisation) is ops.moe_route. Tokens are
grouped by expert, so each expert's matrices are read once per batch no
matter how many tokens chose it.
"""
import numpy as np


def moe_ffn(h, ffn, n_used, linear, ops, linear_group=None):
    """The MoE block's output for normalised hidden states h [n, n_embd].
    linear(matrix, x) -> x @ W.T runs one expert matrix over gathered rows;
    linear_group(matrices, x), when given, runs an expert's gate and up in one call."""
    if linear_group is None:
        linear_group = lambda ms, x: [linear(m, x) for m in ms]  # noqa: E731
    return (moe_one_token if h.shape[0] == 1 else moe_batched)(h, ffn, n_used, linear, ops, linear_group)


def moe_one_token(h, ffn, n_used, linear, ops, linear_group):
    """moe_batched for h of one row (a generation step, once per layer) with the
    same arithmetic, minus numpy's per-call costs of sorting, unique and fancy
    indexing (~200 us a layer)."""
    experts, weights = ops.moe_route(h, ffn.router, n_used)
    chosen = sorted(zip(weights[0], experts[0].tolist()), key=lambda p: p[1])   # ascending id, moe_batched's order
    # The chosen experts' gate and up matrices all read h: one call for
    # two experts (Mixtral's top-2), so the threads are waited for once.
    mats = [m for _, e in chosen for m in (ffn.gate[e], ffn.up[e])]
    gu = [y for i in range(0, len(mats), 4) for y in linear_group(mats[i:i + 4], h)]
    out = None
    for i, (w, e) in enumerate(chosen):
        y = linear(ffn.down[e], ops.silu_mul(gu[2 * i], gu[2 * i + 1]))
        y *= w
        if out is None:
            out = y
        else:
            out += y
    return out


def moe_batched(h, ffn, n_used, linear, ops, linear_group):
    """Tokens grouped by expert: each expert's matrices run once over its rows."""
    experts, weights = ops.moe_route(h, ffn.router, n_used)
    out = np.zeros_like(h)
    for e in np.unique(experts):
        rows, slot = np.nonzero(experts == e)   # a token picks an expert at most once
        xe = np.ascontiguousarray(h[rows])
        ye = linear(ffn.down[e], ops.silu_mul(*linear_group((ffn.gate[e], ffn.up[e]), xe)))
        out[rows] += weights[rows, slot][:, None] * ye
    return out
