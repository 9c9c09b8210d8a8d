"""qinfer.generation on a scripted fake model: stop strings, EOS, max_tokens,
cancellation, KV-cache reuse counts, context limits, streaming of multi-byte
characters. (Real-model checks against llama.cpp: test_generation_model.py.)"""
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qinfer.errors import QinferError
from qinfer.generation import GenerationStats, generate
from qinfer.generation_text import StopMatcher

BOS, EOS, N_SPECIAL = 1, 2, 3


class ByteTokenizer:
    """One token per UTF-8 byte (id = 3 + byte); 0 <unk>, 1 <s>, 2 </s>."""

    bos_id, eos_id = BOS, EOS

    def encode(self, text, add_bos=True, parse_special=False):
        return [BOS] * add_bos + [N_SPECIAL + b for b in text.encode("utf-8")]

    def decode(self, ids):
        return bytes(i - N_SPECIAL for i in ids if i >= N_SPECIAL).decode("utf-8", "replace")


class ScriptedModel:
    """Implements the part of qinfer.Model that generation uses. The logits at
    cache position p put all the weight on script[p + 1] (EOS past the end),
    so a prompt equal to script[:k] is continued with script[k:]."""

    def __init__(self, script, n_ctx=512, delay=0.0):
        self.tokenizer = ByteTokenizer()
        self.script = self.tokenizer.encode(script)
        self.n_ctx, self.n_vocab, self.delay = n_ctx, N_SPECIAL + 256, delay
        self._ids = []
        self.evaluated = 0         # tokens run through eval, over the model's life
        self.eval_times = []

    @property
    def n_past(self):
        return len(self._ids)

    @property
    def cached_ids(self):
        return tuple(self._ids)

    def truncate(self, n):
        assert 0 <= n <= len(self._ids)
        del self._ids[n:]

    def eval(self, ids, last_only=False):
        if self.n_past + len(ids) > self.n_ctx:
            raise QinferError("context full")
        if self.delay:
            time.sleep(self.delay)
        self.eval_times.append(time.perf_counter())
        rows = []
        for t in ids:
            self._ids.append(int(t))
            p = len(self._ids) - 1
            nxt = self.script[p + 1] if p + 1 < len(self.script) else EOS
            row = np.zeros(self.n_vocab, np.float32)
            row[nxt] = 30.0   # probability ~1 - 1e-11 per token: deterministic at any temperature
            rows.append(row)
        self.evaluated += len(ids)
        return np.array(rows[-1:] if last_only else rows)


GREEDY = dict(temperature=0.0, repeat_penalty=1.0)


def test_continues_the_prompt_and_stops_at_the_stop_string():
    m = ScriptedModel("Hello world. This is fine.\n\nMore text")
    stats = GenerationStats()
    out = generate(m, "Hello", stream=False, stats=stats, **GREEDY)
    assert out == " world. This is fine."
    assert stats.finish_reason == "stop" and stats.completion_tokens == len(out) + 2


def test_eos_ends_generation():
    m = ScriptedModel("abc def")
    stats = GenerationStats()
    assert generate(m, "abc", stream=False, stats=stats, stop=[], **GREEDY) == " def"
    assert stats.finish_reason == "stop" and stats.completion_tokens == 4


def test_max_tokens_ends_generation_without_evaluating_the_last_token():
    m = ScriptedModel("0123456789" * 3)
    stats = GenerationStats()
    assert generate(m, "01", max_tokens=5, stream=False, stats=stats, **GREEDY) == "23456"
    assert stats.finish_reason == "length" and stats.completion_tokens == 5
    assert m.n_past == 1 + 2 + 4   # BOS + prompt + generated tokens except the last one
    assert generate(m, "01", max_tokens=0, stream=False, **GREEDY) == ""


@given(st.text(alphabet="ab\n .", max_size=40), st.lists(st.text(alphabet="ab\n .", min_size=1, max_size=4), max_size=3))
def test_stop_strings_cut_exactly_at_the_first_match(continuation, stops):
    m = ScriptedModel("P" + continuation)
    streamed = list(generate(m, "P", stop=stops, max_tokens=100, **GREEDY))
    hits = [i for s in stops if (i := continuation.find(s)) >= 0]
    expect = continuation[:min(hits)] if hits else continuation
    assert "".join(streamed) == expect
    assert all(streamed)   # no empty chunks


@given(st.lists(st.text(alphabet="xy\n", max_size=5), max_size=12), st.lists(st.text(alphabet="xy\n", min_size=1, max_size=4), max_size=3))
def test_stop_matcher_holds_back_only_possible_stop_prefixes(chunks, stops):
    sm = StopMatcher(stops)
    shown, full = "", ""
    for c in chunks:
        full += c
        out, hit = sm.push(c)
        shown += out
        if hit:
            break
        # what is held back could still become a stop string...
        held = full[len(shown):]
        assert held == "" or any(s.startswith(held) and s != held for s in stops)
        # ...and nothing shown could
        assert not any(s.startswith(full[i:]) for s in stops for i in range(len(shown)))
    if sm.matched is None:
        shown += sm.flush()     # the end decides what was held back
    hits = [i for s in stops if (i := full.find(s)) >= 0]
    assert shown == (full[:min(hits)] if hits else full)
    assert (sm.matched is not None) == bool(hits)


def test_multibyte_characters_are_streamed_whole():
    text = "x é € 😀 日本語 done"
    m = ScriptedModel("P" + text)
    chunks = list(generate(m, "P", stop=[], **GREEDY))
    assert "".join(chunks) == text
    assert not any("\ufffd" in c for c in chunks)
    assert "😀" in chunks and "€" in chunks   # a 4-byte and a 3-byte character, each one chunk


def test_prompt_as_token_ids():
    m = ScriptedModel("ab cd")
    ids = m.tokenizer.encode("ab")
    assert generate(m, ids, stream=False, stop=[], **GREEDY) == " cd"


# -- KV-cache reuse ------------------------------------------------------------------------------------


def test_same_prompt_again_evaluates_only_its_last_token():
    m = ScriptedModel("The quick brown fox jumps over the lazy dog")
    stats = GenerationStats()
    generate(m, "The quick", max_tokens=3, stream=False, stats=stats, **GREEDY)
    assert stats.cached_tokens == 0 and m.evaluated == 10 + 2   # BOS + 9 prompt bytes, 2 generated
    before = m.evaluated
    generate(m, "The quick", max_tokens=3, stream=False, stats=stats, **GREEDY)
    assert stats.cached_tokens == 9 and m.evaluated - before == 1 + 2


def test_follow_up_prompt_evaluates_only_the_new_tokens():
    m = ScriptedModel("The quick brown fox jumps over the lazy dog")
    first = generate(m, "The quick", max_tokens=6, stream=False, **GREEDY)
    assert first == " brown"
    cached = m.n_past   # prompt + reply except its last token
    before = m.evaluated
    stats = GenerationStats()
    prompt2 = "The quick brown fox"
    generate(m, prompt2, max_tokens=2, stream=False, stats=stats, **GREEDY)
    n2 = len(m.tokenizer.encode(prompt2))
    assert stats.cached_tokens == cached
    assert stats.prompt_eval_tokens == n2 - cached
    assert m.evaluated - before == (n2 - cached) + 1   # new prompt tokens + 1 generated


def test_a_different_prompt_truncates_to_the_common_prefix():
    m = ScriptedModel("abcdefgh")
    generate(m, "abcdef", max_tokens=1, stream=False, **GREEDY)
    stats = GenerationStats()
    generate(m, "abXY", max_tokens=1, stream=False, stats=stats, **GREEDY)
    assert stats.cached_tokens == 3   # BOS, a, b
    assert m.cached_ids[:5] == tuple(m.tokenizer.encode("abXY"))


def test_cache_changed_by_another_call_while_paused_is_an_error():
    m = ScriptedModel("abcdefghijklmnop")
    gen = generate(m, "abc", stop=[], **GREEDY)
    assert next(gen) == "d"
    m.eval([5])   # someone else uses the model between two tokens
    with pytest.raises(QinferError, match="cache changed"):
        list(gen)


# -- context limits -------------------------------------------------------------------------------------


def test_prompt_that_does_not_fit_is_refused_before_any_compute():
    m = ScriptedModel("x" * 100, n_ctx=16)
    with pytest.raises(QinferError, match="context full: the prompt has 16 tokens"):
        generate(m, "x" * 15, **GREEDY)
    assert m.evaluated == 0


def test_generation_stops_when_the_context_is_full():
    m = ScriptedModel("x" * 100, n_ctx=16)
    stats = GenerationStats()
    out = generate(m, "xxxx", max_tokens=100, stream=False, stats=stats, **GREEDY)
    assert stats.finish_reason == "length" and stats.context_full
    assert m.n_past == 16 and len(out) == 16 - 5 + 1   # fills the cache, then one last sampled token


# -- cancellation -------------------------------------------------------------------------------------------


def test_event_set_by_the_consumer_stops_before_the_next_token():
    m = ScriptedModel("P" + "z" * 200)
    cancel = threading.Event()
    stats = GenerationStats()
    gen = generate(m, "P", stop=[], cancel=cancel, stats=stats, **GREEDY)
    got = [next(gen), next(gen)]
    evaluated = m.evaluated
    cancel.set()
    assert list(gen) == []
    assert m.evaluated == evaluated and stats.finish_reason == "cancelled" and got == ["z", "z"]


def test_event_set_from_another_thread_stops_within_one_token():
    m = ScriptedModel("P" + "z" * 400, delay=0.01)
    cancel, started = threading.Event(), threading.Event()
    stats = GenerationStats()
    out = []

    def consume():
        for text in generate(m, "P", stop=[], cancel=cancel, stats=stats, **GREEDY):
            out.append(text)
            started.set()

    worker = threading.Thread(target=consume)
    worker.start()
    assert started.wait(10)
    time.sleep(0.05)
    cancel.set()
    t_cancel = time.perf_counter()
    worker.join(5)
    assert not worker.is_alive() and stats.finish_reason == "cancelled"
    # at most the eval already running when the event was set finishes afterwards
    assert sum(t > t_cancel for t in m.eval_times) <= 1
    assert 0 < len(out) < 400


class CancellingModel(ScriptedModel):
    """Sets `cancel` itself during its second forward call, as another thread could."""

    def __init__(self, script, cancel, **kw):
        super().__init__(script, **kw)
        self.cancel, self.calls = cancel, 0

    def eval(self, ids, last_only=False):
        self.calls += 1
        if self.calls == 2:
            self.cancel.set()
        return super().eval(ids, last_only)


def test_cancel_during_a_long_prompt_stops_between_chunks():
    from qinfer.generation import PROMPT_CHUNK

    cancel = threading.Event()
    m = CancellingModel("y" * 400, cancel, n_ctx=1024)
    stats = GenerationStats()
    assert generate(m, "y" * 390, stream=False, cancel=cancel, stats=stats, **GREEDY) == ""
    assert stats.finish_reason == "cancelled" and m.evaluated == 2 * PROMPT_CHUNK


def test_closing_the_generator_stops_it():
    m = ScriptedModel("P" + "z" * 50)
    stats = GenerationStats()
    gen = generate(m, "P", stop=[], stats=stats, **GREEDY)
    next(gen)
    evaluated = m.evaluated
    gen.close()
    assert stats.finish_reason == "cancelled" and m.evaluated == evaluated


# -- sampling through generate ----------------------------------------------------------------------------


class NoisyModel(ScriptedModel):
    """Same interface, random logits (seeded by position): sampling decides."""

    def eval(self, ids, last_only=False):
        base = self.n_past
        super().eval(ids, last_only)
        rows = [np.random.default_rng(base + i).standard_normal(self.n_vocab).astype(np.float32) * 3
                for i in range(len(ids))]
        for r in rows:
            r[:N_SPECIAL] = -1e9   # keep to printable bytes: no EOS
            r[N_SPECIAL + 128:] = -1e9
        return np.array(rows[-1:] if last_only else rows)


def test_seeded_sampling_is_reproducible_and_seed_dependent():
    runs = {}
    for seed in (1, 1, 2):
        m = NoisyModel("")
        runs.setdefault(seed, []).append(
            generate(m, "start", max_tokens=30, seed=seed, stop=[], stream=False, temperature=1.0))
    assert runs[1][0] == runs[1][1]
    assert runs[1][0] != runs[2][0]


@pytest.mark.parametrize("bad, match", [(dict(max_tokens=-1), "max_tokens"),
                                        (dict(temperature=-0.5), "temperature"),
                                        (dict(top_p=0.0), "top_p")])
def test_bad_arguments_fail_at_the_call(bad, match):
    m = ScriptedModel("abc")
    with pytest.raises(QinferError, match=match):
        generate(m, "a", **bad)   # stream=True: still raised before the first next()
    assert m.evaluated == 0


def test_prompt_errors():
    m = ScriptedModel("abc")
    with pytest.raises(QinferError, match="empty"):
        generate(m, [])
    with pytest.raises(QinferError, match="outside the vocabulary"):
        generate(m, [1, 100000])


# -- chat ------------------------------------------------------------------------------------------------


@pytest.fixture
def simple_template(monkeypatch):
    """Mistral-v1-like prompts for the byte tokenizer. The real chat templates
    belong to qinfer.chat_template and are tested there and on real models."""
    from qinfer import generation

    def render_ids(model, messages):
        generation._check_messages(messages)
        text = "".join(f"[INST] {m['content']} [/INST]" if m["role"] == "user" else f" {m['content']}\x00"
                       for m in messages)
        return model.tokenizer.encode(text)

    monkeypatch.setattr(generation, "chat_prompt_ids", render_ids)
    return render_ids


def chat_model(render_ids, messages, reply):
    """A scripted model that answers `messages` with `reply`, then EOS."""
    m = ScriptedModel("")
    m.script = list(render_ids(m, messages)) + m.tokenizer.encode(reply, add_bos=False)
    m.metadata = {"general.name": "scripted"}
    return m


def test_chat_returns_an_openai_completion(simple_template):
    from qinfer.generation import chat

    messages = [{"role": "user", "content": "Hi"}]
    m = chat_model(simple_template, messages, " Hello, you.")
    out = chat(m, messages, temperature=0)
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    assert out["model"] == "scripted" and isinstance(out["created"], int)
    assert out["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello, you."},
                               "finish_reason": "stop"}]
    n_prompt = len(simple_template(m, messages))
    assert out["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": len(" Hello, you."),
                            "total_tokens": n_prompt + len(" Hello, you.")}


def test_chat_stream_chunks(simple_template):
    from qinfer.generation import chat

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    m = chat_model(simple_template, messages, " Hello there.")
    chunks = list(chat(m, messages, stream=True, temperature=0, max_tokens=8))
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello t"
    last = chunks[-1]
    assert last["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    assert last["usage"]["completion_tokens"] == 8


def test_multi_turn_chat_evaluates_only_the_new_tokens(simple_template):
    from qinfer.generation import GenerationStats, chat

    turn1 = [{"role": "user", "content": "What is a list?"}]
    m = chat_model(simple_template, turn1, " A sequence.")
    reply = chat(m, turn1, temperature=0)["choices"][0]["message"]["content"]
    ids1 = simple_template(m, turn1)
    assert reply == "A sequence." and m.n_past == len(ids1) + len(" A sequence.")
    turn2 = turn1 + [{"role": "assistant", "content": reply}, {"role": "user", "content": "And a dict?"}]
    ids2 = simple_template(m, turn2)
    before, stats = m.evaluated, GenerationStats()
    chat(m, turn2, temperature=0, stats=stats)
    # turn 1's prompt and reply were in the cache: only turn 2's own tokens ran
    # (the scripted model answers turn 2 with EOS at once: no reply tokens)
    assert stats.cached_tokens == len(ids1) + len(" A sequence.")
    assert m.evaluated - before == len(ids2) - stats.cached_tokens == stats.prompt_eval_tokens


@pytest.mark.parametrize("messages, match", [
    ([], "non-empty list"),
    ([{"role": "user"}], "message 0"),
    ([{"role": "robot", "content": "x"}], "message 0"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "last message"),
])
def test_chat_refuses_malformed_messages(simple_template, messages, match):
    from qinfer.generation import chat

    with pytest.raises(QinferError, match=match):
        chat(ScriptedModel(""), messages)


# -- incremental detokenization -----------------------------------------------------------------------


class PieceTokenizer:
    """SentencePiece-like decoding: '▁' is a space, <0xXX> pieces are bytes,
    control tokens print nothing and the text's first space is dropped."""

    pieces = ["<s>", "[/INST]", "▁The", "▁cat", "s", ".", "▁", "<0xE2>", "<0x82>", "<0xAC>", "<0xF0>",
              "<0x9F>", "<0x98>", "<0x80>", "é"]

    def decode(self, ids):
        out = b""
        for i in ids:
            p = self.pieces[i]
            if p in ("<s>", "[/INST]"):
                continue
            out += bytes([int(p[3:5], 16)]) if p.startswith("<0x") else p.replace("▁", " ").encode()
        text = out.decode("utf-8", "replace")
        return text[1:] if text.startswith(" ") else text


@given(st.lists(st.integers(0, len(PieceTokenizer.pieces) - 1), max_size=3),
       st.lists(st.sampled_from([[2], [3], [4], [5], [6], [14], [7, 8, 9], [10, 11, 12, 13], [0], [1]]),
                max_size=10))
def test_stream_decoder_equals_the_full_decode(context, words):
    from qinfer.generation_text import stream_decoder

    tok = PieceTokenizer()
    ids = [i for w in words for i in w]   # whole characters only: the full text has no U+FFFD
    dec = stream_decoder(tok, context)
    chunks = [dec.feed(i) for i in ids] + [dec.flush()]
    last = list(context)[-1:]
    assert "".join(chunks) == tok.decode(last + ids)[len(tok.decode(last)):]
    assert not any("\ufffd" in c for c in chunks)


def test_stream_decoder_keeps_the_space_after_a_word_and_drops_it_after_a_control_token():
    from qinfer.generation_text import stream_decoder

    tok = PieceTokenizer()
    assert stream_decoder(tok, [2]).feed(3) == " cat"      # "The" + " cat"
    assert stream_decoder(tok, [1]).feed(3) == "cat"       # "[/INST]" + "cat": the reply's start
