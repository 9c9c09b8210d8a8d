"""Hyperparameters of a checkpoint, from Mistral's params.json or HF's config.json."""
from dataclasses import dataclass

from qinfer.errors import FormatError, UnsupportedError

HF_ARCHS = ("MistralForCausalLM", "MixtralForCausalLM", "LlamaForCausalLM")


@dataclass
class ModelParams:
    n_layers: int
    dim: int
    hidden_dim: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    norm_eps: float
    rope_theta: float
    vocab_size: int
    context_length: int
    sliding_window: int = 0
    n_experts: int = 0
    n_experts_used: int = 0
    tied: bool = False


def _need(d, key, label):
    if key not in d:
        raise FormatError(f"{label}: missing {key!r}")
    return d[key]


def from_mistral(p, label):
    if "moe" in p and not isinstance(p["moe"], dict):
        raise FormatError(f"{label}: 'moe' must be an object")
    if p.get("model_type", "transformer") not in ("transformer",) or "ssm_cfg" in p:
        raise UnsupportedError(f"{label}: not a transformer checkpoint (e.g. Mamba); qinfer converts "
                               "Mistral and Mixtral transformers only")
    dim, n_heads = int(_need(p, "dim", label)), int(_need(p, "n_heads", label))
    moe = p.get("moe") or {}
    sw = p.get("sliding_window") or 0
    if isinstance(sw, list):
        sw = max(sw) if sw else 0
    ctx = p.get("max_seq_len") or p.get("max_position_embeddings")
    if not ctx:
        # params.json rarely names a context length, but llama.cpp refuses files
        # without one: Mistral 7B v0.1 (window 4096) was trained at 8192, later models 32768.
        ctx = 8192 if sw == 4096 else 32768
    return ModelParams(
        n_layers=int(_need(p, "n_layers", label)), dim=dim,
        hidden_dim=int(_need(p, "hidden_dim", label)), n_heads=n_heads,
        n_kv_heads=int(p.get("n_kv_heads", n_heads)), head_dim=int(p.get("head_dim") or dim // n_heads),
        norm_eps=float(_need(p, "norm_eps", label)), rope_theta=float(p.get("rope_theta", 10000.0)),
        vocab_size=int(_need(p, "vocab_size", label)), context_length=int(ctx), sliding_window=int(sw),
        n_experts=int(moe.get("num_experts", 0)), n_experts_used=int(moe.get("num_experts_per_tok", 0)))


def from_hf(c, label):
    archs = c.get("architectures") or []
    if not any(a in HF_ARCHS for a in archs):
        raise UnsupportedError(f"{label}: unsupported architecture {archs}; qinfer converts "
                               f"{', '.join(HF_ARCHS)}")
    dim, n_heads = int(_need(c, "hidden_size", label)), int(_need(c, "num_attention_heads", label))
    rope = c.get("rope_theta") or (c.get("rope_parameters") or {}).get("rope_theta") or 10000.0
    scaling = c.get("rope_scaling") or {}
    if scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
        raise UnsupportedError(f"{label}: rope scaling {scaling} is not supported")
    return ModelParams(
        n_layers=int(_need(c, "num_hidden_layers", label)), dim=dim,
        hidden_dim=int(_need(c, "intermediate_size", label)), n_heads=n_heads,
        n_kv_heads=int(c.get("num_key_value_heads") or n_heads),
        head_dim=int(c.get("head_dim") or dim // n_heads), norm_eps=float(c.get("rms_norm_eps", 1e-5)),
        rope_theta=float(rope), vocab_size=int(_need(c, "vocab_size", label)),
        context_length=int(c.get("max_position_embeddings") or 32768),
        sliding_window=int(c.get("sliding_window") or 0),
        n_experts=int(c.get("num_local_experts") or 0), n_experts_used=int(c.get("num_experts_per_tok") or 0),
        tied=bool(c.get("tie_word_embeddings", False)))
