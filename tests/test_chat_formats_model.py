"""Chat formats on a real model: the bundled demo model converted by qinfer.
Its prompts equal mistral-common's for the demo's tokenizer file, and a
multi-turn chat evaluates only what each turn adds, in every Mistral format
the demo vocabulary can express."""
import os
import tarfile

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
    messages, history = [], []
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
