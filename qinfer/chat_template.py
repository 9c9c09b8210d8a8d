"""Chat prompts: the GGUF's own `tokenizer.chat_template` rendered with jinja2
in a sandbox, or Mistral's [INST] format when the file has none."""
from .errors import QinferError


def _raise(msg):
    raise QinferError(f"chat template: {msg}")


def _render_jinja(template, messages, add_generation_prompt, bos, eos):
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    try:
        return env.from_string(template).render(messages=messages, bos_token=bos, eos_token=eos,
                                                add_generation_prompt=add_generation_prompt)
    except TemplateError as exc:
        raise QinferError(f"the model's chat template failed: {exc}") from None


def _mistral_inst(messages, bos, eos):
    """Mistral's v1 instruct format: <s>[INST] user [/INST] answer</s>[INST] ...
    A system prompt is prepended to the first user turn, as Mistral's templates do."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] != "system"]
    out = [bos]
    first_user = True
    for m in turns:
        if m["role"] == "user":
            content = m["content"]
            if first_user and system:
                content = system + "\n\n" + content
            first_user = False
            out.append(f"[INST] {content} [/INST]")
        elif m["role"] == "assistant":
            out.append(f" {m['content']}{eos}")
        else:
            raise QinferError(f"unsupported message role {m['role']!r}")
    return "".join(out)


def render(metadata, messages, add_generation_prompt=True):
    tokens = metadata.get("tokenizer.ggml.tokens") or []

    def tok(key, default):
        i = metadata.get(key)
        return tokens[i] if i is not None and 0 <= int(i) < len(tokens) else default

    bos, eos = tok("tokenizer.ggml.bos_token_id", "<s>"), tok("tokenizer.ggml.eos_token_id", "</s>")
    template = metadata.get("tokenizer.chat_template")
    if template:
        return _render_jinja(template, messages, add_generation_prompt, bos, eos)
    return _mistral_inst(messages, bos, eos)
