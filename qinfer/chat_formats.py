"""Mistral's chat formats, laid out token for token as mistral-common encodes them.

    fmt = ChatFormat(7)                       # v1, v2, v3, v7; tekken=True for tekken vocabularies
    parts = fmt.segments(messages, tools)     # [Control("<s>"), Control("[INST]"), "Hi", Control("[/INST]")]

A conversation becomes a list of segments: `Control` pieces (one control token
each) and plain strings, each string encoded on its own without special-token
parsing — mistral-common encodes every message separately, so a user who types
"[INST]" gets text, never a control token. `chat_template` turns segments into
ids or into one prompt string.

What mistral-common 1.13 does, reproduced here (mistral_common/protocol/instruct/
normalize.py and tokens/tokenizers/instruct.py):
- Consecutive messages of one role are merged (contents joined by a blank line;
  assistant tool calls concatenated); a conversation that does not start with a
  user message gets an empty one in front (v1-v3).
- v1: "[INST] {text} [/INST]" is plain text (no control tokens); the system prompt
  goes in front of the FIRST user message; no tools.
- v2/v3: [INST]/[/INST] control tokens; the system prompt goes in front of the
  LAST user message, [AVAILABLE_TOOLS] json [/AVAILABLE_TOOLS] right before it;
  assistant replies lose trailing spaces; tool calls are "[TOOL_CALLS] json</s>".
  v2 drops tool calls and results that come before the last user message and
  writes results as [{"name", "content"}]; v3 keeps them as {"content", "call_id"}.
- v7: system messages stay where they are, as [SYSTEM_PROMPT] text [/SYSTEM_PROMPT];
  tool results are [TOOL_RESULTS] id [TOOL_CONTENT] text [/TOOL_RESULTS].
- Tekken vocabularies use the same layout (mistral-common has no tekken-specific
  template); they differ only in that tekken adds no space in front of a text.
"""
import json
from dataclasses import dataclass

from .errors import QinferError, UnsupportedError

# llama.cpp's names (src/llama-chat.cpp); its converter writes one of them as
# tokenizer.chat_template for a Mistral download. v2 has no llama.cpp name.
NAMED_FORMATS = {"mistral-v1": (1, False), "mistral-v3": (3, False), "mistral-v3-tekken": (3, True),
                 "mistral-v7": (7, False), "mistral-v7-tekken": (7, True)}

BLANK_LINE = "\n\n"   # mistral-common's separator for merged contents and the system prompt


class Control(str):
    """A segment that is one control token, named by its piece ("[INST]")."""


class Reply(str):
    """A segment that is an assistant's text reply (chat_template may replace
    it by the tokens the model generated for it)."""


@dataclass(frozen=True)
class ChatFormat:
    version: int          # mistral-common's tokenizer version: 1, 2, 3 or 7
    tekken: bool = False

    def __post_init__(self):
        if self.version not in (1, 2, 3, 7):
            raise UnsupportedError(f"Mistral chat format v{self.version} is not supported (v1, v2, v3, v7 are)")

    @property
    def name(self):
        return f"mistral-v{self.version}" + ("-tekken" if self.tekken else "")

    def segments(self, messages, tools=None, bos="<s>", eos="</s>"):
        """The conversation (OpenAI-style message dicts, checked by the caller)
        as Control pieces and text strings, starting with BOS."""
        if tools and self.version == 1:
            raise UnsupportedError("the mistral-v1 chat format has no tool support")
        system, msgs = _normalize(messages, self.version)
        users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        first_user, last_user = (users[0], users[-1]) if users else (-1, -1)
        if self.version == 2:
            _check_v2_tool_results(msgs, last_user)
        out = [Control(bos)]
        for i, m in enumerate(msgs):
            role = m["role"]
            if role == "user":
                out += self._user(m["content"], system, tools, i == first_user, i == last_user)
            elif role == "assistant":
                out += self._assistant(m, i < last_user, eos)
            elif role == "tool":
                out += self._tool(m, i < last_user)
            else:   # a v7 system message (older versions folded them into `system`)
                out += [Control("[SYSTEM_PROMPT]"), m["content"], Control("[/SYSTEM_PROMPT]")]
        return out

    def _user(self, content, system, tools, is_first, is_last):
        if self.version == 1:
            if is_first and system:
                content = system + BLANK_LINE + content
            return [f"[INST] {content} [/INST]"]
        out = []
        if is_last and tools:
            out += [Control("[AVAILABLE_TOOLS]"), _json([_tool_schema(t) for t in tools]),
                    Control("[/AVAILABLE_TOOLS]")]
        if is_last and system:
            content = system + BLANK_LINE + content
        return out + [Control("[INST]"), content, Control("[/INST]")]

    def _assistant(self, m, before_last_user, eos):
        content, calls = m["content"], m["tool_calls"]
        if self.version == 1:
            if calls:
                raise UnsupportedError("the mistral-v1 chat format has no tool calls")
            if not content:
                raise QinferError("an assistant message needs content")
            return [Reply(content), Control(eos)]
        if content and calls and self.version < 7:
            raise QinferError(f"the {self.name} chat format cannot have content and tool calls "
                              "in one assistant message")
        if not content and not calls:
            raise QinferError("an assistant message needs content or tool calls")
        if calls and self.version == 2 and before_last_user:
            return []    # v2 forgets tool calls of earlier turns
        out = [Reply(content.rstrip(" "))] if content else []
        if calls:
            out += [Control("[TOOL_CALLS]"), _json([self._call(c) for c in calls])]
        return out + [Control(eos)]

    def _call(self, call):
        out = {"name": call["name"], "arguments": _parse_json(call["arguments"])}
        if self.version >= 3 and call["id"] and call["id"] != "null":
            out["id"] = call["id"]
        return out

    def _tool(self, m, before_last_user):
        if self.version == 1:
            raise UnsupportedError("the mistral-v1 chat format has no tool messages")
        if self.version == 7:
            return [Control("[TOOL_RESULTS]"), _need_call_id(m), Control("[TOOL_CONTENT]"), m["content"],
                    Control("[/TOOL_RESULTS]")]
        content = _parse_json(_normalize_json(m["content"]))
        if self.version == 2:
            if before_last_user:
                return []    # v2 forgets tool results of earlier turns
            result = [{"name": m["name"], "content": content}]
        else:
            result = {"content": content, "call_id": _need_call_id(m)}
        return [Control("[TOOL_RESULTS]"), _json(result), Control("[/TOOL_RESULTS]")]


# -- normalization (mistral-common's InstructRequestNormalizer) -------------------------------------


def _join(contents):
    return BLANK_LINE.join(c for c in contents if c)


def _normalize(messages, version):
    """(system prompt or None, messages with consecutive same-role runs merged)."""
    runs = []
    for m in messages:
        if runs and runs[-1][0] == m["role"]:
            runs[-1][1].append(m)
        else:
            runs.append((m["role"], [m]))
    system = None
    if version < 7:
        system = _join(m["content"] for m in messages if m["role"] == "system") or None
    out = []
    for role, run in runs:
        if role == "user":
            out.append({"role": "user", "content": _join(m["content"] for m in run)})
        elif role == "assistant":
            calls = [_normalize_call(c) for m in run for c in (m.get("tool_calls") or [])]
            out.append({"role": "assistant", "content": _join(m.get("content") for m in run),
                        "tool_calls": calls})
        elif role == "tool":
            out.extend({"role": "tool", "content": m.get("content") or "", "name": m.get("name"),
                        "tool_call_id": m.get("tool_call_id")} for m in run)
        elif version >= 7:
            out.extend({"role": "system", "content": m["content"]} for m in run)
    if not out or (version < 7 and out[0]["role"] != "user"):
        out.insert(0, {"role": "user", "content": ""})
    return system, out


def _normalize_call(call):
    """An OpenAI tool call {"id", "type", "function": {"name", "arguments"}} as
    {"id", "name", "arguments" (a JSON string, re-serialized when it parses)}."""
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if isinstance(args, dict):
        args = json.dumps(args, ensure_ascii=False)
    return {"id": call.get("id") or "null", "name": fn.get("name"), "arguments": _normalize_json(args)}


def _normalize_json(text):
    if not text:
        return "{}"
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except json.JSONDecodeError:
        return text


def _parse_json(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _json(obj):
    return json.dumps(obj, ensure_ascii=False)


def _tool_schema(tool):
    """An OpenAI tool as mistral-common dumps it: type, then function's name,
    description ("" when absent) and parameters; "strict" left out."""
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise QinferError(f"a tool must look like {{'type': 'function', 'function': {{'name': ..., "
                          f"'parameters': ...}}}}, got {tool!r}")
    return {"type": "function", "function": {"name": fn["name"], "description": fn.get("description") or "",
                                             "parameters": fn.get("parameters") or {}}}


def _need_call_id(m):
    if not m["tool_call_id"]:
        raise QinferError("a tool message needs the 'tool_call_id' of the call it answers")
    return m["tool_call_id"]


def _check_v2_tool_results(msgs, last_user):
    """mistral-common's v2 takes one tool result per tool-call turn after the last user message."""
    calls_open, results = False, 0
    for m in msgs[max(last_user, 0):]:
        if m["role"] == "assistant":
            calls_open, results = bool(m["tool_calls"]), 0
        elif m["role"] == "tool" and calls_open:
            results += 1
            if results > 1:
                raise UnsupportedError("the mistral-v2 chat format takes one tool result per tool call turn")
        elif m["role"] != "tool":
            calls_open, results = False, 0


def parse_tool_calls(text):
    """What a model writes after [TOOL_CALLS] (a JSON list of {"name", "arguments",
    "id"?}) as OpenAI tool calls; None when it is not that. A call without an id
    gets a fresh one of 9 letters and digits, the form mistral-common requires."""
    import uuid

    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict):
        data = [data]
    if not (isinstance(data, list) and data and all(isinstance(c, dict) and isinstance(c.get("name"), str)
                                                     for c in data)):
        return None
    calls = []
    for c in data:
        args = c.get("arguments", {})
        args = args if isinstance(args, str) else _json(args)
        call_id = c.get("id") if isinstance(c.get("id"), str) and c.get("id") else uuid.uuid4().hex[:9]
        calls.append({"id": call_id, "type": "function", "function": {"name": c["name"], "arguments": args}})
    return calls


# -- choosing a format -----------------------------------------------------------------------------------

CONTROL = 3   # tokenizer.ggml.token_type of control tokens


def metadata_list(metadata, key):
    """A GGUF array as a list ([] when absent); readers return lists or numpy arrays."""
    value = metadata.get(key)
    return [] if value is None else list(value)


def control_pieces(metadata):
    """{piece: id} of the vocabulary's control tokens (the first id of a repeated piece)."""
    tokens = metadata_list(metadata, "tokenizer.ggml.tokens")
    types = metadata_list(metadata, "tokenizer.ggml.token_type")
    out = {}
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if int(ty) == CONTROL:
            out.setdefault(t, i)
    return out
V3_ADDITIONS = ("[IMG]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]")   # control tokens v3 added to v2's


def format_from_vocabulary(metadata):
    """The format a Mistral tokenizer with this vocabulary was released with.
    Sentencepiece releases differ in the control tokens each added: [TOOL_CALLS]
    (v2), [IMG]/[PREFIX]... (v3), [SYSTEM_PROMPT] (v7). Tekken files (v3 and v7)
    all list the same control tokens, so they cannot be told apart: v3 is used,
    which a v7 model still follows (its system prompt arrives in the user turn),
    while v7's [SYSTEM_PROMPT] would be untrained tokens to a v3 model."""
    if metadata.get("tokenizer.ggml.model") == "gpt2":
        return ChatFormat(3, tekken=True)
    controls = control_pieces(metadata)
    if "[SYSTEM_PROMPT]" in controls:
        return ChatFormat(7)
    if "[TOOL_CALLS]" in controls:
        return ChatFormat(3 if any(p in controls for p in V3_ADDITIONS) else 2)
    return ChatFormat(1)


def named_format(template):
    """The ChatFormat for one of llama.cpp's Mistral template names, else None."""
    spec = NAMED_FORMATS.get(template.strip()) if isinstance(template, str) else None
    return ChatFormat(*spec) if spec else None


def converter_template_name(tokenizer_file, read_file=None):
    """What llama.cpp's converter writes as tokenizer.chat_template for a Mistral
    download with this tokenizer file (conversion/mistral.py,
    get_community_chat_template): the template name of the tokenizer version,
    or None where llama.cpp has no name (v2; tekken versions other than v3 and
    v7, for which it bundles jinja files). `read_file()` -> the file's bytes,
    needed for tekken.json, whose config carries the version."""
    if tokenizer_file.endswith(".json"):
        try:
            config = json.loads(read_file()).get("config") or {}
        except (ValueError, AttributeError):
            return None   # not a tekken file: the vocabulary reader reports that
        return {"v3": "mistral-v3-tekken", "v7": "mistral-v7-tekken"}.get(str(config.get("version")))
    suffix = tokenizer_file.rsplit(".", 1)[-1]
    if tokenizer_file == "tokenizer.model" or suffix == "v1":   # a bare tokenizer.model is v1
        return "mistral-v1"
    return {"v3": "mistral-v3", "v7": "mistral-v7"}.get(suffix)
