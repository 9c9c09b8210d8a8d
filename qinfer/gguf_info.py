"""`qinfer info MODEL`: what a GGUF file holds and how much RAM running it takes."""
import re
from collections import Counter

from .errors import QinferError
from .gguf_file import GGUFFile
from .hparams import read_hparams
from .kv_cache import KVCache
from .model import N_BATCH

# Expert matrices: merged 3-D (blk.N.ffn_gate_exps.weight) or per expert (blk.N.ffn_gate.E.weight).
_EXPERT = re.compile(r"blk\.\d+\.ffn_(gate|up|down)(_exps|\.\d+)\.weight")

# llama_ftype values (include/llama.h) -> names, for general.file_type.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
              10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
              16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 21: "Q2_K_S", 32: "BF16"}


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024


def _count(n):
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def scratch_bytes(hp, n_batch=N_BATCH):
    """Float32 activations of one forward call of n_batch tokens: the residual,
    normed input, Q/K/V, attention output, two FFN halves (times the experts
    used, for MoE), one query row of attention scores per head, and the logits."""
    per_tok = (2 * hp.n_embd + hp.n_head * hp.head_dim + 2 * hp.n_head_kv * hp.head_dim
               + hp.n_head * hp.head_dim_v + 2 * hp.n_ff * max(1, hp.n_expert_used) + hp.n_vocab)
    return 4 * n_batch * per_tok


def describe(path, n_ctx=4096) -> str:
    f = GGUFFile(path)
    md, tensors = f.metadata, f.tensors
    lines = [f"file:          {f.path} ({_size(f.file_size)}, GGUF v{f.version})"]
    name = md.get("general.name")
    if name:
        lines.append(f"name:          {name}")
    lines.append(f"architecture:  {md.get('general.architecture', '?')}")
    ft = md.get("general.file_type")
    if ft is not None:
        lines.append(f"file type:     {FILE_TYPES.get(ft, f'unknown ({ft})')}")

    n_params = sum(t.n_elements for t in tensors.values())
    n_bytes = sum(t.nbytes for t in tensors.values())
    expert_params = sum(t.n_elements for n, t in tensors.items() if _EXPERT.fullmatch(n))
    try:
        hp = read_hparams(md, tensors, f.path)
        runtime_error = None
    except QinferError as exc:
        hp, runtime_error = None, str(exc)

    params = f"parameters:    {_count(n_params)}"
    if hp is not None and hp.is_moe and expert_params:
        active = n_params - expert_params + expert_params * hp.n_expert_used // hp.n_expert
        params += f" ({_count(active)} active per token: {hp.n_expert_used} of {hp.n_expert} experts)"
    lines.append(params)
    lines.append(f"weights:       {_size(n_bytes)}, {8 * n_bytes / max(1, n_params):.2f} bits per weight")

    if hp is not None:
        kind = f"Mixtral-style MoE, {hp.n_expert} experts, top-{hp.n_expert_used}" if hp.is_moe else "dense"
        lines.append(f"model:         {kind}; {hp.n_layer} layers, dim {hp.n_embd}, ffn {hp.n_ff}, "
                     f"{hp.n_head} heads ({hp.n_head_kv} KV) of {hp.head_dim}, vocab {hp.n_vocab}")
        window = f", sliding window {hp.sliding_window}" if hp.sliding_window else ""
        lines.append(f"context:       trained {hp.n_ctx_train}, RoPE base {hp.rope_base:g}{window}")

    hist = Counter()
    hist_bytes = Counter()
    for t in tensors.values():
        hist[t.qtype.name] += 1
        hist_bytes[t.qtype.name] += t.nbytes
    lines.append("tensor types:")
    for tname, cnt in sorted(hist.items(), key=lambda kv: -hist_bytes[kv[0]]):
        lines.append(f"  {tname:6s} {cnt:5d} tensors  {_size(hist_bytes[tname]):>12s}")

    if hp is None:
        lines.append(f"runtime:       cannot run: {runtime_error}")
    else:
        kv = KVCache.size_for(hp, n_ctx, "f16")
        scratch = scratch_bytes(hp)
        lines.append(f"RAM at n_ctx={n_ctx}: {_size(n_bytes + kv + scratch)} "
                     f"= weights {_size(n_bytes)} (memory-mapped) + KV cache {_size(kv)} (F16) "
                     f"+ scratch {_size(scratch)}")
    meta_keys = sorted(k for k in md if not k.startswith("tokenizer.ggml."))
    lines.append(f"metadata:      {len(md)} keys ({len(md) - len(meta_keys)} tokenizer.ggml.*)")
    for k in meta_keys:
        v = md[k]
        if isinstance(v, str) and len(v) > 60:
            v = v[:57].replace("\n", " ") + "..."
        elif isinstance(v, float):
            v = f"{v:g}"
        elif not isinstance(v, (str, int, bool)):
            v = f"[{len(v)} values]"
        lines.append(f"  {k} = {v}")
    return "\n".join(lines)
