"""Chat prompts for a GGUF model: its own `tokenizer.chat_template` rendered
with jinja2 in a sandbox, or one of Mistral's formats (qinfer.chat_formats).

    fmt = chat_format(metadata)                      # ChatFormat, or None: the file's jinja template
    ids = encode(metadata, tokenizer, messages, tools=None)
    text = render(metadata, messages, tools=None)    # the same prompt as one string

The Mistral formats are used when the file has no template, or when its
template is one of the names llama.cpp's converter writes ("mistral-v1",
"mistral-v3", "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken"); without a
template the format is chosen from the vocabulary's control tokens.

`encode` gives mistral-common's token ids: each text is tokenized on its own
and never parsed for special tokens. `render` joins the same pieces into one
string that tokenizes to those ids with special-token parsing (llama.cpp's
convention: a sentencepiece vocabulary puts a space in front of the text after
a control token by itself, so none is written), as long as the texts
themselves contain no control-token strings.
"""
from .chat_formats import (NAMED_FORMATS, Control, Reply, control_pieces, format_from_vocabulary, metadata_list,
                           named_format)
from .errors import QinferError, UnsupportedError


def _raise(msg):
    raise QinferError(f"chat template: {msg}")


def _render_jinja(template, messages, add_generation_prompt, bos, eos, tools):
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    context = dict(messages=messages, bos_token=bos, eos_token=eos, add_generation_prompt=add_generation_prompt)
    if tools:
        context["tools"] = tools
    try:
        return env.from_string(template).render(**context)
    except TemplateError as exc:
        raise QinferError(f"the model's chat template failed: {exc}") from None


def _special_pieces(metadata):
    tokens = metadata_list(metadata, "tokenizer.ggml.tokens")

    def piece(key, default):
        i = metadata.get(key)
        return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else default

    return piece("tokenizer.ggml.bos_token_id", "<s>"), piece("tokenizer.ggml.eos_token_id", "</s>")


def chat_format(metadata):
    """The Mistral ChatFormat for this file, or None when it carries its own jinja template."""
    template = metadata.get("tokenizer.chat_template")
    if template:
        return named_format(template)
    return format_from_vocabulary(metadata)


def segments(metadata, messages, tools=None):
    """A Mistral-format model's prompt as Control pieces and texts; None for a jinja template."""
    fmt = chat_format(metadata)
    if fmt is None:
        return None
    bos, eos = _special_pieces(metadata)
    return fmt.segments(messages, tools, bos=bos, eos=eos)


def render(metadata, messages, add_generation_prompt=True, tools=None):
    """The prompt as one string (for jinja templates: the template's output)."""
    parts = segments(metadata, messages, tools)
    if parts is None:
        template = metadata["tokenizer.chat_template"]
        if "{" not in template:
            # llama.cpp also accepts names of its built-in templates here; rendered
            # as jinja, a name would be the whole prompt.
            raise UnsupportedError(f"chat template {template.strip()!r} is a template name qinfer does not "
                                   f"know (it knows {', '.join(NAMED_FORMATS)})")
        bos, eos = _special_pieces(metadata)
        return _render_jinja(template, messages, add_generation_prompt, bos, eos, tools)
    # A sentencepiece tokenizer puts a space before a text that follows a
    # control token, as mistral-common's separate encodes do; two texts in a
    # row (v1: "[INST] q [/INST]" then the answer) need it written out.
    # Tekken adds no space anywhere.
    spm = metadata.get("tokenizer.ggml.model") != "gpt2"
    out = []
    for k, p in enumerate(parts):
        if spm and k and not isinstance(p, Control) and not isinstance(parts[k - 1], Control):
            out.append(" ")
        out.append(p)
    return "".join(out)


def _control_ids(tokenizer, metadata):
    ids = control_pieces(metadata)
    bos, eos = _special_pieces(metadata)
    ids.setdefault(bos, tokenizer.bos_id)
    ids.setdefault(eos, tokenizer.eos_id)
    return ids


def encode(metadata, tokenizer, messages, tools=None, replies=None):
    """Token ids of the prompt. `replies`: {prompt ids (tuple): (reply ids, reply
    text)} of the model's earlier answers; where the conversation repeats such
    an answer right after that prompt, its generated ids are used instead of a
    fresh encoding (the same text, possibly other tokens), so a KV cache that
    holds them stays valid (see generation.chat)."""
    parts = segments(metadata, messages, tools)
    if parts is None:
        text = render(metadata, messages, True, tools)
        return list(tokenizer.encode(text, add_bos=False, parse_special=True))
    controls = _control_ids(tokenizer, metadata)
    ids = []
    for p in parts:
        if isinstance(p, Control):
            if p not in controls:
                raise UnsupportedError(f"the model's vocabulary has no {p} control token, which its chat "
                                       f"format needs for this conversation")
            ids.append(controls[p])
            continue
        known = replies.get(tuple(ids)) if replies and isinstance(p, Reply) else None
        if known is not None and p in (known[1], known[1].rstrip(" ")):
            ids.extend(known[0])
        else:
            ids.extend(tokenizer.encode(p, add_bos=False, parse_special=False))
    return ids
