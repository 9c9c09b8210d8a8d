"""Chat formats on a real model: the bundled demo model converted by qinfer.
Its prompts equal mistral-common's for the demo's tokenizer file, and a
multi-turn chat evaluates only what each turn adds, in every Mistral format
the demo vocabulary can express."""
import os
import re
import tarfile

import numpy as np
import pytest

import qinfer
from qinfer.chat_template import chat_format
from qinfer.cli.demo import DEMO_TARBALL, bundled
from qinfer.generation import GenerationStats, chat_prompt_ids

mistral_common = pytest.importorskip("mistral_common")
from mistral_common.protocol.instruct.request import ChatCompletionRequest  # noqa: E402
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer  # noqa: E402

QUESTIONS = ["What does the os.path module do?", "And the json module?", "Thanks!"]


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo-Q8_0.gguf"
    qinfer.convert(bundled(DEMO_TARBALL), str(out), type="Q8_0")
    return str(out)


@pytest.fixture(scope="module")
def demo_mistral_tokenizer(tmp_path_factory):
    """mistral-common's tokenizer for the demo download's own tokenizer.model
    (a bare tokenizer.model, which mistral-common reads as v1)."""
    folder = tmp_path_factory.mktemp("demo-tokenizer")
    with tarfile.open(bundled(DEMO_TARBALL)) as tf:
        data = tf.extractfile("tokenizer.model").read()
    path = os.path.join(folder, "tokenizer.model")
    with open(path, "wb") as f:
        f.write(data)
    return MistralTokenizer.from_file(path)


def test_demo_prompts_equal_mistral_common(gguf, demo_mistral_tokenizer):
    model = qinfer.load(gguf, n_ctx=512)
    assert chat_format(model.metadata).name == "mistral-v1"
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTIONS[0]},
                    {"role": "assistant", "content": "It joins and splits paths."},
                    {"role": "user", "content": QUESTIONS[1]}]
    for n in (2, 4):
        ref = demo_mistral_tokenizer.encode_chat_completion(ChatCompletionRequest(messages=conversation[:n]))
        assert chat_prompt_ids(model, conversation[:n]) == ref.tokens


@pytest.mark.parametrize("template", [None, "mistral-v3", "mistral-v7"])
def test_multi_turn_chat_evaluates_only_new_tokens(gguf, template):
    """Three turns; each reply goes back into the history as the model wrote it.
    The demo vocabulary has [INST]/[/INST] but no tool or system-prompt tokens,
    so v3 and v7 are exercised without those (v2/v3 move the system prompt and
    tools to the last user message every turn: no format-preserving reuse there)."""
    model = qinfer.load(gguf, n_ctx=512)
    if template:
        model.metadata = {**model.metadata, "tokenizer.chat_template": template}
    messages, history, previous = [], [], None
    for turn, question in enumerate(QUESTIONS):
        messages.append({"role": "user", "content": question})
        ids = chat_prompt_ids(model, messages)
        # The history is the earlier prompt and the reply as generated.
        assert ids[:len(history)] == history
        cached_before = model.n_past
        stats = GenerationStats()
        stream = turn == 1   # one streamed turn: it must remember its reply too
        out = model.chat(messages, max_tokens=12, temperature=0, stats=stats, stream=stream)
        if stream:
            reply = "".join(c["choices"][0]["delta"].get("content", "") for c in out)
        else:
            reply = out["choices"][0]["message"]["content"]
        assert reply.strip() and stats.prompt_tokens == len(ids)
        # All that was cached is reused (no position dropped and evaluated again):
        # the previous prompt and reply, less the reply's last token when
        # max_tokens ended it before it was evaluated.
        if turn:
            assert cached_before == len(history) - (previous.finish_reason == "length")
        assert stats.cached_tokens == cached_before
        assert stats.prompt_eval_tokens == len(ids) - cached_before
        history, previous = ids + stats.completion_ids, stats
        messages.append({"role": "assistant", "content": reply})


# -- tool calls in replies, on a scripted model with Mistral's v3 vocabulary ----------------------------


class ScriptedChatModel:
    """The part of qinfer.Model that chat() uses, with a real v3 vocabulary:
    at cache position p the logits put all weight on script[p + 1] (EOS after
    the script), so a prompt equal to script[:k] is answered with script[k:]."""

    def __init__(self, metadata, tokenizer, script):
        self.metadata, self.tokenizer, self.script = metadata, tokenizer, list(script)
        self.n_vocab, self.n_ctx = len(metadata["tokenizer.ggml.tokens"]), 1024
        self._ids = []

    n_past = property(lambda self: len(self._ids))
    cached_ids = property(lambda self: tuple(self._ids))

    def truncate(self, n):
        del self._ids[n:]

    def eval(self, ids, last_only=False):
        rows = []
        for t in ids:
            self._ids.append(int(t))
            p = len(self._ids)
            row = np.zeros(self.n_vocab, np.float32)
            row[self.script[p] if p < len(self.script) else self.tokenizer.eos_id] = 30.0
            rows.append(row)
        return np.array(rows[-1:] if last_only else rows)


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}
CALL_JSON = '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'


@pytest.fixture(scope="module")
def v3():
    from qinfer.convert.spm_metadata import spm_metadata
    from qinfer.tokenizer import from_gguf

    path = os.path.join(os.path.dirname(mistral_common.__file__), "data",
                        "mistral_instruct_tokenizer_240323.model.v3")
    data = open(path, "rb").read()
    v = spm_metadata(data, 32768, "v3")
    md = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": v["tokens"],
          "tokenizer.ggml.scores": v["scores"], "tokenizer.ggml.token_type": v["types"],
          "tokenizer.ggml.bos_token_id": v["bos"], "tokenizer.ggml.eos_token_id": v["eos"]}
    return md, from_gguf(md), MistralTokenizer.from_file(path)


def tool_call_model(v3, messages, tools=(WEATHER,)):
    """A model that answers `messages` (asked with `tools`) with a [TOOL_CALLS] reply."""
    md, tok, _ = v3
    prompt = chat_prompt_ids(ScriptedChatModel(md, tok, []), messages, tools=list(tools))
    calls_id = md["tokenizer.ggml.tokens"].index("[TOOL_CALLS]")
    return ScriptedChatModel(md, tok, prompt + [calls_id] + tok.encode(CALL_JSON, add_bos=False))


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_reply_comes_back_as_openai_tool_calls(v3, stream):
    from qinfer.generation import chat

    messages = [{"role": "user", "content": "Weather in Paris?"}]
    model = tool_call_model(v3, messages)
    out = chat(model, messages, tools=[WEATHER], temperature=0, stream=stream)
    if stream:
        chunks = list(out)
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == ""
        calls = [c for ch in chunks for c in ch["choices"][0]["delta"].get("tool_calls", [])]
        assert [c.pop("index") for c in calls] == [0]
        finish = chunks[-1]["choices"][0]["finish_reason"]
    else:
        message = out["choices"][0]["message"]
        assert message["content"] is None
        calls, finish = message["tool_calls"], out["choices"][0]["finish_reason"]
    assert finish == "tool_calls"
    assert len(calls) == 1 and re.fullmatch(r"[0-9a-f]{9}", calls[0]["id"])
    assert calls[0]["type"] == "function"
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    # The call goes back into the conversation as mistral-common would encode it.
    md, tok, mt = v3
    follow = messages + [{"role": "assistant", "content": None, "tool_calls": calls},
                         {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temp": 21}'}]
    ref = mt.encode_chat_completion(ChatCompletionRequest(messages=follow, tools=[WEATHER]))
    assert chat_prompt_ids(model, follow, tools=[WEATHER]) == ref.tokens


def test_without_tools_the_same_reply_is_plain_text(v3):
    from qinfer.generation import chat

    messages = [{"role": "user", "content": "Weather in Paris?"}]
    out = chat(tool_call_model(v3, messages, tools=()), messages, temperature=0)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": CALL_JSON}
    assert out["choices"][0]["finish_reason"] == "stop"


def test_a_conversation_the_format_cannot_take_names_the_file(gguf):
    from qinfer.errors import UnsupportedError

    model = qinfer.load(gguf, n_ctx=64)
    with pytest.raises(UnsupportedError, match=r"demo-Q8_0\.gguf: the mistral-v1 chat format has no tool"):
        model.chat([{"role": "user", "content": "Weather?"}], tools=[WEATHER])
    model.metadata = {**model.metadata, "tokenizer.chat_template": "mistral-v7"}
    with pytest.raises(UnsupportedError, match=r"demo-Q8_0\.gguf: .*no \[SYSTEM_PROMPT\] control token"):
        model.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])


@pytest.mark.parametrize("tokenizer_file, jinja, expected", [
    ("tokenizer.model.v7", None, "mistral-v7"),
    ("tokenizer.model.v2", None, None),       # llama.cpp has no name for v2: nothing is written
    ("tokenizer.model.v3", "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}", "jinja")])
def test_converter_writes_the_chat_template_llama_cpp_writes(tmp_path, tokenizer_file, jinja, expected):
    """A Mistral download (the demo's weights) with another tokenizer file name,
    or with its own chat_template.jinja, which wins over the name."""
    from vocab_gguf import gguf_metadata

    folder = tmp_path / "download"
    folder.mkdir()
    with tarfile.open(bundled(DEMO_TARBALL)) as tf:
        for member in ("params.json", "consolidated.safetensors"):
            (folder / member).write_bytes(tf.extractfile(member).read())
        (folder / tokenizer_file).write_bytes(tf.extractfile("tokenizer.model").read())
    if jinja:
        (folder / "chat_template.jinja").write_text(jinja)
    out = str(tmp_path / "out.gguf")
    qinfer.convert(str(folder), out, type="Q8_0")
    written = gguf_metadata(out).get("tokenizer.chat_template")
    assert written == (jinja if expected == "jinja" else expected)
