"""llama.cpp's file types: which tensor type each tensor gets (src/llama-quant.cpp,
REFERENCE §4), so that `--quantizer ggml` files match llama-quantize's."""
from qinfer.errors import UnsupportedError
from qinfer.quants import get_type

# file type -> (llama_ftype id, base tensor type)
FILE_TYPES = {
    "F32": (0, "F32"), "F16": (1, "F16"), "BF16": (32, "BF16"), "Q8_0": (7, "Q8_0"),
    "Q4_0": (2, "Q4_0"), "Q4_1": (3, "Q4_1"), "Q5_0": (8, "Q5_0"), "Q5_1": (9, "Q5_1"),
    "Q2_K": (10, "Q2_K"), "Q3_K_S": (11, "Q3_K"), "Q3_K_M": (12, "Q3_K"), "Q3_K_L": (13, "Q3_K"),
    "Q4_K_S": (14, "Q4_K"), "Q4_K_M": (15, "Q4_K"), "Q5_K_S": (16, "Q5_K"), "Q5_K_M": (17, "Q5_K"),
    "Q6_K": (18, "Q6_K"),
}
FLOAT_FILE_TYPES = ("F32", "F16", "BF16")


def file_type(name):
    key = str(name).upper()
    if key not in FILE_TYPES:
        raise UnsupportedError(f"unsupported file type {name!r}; choose one of {', '.join(FILE_TYPES)}")
    return key


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def fallback_type(t, ncols):
    """llama.cpp's type for rows of ncols that type t cannot hold (a 32-block type, else F16)."""
    qt = get_type(t)
    if ncols % qt.block_size == 0:
        return t
    t = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}.get(t, t)
    return t if ncols % get_type(t).block_size == 0 else "F16"


def tensor_type(name, shape, ftype, params, has_imatrix=False):
    """GGUF tensor type for tensor `name` of numpy shape `shape` in file type `ftype`
    (has_imatrix: an importance matrix is used, which changes one of llama.cpp's rules)."""
    if len(shape) < 2 or name.endswith("_norm.weight") or name.endswith("ffn_gate_inp.weight"):
        return "F32"
    base = FILE_TYPES[ftype][1]
    if ftype in FLOAT_FILE_TYPES:
        return base
    ncols = shape[-1]
    n_layer = params.n_layers
    layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
    t = base
    is_output = name == "output.weight" or (params.tied and name == "token_embd.weight")
    if is_output:
        t = "Q8_0" if (ncols % get_type(base).block_size or base == "Q8_0") else "Q6_K"
        return fallback_type(t, ncols)
    if name.endswith("attn_v.weight"):
        if ftype == "Q2_K":
            t = "Q4_K" if params.n_heads // params.n_kv_heads >= 4 else "Q3_K"
        elif ftype == "Q3_K_M":
            t = "Q5_K" if layer < 2 else "Q4_K"
        elif ftype == "Q3_K_L":
            t = "Q5_K"
        elif ftype in ("Q4_K_M", "Q5_K_M") and use_more_bits(layer, n_layer):
            t = "Q6_K"
        elif ftype == "Q4_K_S" and layer < 4:
            t = "Q5_K"
        if params.n_experts == 8:
            t = "Q8_0"
    elif name.endswith("attn_k.weight"):
        if params.n_experts == 8:
            t = "Q8_0"
    elif name.endswith("ffn_down.weight") or name.endswith("ffn_down_exps.weight"):
        if ftype == "Q2_K":
            t = "Q3_K"
        elif ftype == "Q3_K_M":
            t = "Q5_K" if layer < n_layer // 16 else "Q4_K"
        elif ftype == "Q3_K_L":
            t = "Q5_K"
        elif ftype in ("Q4_K_M", "Q5_K_M") and use_more_bits(layer, n_layer):
            t = "Q6_K"
        elif ftype == "Q4_K_S" and layer < n_layer // 8:
            t = "Q5_K"
        elif ftype in ("Q4_0", "Q5_0") and has_imatrix and layer < n_layer // 8:
            t = "Q4_1" if ftype == "Q4_0" else "Q5_1"
    elif name.endswith("attn_output.weight"):
        if params.n_experts == 8:
            if ftype in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M"):
                t = "Q5_K"
        elif ftype == "Q2_K":
            t = "Q3_K"
        elif ftype == "Q3_K_M":
            t = "Q4_K"
        elif ftype == "Q3_K_L":
            t = "Q5_K"
    return fallback_type(t, ncols)
