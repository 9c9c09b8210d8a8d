"""Text generation on a loaded Model: sampling loop, stop strings, streaming,
cancellation and reuse of the KV cache across calls.

    for text in qinfer.generation.generate(model, "Once upon a time", max_tokens=64):
        print(text, end="", flush=True)

`Model.generate` calls `generate` (and holds the Model's lock while a stream
runs). The prompt is a string (tokenized with BOS, special tokens such as
[INST] recognised, as llama.cpp does) or a list of token ids.

Cache reuse: the new prompt's ids are compared with the ids already in the
Model's KV cache; the cache is truncated to the common prefix and only the rest
is evaluated (at least the last prompt token, whose logits start sampling). A
follow-up call that extends an earlier prompt + reply evaluates only what is new.

Generation ends at EOS, at a stop string (not included in the text; text that
might be the start of a stop string is held back until it is clear), after
max_tokens, when the KV cache is full (finish_reason "length"), or when
cancelled: `cancel.set()` on a threading.Event, or closing the generator,
stops it before the next token is evaluated.
"""
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .errors import QinferError
from .sampling import Sampler, SamplingParams
from .generation_text import StopMatcher, stream_decoder

PROMPT_CHUNK = 64  # prompt tokens per forward call; cancellation is checked between calls


@dataclass
class GenerationStats:
    """Filled in while a generation runs; pass one as `stats=` to read it."""

    prompt_tokens: int = 0           # tokens in the prompt
    cached_tokens: int = 0           # of which found in the KV cache (not evaluated again)
    completion_tokens: int = 0       # tokens generated (EOS not counted)
    finish_reason: Optional[str] = None   # "stop" | "length" | "cancelled"
    context_full: bool = False       # stopped because the KV cache was full
    prompt_seconds: float = 0.0
    generation_seconds: float = 0.0
    completion_ids: list = field(default_factory=list)   # the generated token ids (EOS not included)

    @property
    def prompt_eval_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens

    @property
    def prompt_tokens_per_second(self) -> float:
        return self.prompt_eval_tokens / self.prompt_seconds if self.prompt_seconds else 0.0

    @property
    def generation_tokens_per_second(self) -> float:
        return self.completion_tokens / self.generation_seconds if self.generation_seconds else 0.0


def prompt_ids(model, prompt, add_bos=None):
    """Token ids of a prompt given as text or as ids, checked against the vocabulary.
    add_bos=None: as the file says (tokenizer.ggml.add_bos_token, true for Mistral)."""
    if isinstance(prompt, str):
        tok = model.tokenizer
        if add_bos is None:
            add_bos = getattr(tok, "add_bos", True)
        ids = list(tok.encode(prompt, add_bos=add_bos, parse_special=True))
    else:
        try:
            ids = [int(t) for t in prompt]
        except (TypeError, ValueError):
            raise QinferError("prompt must be a string or a sequence of token ids") from None
    if not ids:
        raise QinferError("the prompt is empty: give some text or token ids")
    bad = [t for t in ids if not 0 <= t < model.n_vocab]
    if bad:
        raise QinferError(f"prompt token id {bad[0]} is outside the vocabulary (0..{model.n_vocab - 1})")
    if len(ids) >= model.n_ctx:
        raise QinferError(f"context full: the prompt has {len(ids)} tokens and the context holds "
                          f"{model.n_ctx}; load the model with a larger n_ctx or shorten the prompt")
    return ids


def generate(model, prompt, max_tokens=128, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
             repeat_penalty=1.1, seed=0, stop=("\n\n",), stream=True, cancel=None, *,
             frequency_penalty=0.0, presence_penalty=0.0, penalty_last_n=64, add_bos=None,
             stats=None):
    """Continue `prompt`. stream=True: a generator of text chunks; stream=False: the text.

    Sampling parameters are llama.cpp's (see qinfer.sampling); temperature 0 is
    greedy; seed=None draws a random seed. `stats` (a GenerationStats) receives
    token counts, timings and the finish reason."""
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                            presence_penalty=presence_penalty, penalty_last_n=penalty_last_n,
                            seed=seed)
    if not (isinstance(max_tokens, (int, np.integer)) and max_tokens >= 0):
        raise QinferError(f"max_tokens must be an integer >= 0, got {max_tokens!r}")
    if isinstance(stop, str):
        stop = [stop]
    stops = [s for s in (stop or ()) if s]
    ids = prompt_ids(model, prompt, add_bos=add_bos)
    stats = stats if stats is not None else GenerationStats()
    gen = _run(model, ids, params, stops, int(max_tokens), cancel, stats)
    return gen if stream else "".join(gen)


def _common_prefix(a, b):
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.nonzero(np.asarray(a[:n]) != np.asarray(b[:n]))[0]
    return int(diff[0]) if diff.size else n


def _prefill(model, ids, cancel, stats):
    """Evaluate the part of `ids` not already cached; logits of the last token,
    or None if cancelled first."""
    keep = min(_common_prefix(model.cached_ids, ids), len(ids) - 1)
    if keep < model.n_past:
        model.truncate(keep)
    stats.cached_tokens = keep
    logits = None
    for a in range(keep, len(ids), PROMPT_CHUNK):
        if cancel is not None and cancel.is_set():
            return None
        logits = model.eval(ids[a:a + PROMPT_CHUNK], last_only=True)
    return logits[-1]


def _run(model, ids, params, stops, max_tokens, cancel, stats):
    tokenizer = model.tokenizer
    eos = tokenizer.eos_id
    stats.__init__(prompt_tokens=len(ids))   # a stats object may be reused across calls
    t0 = time.perf_counter()
    logits = _prefill(model, ids, cancel, stats)
    t1 = time.perf_counter()
    stats.prompt_seconds = t1 - t0
    sampler = Sampler(params)
    sampler.accept(ids)   # the prompt counts for the repetition penalties (llama.cpp does so)
    decoder = stream_decoder(tokenizer, ids)
    stop = StopMatcher(stops)
    reason = "cancelled" if logits is None else None
    expected_past = model.n_past
    try:
        while reason is None:
            if stats.completion_tokens >= max_tokens:
                reason = "length"
                break
            if cancel is not None and cancel.is_set():
                reason = "cancelled"
                break
            token = sampler.sample(logits)
            if token == eos:
                reason = "stop"
                break
            stats.completion_tokens += 1
            stats.completion_ids.append(int(token))
            text, hit = stop.push(decoder.feed(token))
            if text:
                yield text
            if hit:
                reason = "stop"
                break
            if stats.completion_tokens >= max_tokens:
                reason = "length"   # no need to evaluate a token nothing will follow
                break
            if model.n_past >= model.n_ctx:
                reason, stats.context_full = "length", True
                break
            if cancel is not None and cancel.is_set():
                reason = "cancelled"
                break
            if model.n_past != expected_past:
                raise QinferError("the Model's cache changed while this generation was paused "
                                  "(another call used the Model); generation stopped")
            logits = model.eval([token], last_only=True)[-1]
            expected_past += 1
        if reason != "stop" or not stop.matched:
            tail = stop.flush(decoder.flush())
            if stop.matched and reason == "length":
                reason = "stop"     # a stop string that was still undecided completed the text
            if tail:
                yield tail
    finally:
        # Also reached when the consumer closes the generator (GeneratorExit).
        stats.finish_reason = reason or "cancelled"
        stats.generation_seconds = time.perf_counter() - t1


# -- OpenAI-style chat ---------------------------------------------------------------------------------

ROLES = ("system", "user", "assistant", "tool")


def _check_tool_calls(i, calls):
    if not isinstance(calls, (list, tuple)) or not all(
            isinstance(c, dict) and isinstance(c.get("function"), dict)
            and isinstance(c["function"].get("name"), str)
            and isinstance(c["function"].get("arguments", ""), (str, dict)) for c in calls):
        raise QinferError(f"message {i}: tool_calls must be a list of {{'id': ..., 'type': 'function', "
                          f"'function': {{'name': str, 'arguments': str}}}}, got {calls!r}")
    return [dict(c) for c in calls]


def _check_messages(messages):
    """OpenAI-style messages, checked; returns copies with the keys the chat formats read."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise QinferError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        calls = m.get("tool_calls") if role == "assistant" else None
        # An assistant message that only calls tools has content None (OpenAI's form).
        if role not in ROLES or not (isinstance(m.get("content"), str) or (calls and m.get("content") is None)):
            raise QinferError(f"message {i} must be a dict with 'role' in {ROLES} and a string "
                              f"'content', got {m!r}")
        clean = {"role": role, "content": m["content"]}
        if calls:
            clean["tool_calls"] = _check_tool_calls(i, calls)
        if role == "tool":
            clean.update((k, m[k]) for k in ("tool_call_id", "name") if isinstance(m.get(k), str))
        out.append(clean)
    if out[-1]["role"] not in ("user", "tool"):
        raise QinferError("the last message must come from the user (or be a tool result)")
    return out


def _check_tools(tools):
    if tools is not None and not (isinstance(tools, (list, tuple)) and all(isinstance(t, dict) for t in tools)):
        raise QinferError("tools must be a list of OpenAI tool dicts "
                          "({'type': 'function', 'function': {'name', 'description', 'parameters'}})")
    return list(tools) if tools else None


def chat_prompt_ids(model, messages, tools=None):
    """Token ids of the conversation in the model's chat format, ready for the
    assistant's reply. An answer this model gave (model.chat_replies), where the
    conversation repeats it after the same prompt, keeps the ids it was generated as."""
    from .chat_template import encode

    messages, tools = _check_messages(messages), _check_tools(tools)
    try:
        return encode(model.metadata, model.tokenizer, messages, tools,
                      replies=getattr(model, "chat_replies", None))
    except QinferError as exc:
        path = getattr(model, "path", None)
        if path:   # name the file whose format or vocabulary could not take this conversation
            raise type(exc)(f"{path}: {exc}") from None
        raise


def _model_name(model):
    import os

    return model.metadata.get("general.name") or os.path.basename(getattr(model, "path", "model"))


def chat(model, messages, stream=False, max_tokens=512, temperature=0.8, top_k=40, top_p=0.95,
         min_p=0.05, repeat_penalty=1.1, seed=0, stop=(), cancel=None, stats=None, tools=None, **sampling):
    """Answer the last user message of `messages` (OpenAI chat format; `tools`:
    OpenAI tool schemas, for chat formats that have tools).

    stream=False: a `chat.completion` dict; stream=True: a generator of
    `chat.completion.chunk` dicts (the first carries the role, the last the
    finish_reason and the usage). Earlier turns already in the KV cache are
    not evaluated again: each reply is remembered (model.chat_replies) with
    the token ids it was generated as, and a later turn that repeats it after
    the same prompt uses those ids, so the cache matches the whole history.
    With tools, a reply in which the model writes its [TOOL_CALLS] token comes
    back as OpenAI `tool_calls` (finish_reason "tool_calls"). Otherwise
    finish_reason: "stop" (EOS or a stop string), "length" (max_tokens or a
    full context) or "cancelled"."""
    import uuid

    # The two-argument call is the hook tests replace; tools are passed only when given.
    ids = chat_prompt_ids(model, messages, **({"tools": tools} if tools else {}))
    stats = stats if stats is not None else GenerationStats()
    pieces = generate(model, ids, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                      top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty, seed=seed,
                      stop=stop, stream=True, cancel=cancel, stats=stats, **sampling)
    head = {"id": "chatcmpl-" + uuid.uuid4().hex, "created": int(time.time()), "model": _model_name(model)}
    text = _remembered(model, ids, _strip_leading_space(pieces), stats)
    calls = _ToolCalls(model, stats) if tools else None
    if calls is not None and calls.token is not None:
        text = calls.watch(text)
    if stream:
        return _chunks(head, text, stats, calls)
    content = "".join(text)
    found = calls.parsed() if calls is not None else None
    message = {"role": "assistant", "content": content or None, "tool_calls": found} if found else \
        {"role": "assistant", "content": content + (calls.hidden_text() if calls is not None else "")}
    return {**head, "object": "chat.completion",
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if found else stats.finish_reason}],
            "usage": _usage(stats)}


class _ToolCalls:
    """Watches a reply for the [TOOL_CALLS] control token: the text from there
    on is the calls' JSON, held back from the content and parsed at the end."""

    def __init__(self, model, stats):
        from .chat_formats import control_pieces

        self.model, self.stats = model, stats
        self.token = control_pieces(model.metadata).get("[TOOL_CALLS]")
        self.seen, self.at, self.hidden = 0, None, []

    def watch(self, pieces):
        try:
            for text in pieces:
                ids = self.stats.completion_ids
                if self.at is None and self.token in ids[self.seen:]:
                    self.at = ids.index(self.token, self.seen)
                self.seen = len(ids)
                if self.at is None:
                    yield text
                else:
                    self.hidden.append(text)
        finally:
            pieces.close()

    def parsed(self):
        """OpenAI tool calls, or None (no [TOOL_CALLS] token, or JSON that is not calls)."""
        from .chat_formats import parse_tool_calls

        ids = self.stats.completion_ids
        if self.token is None or self.token not in ids:
            return None
        return parse_tool_calls(self.model.tokenizer.decode(ids[ids.index(self.token) + 1:]))

    def hidden_text(self):
        return "".join(self.hidden)


REMEMBERED_REPLIES = 32   # replies kept per Model for cache reuse (a long chat's latest turns)


def _remembered(model, prompt, pieces, stats):
    """Pass the reply through; once it ends, remember its ids and text under
    its prompt in model.chat_replies, when the ids spell exactly that text (not
    so after a stop string, whose tokens are generated but not returned)."""
    shown = []
    try:
        for text in pieces:
            shown.append(text)
            yield text
    finally:
        pieces.close()
        content, ids = "".join(shown), tuple(stats.completion_ids)
        replies = getattr(model, "chat_replies", None)
        if replies is None:
            replies = model.chat_replies = {}
        if ids and model.tokenizer.decode(ids).lstrip() == content:
            replies.pop(tuple(prompt), None)
            replies[tuple(prompt)] = (ids, content)
            while len(replies) > REMEMBERED_REPLIES:
                del replies[next(iter(replies))]   # dicts keep insertion order: the oldest goes


def _strip_leading_space(pieces):
    """Replies start after [/INST]; SentencePiece's word-boundary space before
    their first word is not part of the answer."""
    started = False
    try:
        for text in pieces:
            if not started:
                text = text.lstrip()
                started = bool(text)
            if text:
                yield text
    finally:
        pieces.close()


def _usage(stats):
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens}


def _chunks(head, pieces, stats, calls=None):
    def chunk(delta, finish=None):
        return {**head, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    try:
        yield chunk({"role": "assistant", "content": ""})
        for text in pieces:
            yield chunk({"content": text})
    finally:
        pieces.close()
    found = calls.parsed() if calls is not None else None
    if found:
        yield chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(found)]})
    elif calls is not None and calls.hidden_text():
        yield chunk({"content": calls.hidden_text()})
    yield {**chunk({}, "tool_calls" if found else stats.finish_reason), "usage": _usage(stats)}
