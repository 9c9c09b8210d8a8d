"""GGUF tokenizer metadata from the tokenizer file a checkpoint ships, written
as llama.cpp's converter writes it:

- sentencepiece tokenizer.model[.vN] -> model "llama" (spm_metadata);
- Mistral's tekken.json -> model "gpt2", pre "tekken": the special tokens first
  (CONTROL), then every kept vocabulary entry spelled in GPT-2's byte alphabet
  (NORMAL), and BPE merges rebuilt from the tiktoken ranks (gguf-py MistralVocab);
- a Hugging Face byte-level BPE tokenizer.json (tekken's or GPT-2's pre-tokenizer)
  -> model "gpt2" with the file's merges (convert_hf_to_gguf _set_vocab_gpt2);

plus what tokenizer_config.json / chat_template.jinja say (special tokens,
add_bos/add_eos, chat template). The result is a dict: model, pre, tokens, types,
bos, eos, unk and optionally scores, merges, pad, add_bos, add_eos,
add_space_prefix, chat_template.
"""
import base64
import binascii
import json

from qinfer.errors import FormatError, UnsupportedError
from qinfer.tokenizer.pretokenize import BYTE_TO_CHAR, PATTERNS
from qinfer.tokenizer.special import CONTROL, NORMAL, UNUSED, USER_DEFINED

from .spm_metadata import spm_metadata

# The special tokens of tekken files that predate the "special_tokens" list (tokenizer
# versions up to v7), by id; the rest up to default_num_special_tokens are "<SPECIAL_{id}>".
LEGACY_TEKKEN_SPECIALS = (
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]",
    "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]")
LEGACY_TEKKEN_VERSIONS = ("v1", "v2", "v3", "v7")


def _json(member, where):
    try:
        return json.loads(member.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{where}: not valid JSON ({exc})") from None


def _byte_string(b):
    """Bytes spelled in GPT-2's byte alphabet (latin-1 maps byte b to code point b)."""
    return b.decode("latin-1").translate(BYTE_TO_CHAR)


def _pad(md, n_vocab, where):
    """Embedding rows beyond the tokenizer become UNUSED "[PAD{i}]" tokens, as llama.cpp writes them."""
    n = len(md["tokens"])
    if n > n_vocab:
        raise FormatError(f"{where}: tokenizer has {n} tokens but the model only {n_vocab} embeddings")
    md["tokens"].extend(f"[PAD{i}]" for i in range(n, n_vocab))
    md["types"].extend([UNUSED] * (n_vocab - n))
    if "scores" in md:
        md["scores"].extend([-1000.0] * (n_vocab - n))
    return md


# ---- tekken.json ----------------------------------------------------------------

def tekken_merges(token_bytes, spelled, where):
    """BPE merges equivalent to tiktoken's ranks: for each token past the 256 bytes,
    every split into two tokens, ordered by the token's rank, then by the ranks of
    the two halves (the order llama.cpp's converter reconstructs). `spelled`: the
    tokens in the byte alphabet."""
    rank = {b: i for i, b in enumerate(token_bytes)}.get
    merges = []
    for i in range(256, len(token_bytes)):
        tok = token_bytes[i]
        local = sorted([(a, b) for j in range(1, len(tok))
                        if (a := rank(tok[:j])) is not None and (b := rank(tok[j:])) is not None])
        if not local:
            raise FormatError(f"{where}: token of rank {i} ({tok!r}) cannot be made by merging two tokens")
        merges.extend(f"{spelled[a]} {spelled[b]}" for a, b in local)
    return merges


def _tekken_specials(data, n_special, version, where):
    listed = data.get("special_tokens")
    if listed is None:
        if version not in LEGACY_TEKKEN_VERSIONS:
            raise FormatError(f"{where}: tokenizer version {version} needs a special_tokens list")
        names = list(LEGACY_TEKKEN_SPECIALS)
    else:
        try:
            listed = sorted(listed, key=lambda t: t["rank"])
            names = [t["token_str"] for t in listed]
            ranks = [t["rank"] for t in listed]
        except (TypeError, KeyError):
            raise FormatError(f"{where}: malformed special_tokens list") from None
        if ranks != list(range(len(names))) or not all(isinstance(n, str) and n for n in names):
            raise FormatError(f"{where}: special tokens are not named strings of ranks 0..{len(names) - 1}")
    if len(names) > n_special or len(set(names)) != len(names):
        raise FormatError(f"{where}: {len(names)} special tokens (duplicates or more than "
                          f"default_num_special_tokens = {n_special})")
    return names + [f"<SPECIAL_{i}>" for i in range(len(names), n_special)]


def tekken_metadata(data, n_vocab, where):
    """Vocabulary of a tekken.json, cut to the model's embedding count when the model
    uses fewer than the file's default_vocab_size (as mistral-common's vocab_size does)."""
    try:
        cfg = data["config"]
        vocab = data["vocab"]
        pattern = cfg["pattern"]
        n_special = int(cfg["default_num_special_tokens"])
        default_size = int(cfg["default_vocab_size"])
        version = cfg.get("version")
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise FormatError(f"{where}: not a tekken tokenizer file (missing {exc})") from None
    if not isinstance(vocab, list):
        raise FormatError(f"{where}: vocab is not a list")
    if pattern != PATTERNS["tekken"]:
        raise UnsupportedError(f"{where}: tekken pre-tokenizer pattern differs from Mistral's "
                               "published one, which llama.cpp and qinfer hard-code")
    keep = min(n_vocab, default_size)
    n_inner = keep - n_special
    if n_special < 0 or n_inner < 256 or n_inner > len(vocab):
        raise FormatError(f"{where}: {keep} tokens kept (model vocab {n_vocab}, file default "
                          f"{default_size}) do not fit {n_special} special + {len(vocab)} regular tokens")
    specials = _tekken_specials(data, n_special, version, where)
    token_bytes = []
    try:
        for i, entry in enumerate(vocab[:n_inner]):
            if entry["rank"] != i:
                raise FormatError(f"{where}: vocab entry {i} has rank {entry['rank']}")
            token_bytes.append(base64.b64decode(entry["token_bytes"], validate=True))
    except (TypeError, KeyError, binascii.Error):
        raise FormatError(f"{where}: malformed vocab entry {len(token_bytes)}") from None
    if token_bytes[:256] != [bytes([b]) for b in range(256)] or len(set(token_bytes)) != n_inner:
        raise FormatError(f"{where}: vocab does not start with the 256 bytes or repeats a token")
    ids = {t: i for i, t in enumerate(specials)}
    spelled = [_byte_string(b) for b in token_bytes]
    md = {"model": "gpt2", "pre": "tekken", "tokens": specials + spelled,
          "scores": [0.0] * keep, "types": [CONTROL] * n_special + [NORMAL] * n_inner,
          "merges": tekken_merges(token_bytes, spelled, where),
          "bos": ids.get("<s>", -1), "eos": ids.get("</s>", -1), "unk": ids.get("<unk>", -1),
          "add_bos": True, "add_eos": False}
    md["pad"] = ids.get("<pad>", md["eos"])
    return _pad(md, n_vocab, where)


# ---- Hugging Face tokenizer.json ------------------------------------------------

def _hf_pre(data, where):
    """tokenizer.ggml.pre for a byte-level BPE tokenizer.json, or a clear refusal."""
    if not isinstance(data, dict):
        raise FormatError(f"{where}: not a tokenizers JSON object")
    model, pre_tok = data.get("model") or {}, data.get("pre_tokenizer") or {}
    if not isinstance(model, dict) or not isinstance(pre_tok, dict):
        raise FormatError(f"{where}: model and pre_tokenizer must be JSON objects")
    if model.get("type") != "BPE":
        raise UnsupportedError(f"{where}: tokenizer model {model.get('type')!r} is not supported "
                               "(byte-level BPE is)")
    if model.get("byte_fallback") or pre_tok.get("type") == "Metaspace":
        raise UnsupportedError(f"{where}: sentencepiece-style tokenizer.json is not supported; "
                               "put the model's tokenizer.model beside it")
    if data.get("normalizer"):
        raise UnsupportedError(f"{where}: tokenizer.json with a normalizer is not supported")
    parts = pre_tok.get("pretokenizers") if pre_tok.get("type") == "Sequence" else [pre_tok]
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise FormatError(f"{where}: malformed pre_tokenizer sequence")
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        split = parts[0]
        pattern = split.get("pattern")
        if (isinstance(pattern, dict) and pattern.get("Regex") == PATTERNS["tekken"] and not split.get("invert")
                and str(split.get("behavior")).lower() == "isolated"):
            return "tekken"
    raise UnsupportedError(f"{where}: pre-tokenizer {kinds} is not supported (tekken's Split + "
                           "ByteLevel, or GPT-2's ByteLevel are)")


def hf_tokenizer_metadata(data, n_vocab, where):
    pre = _hf_pre(data, where)
    model = data["model"]
    by_id = {}
    try:
        for text, i in model["vocab"].items():
            by_id[int(i)] = (text, NORMAL)
        for t in data.get("added_tokens") or []:
            by_id[int(t["id"])] = (t["content"], CONTROL if t.get("special") else USER_DEFINED)
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    except (TypeError, KeyError, ValueError, AttributeError):
        raise FormatError(f"{where}: malformed BPE model or added_tokens") from None
    if any(i < 0 for i in by_id) or not all(isinstance(t, str) and t for t, _ in by_id.values()):
        raise FormatError(f"{where}: a token has a negative id or an empty or non-string text")
    if not all(" " in m[1:] for m in merges):
        raise FormatError(f"{where}: a merge is not two tokens")
    size = max(by_id) + 1 if by_id else 0
    if size > n_vocab:
        raise FormatError(f"{where}: tokenizer has {size} tokens but the model only {n_vocab} embeddings")
    tokens = [by_id.get(i, (f"[PAD{i}]", UNUSED))[0] for i in range(size)]
    types = [by_id.get(i, ("", UNUSED))[1] for i in range(size)]
    md = {"model": "gpt2", "pre": pre, "tokens": tokens, "types": types, "merges": merges,
          "bos": -1, "eos": -1, "unk": -1}
    return _pad(md, n_vocab, where)


# ---- tokenizer_config.json ------------------------------------------------------

def _token_text(v):
    return v.get("content") if isinstance(v, dict) else v


def apply_tokenizer_config(md, cfg, where, template_file=None):
    """Special tokens, add_bos/add_eos, prefix space and chat template from
    tokenizer_config.json (and a separate chat_template.jinja, which wins)."""
    if not isinstance(cfg, dict):
        raise FormatError(f"{where}: tokenizer_config.json is not a JSON object")
    ids = {}
    for i, t in enumerate(md["tokens"]):
        ids.setdefault(t, i)
    for key in ("bos", "eos", "unk", "pad"):
        text = _token_text(cfg.get(f"{key}_token"))
        if isinstance(text, str) and text in ids:
            md[key] = ids[text]
    for key in ("add_bos", "add_eos"):
        if isinstance(cfg.get(f"{key}_token"), bool):
            md[key] = cfg[f"{key}_token"]
    if md["model"] == "llama" and isinstance(cfg.get("add_prefix_space"), bool):
        md["add_space_prefix"] = cfg["add_prefix_space"]
    template = cfg.get("chat_template")
    if isinstance(template, list):   # named templates: llama.cpp's default is the one called "default"
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template_file is not None:
        template = template_file
    if isinstance(template, str) and template:
        md["chat_template"] = template
    return md


def vocab_metadata(member, n_vocab, label, files=None):
    """Tokenizer metadata dict for `member` (a convert.sources.Member); `files`: the
    checkpoint's other files by name, for tokenizer_config.json / chat_template.jinja
    and config.json (bos/eos ids a tokenizer.json does not name)."""
    where = f"{label}:{member.name}"
    if member.name == "tokenizer.json":
        md = hf_tokenizer_metadata(_json(member, where), n_vocab, where)
    elif member.name.endswith(".json"):
        md = tekken_metadata(_json(member, where), n_vocab, where)
    else:
        md = spm_metadata(member.read(), n_vocab, where)
    files = files or {}
    cfg, template = {}, None
    if "tokenizer_config.json" in files:
        cfg = _json(files["tokenizer_config.json"], f"{label}:tokenizer_config.json")
    if "chat_template.jinja" in files:
        try:
            template = files["chat_template.jinja"].read().decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{label}:chat_template.jinja is not UTF-8 text") from None
    if cfg or template:
        md = apply_tokenizer_config(md, cfg, f"{label}:tokenizer_config.json", template)
    if "config.json" in files and (md["bos"] < 0 or md["eos"] < 0):
        model_cfg = _json(files["config.json"], f"{label}:config.json")
        for key in ("bos", "eos"):
            i = model_cfg.get(f"{key}_token_id") if isinstance(model_cfg, dict) else None
            if md[key] < 0 and isinstance(i, int) and 0 <= i < len(md["tokens"]):
                md[key] = i
    if md["bos"] < 0:   # nothing to add: llama.cpp would otherwise fall back to id 11
        md["add_bos"] = False
    return md


def write_vocab(w, vocab):
    """Write a vocab_metadata dict with gguf.GGUFWriter `w`'s tokenizer adders."""
    w.add_tokenizer_model(vocab["model"])
    w.add_tokenizer_pre(vocab["pre"])
    w.add_token_list(vocab["tokens"])
    if "scores" in vocab:
        w.add_token_scores(vocab["scores"])
    w.add_token_types(vocab["types"])
    if "merges" in vocab:
        w.add_token_merges(vocab["merges"])
    for key, add in (("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id),
                     ("unk", w.add_unk_token_id), ("pad", w.add_pad_token_id)):
        if vocab.get(key, -1) >= 0:
            add(vocab[key])
    w.add_add_bos_token(vocab.get("add_bos", True))
    w.add_add_eos_token(vocab.get("add_eos", False))
    if "add_space_prefix" in vocab:
        w.add_add_space_prefix(vocab["add_space_prefix"])
    if vocab.get("chat_template"):
        w.add_chat_template(vocab["chat_template"])
