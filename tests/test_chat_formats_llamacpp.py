"""Chat templates across qinfer and llama.cpp (llama-cpp-python's bindings).

- The template name qinfer's converter writes is the one llama.cpp's converter
  writes, and llama.cpp recognises it as its own Mistral template.
- A Mistral-format GGUF (sentencepiece v3/v7, tekken) read by both: qinfer's
  prompt ids are mistral-common's, and llama.cpp tokenizes qinfer's rendered
  prompt (special tokens parsed) into the same ids.
- llama.cpp's own renderings of the tekken templates equal qinfer's where the
  formats agree. (Where they do not, qinfer follows mistral-common: llama.cpp's
  sentencepiece variants write a space after each control token, which its
  tokenizer turns into an extra "▁" token; its v3 puts the system prompt in
  the first turn, mistral-common in the last; it keeps replies' trailing spaces.)
"""
import ctypes
import json
import os

import pytest

import qinfer
from qinfer.chat_template import chat_format, encode, render
from qinfer.cli.demo import DEMO_TARBALL, bundled
from qinfer.convert.spm_metadata import spm_metadata
from qinfer.convert.vocab import tekken_metadata
from qinfer.tokenizer import from_gguf
from chat_conversations import CONVERSATIONS
from vocab_gguf import gguf_metadata, write_vocab_gguf

llama_cpp = pytest.importorskip("llama_cpp")
mistral_common = pytest.importorskip("mistral_common")
from mistral_common.protocol.instruct.request import ChatCompletionRequest  # noqa: E402
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer  # noqa: E402

DATA = os.path.join(os.path.dirname(mistral_common.__file__), "data")
PLAIN = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
         {"role": "user", "content": "What is 2+2?"}]
SYSTEM_FIRST = [{"role": "system", "content": "Be brief."}] + PLAIN


def reference(mt, messages, tools):
    return mt.encode_chat_completion(ChatCompletionRequest(messages=messages, tools=tools)).tokens


def llama_render(template, messages):
    """llama.cpp's built-in rendering (llama_chat_apply_template) of a named template."""
    arr = (llama_cpp.llama_chat_message * len(messages))(
        *[llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages])
    buf = ctypes.create_string_buffer(1 << 14)
    n = llama_cpp.llama_chat_apply_template(template, arr, len(messages), True, buf, len(buf))
    assert 0 < n <= len(buf), f"llama.cpp did not render {template!r} ({n})"
    return buf.raw[:n].decode("utf-8")


def llama_template(llm):
    return llama_cpp.llama_model_chat_template(llm._model.model, None)


def test_converted_demo_carries_llama_cpps_template_name(tmp_path):
    out = str(tmp_path / "demo.gguf")
    qinfer.convert(bundled(DEMO_TARBALL), out, type="Q8_0")
    metadata = gguf_metadata(out)
    # The demo ships a bare tokenizer.model: llama.cpp's converter names that "mistral-v1".
    assert metadata["tokenizer.chat_template"] == "mistral-v1"
    assert chat_format(metadata).name == "mistral-v1"
    llm = llama_cpp.Llama(out, vocab_only=True, verbose=False)
    assert llama_template(llm) == b"mistral-v1"
    assert llama_render(llama_template(llm), PLAIN).startswith(" [INST] Hi there [/INST]")


def _spm_vocab(name, template):
    data = open(os.path.join(DATA, name), "rb").read()
    v = spm_metadata(data, 32768, name)
    return {**v, "chat_template": template}


@pytest.mark.parametrize("name, template", [("mistral_instruct_tokenizer_240323.model.v3", "mistral-v3"),
                                            ("mistral_instruct_tokenizer_241114.model.v7", "mistral-v7")])
def test_llama_cpp_reads_qinfers_prompt_as_mistral_commons_ids(tmp_path, name, template):
    path = write_vocab_gguf(tmp_path / "vocab.gguf", _spm_vocab(name, template))
    metadata = gguf_metadata(path)
    tok = from_gguf(metadata)
    llm = llama_cpp.Llama(path, vocab_only=True, verbose=False)
    assert llama_template(llm) == template.encode()
    mt = MistralTokenizer.from_file(os.path.join(DATA, name))
    _check_conversations(metadata, tok, llm, mt)


def _check_conversations(metadata, tok, llm, mt):
    for name, (messages, tools) in CONVERSATIONS.items():
        ref = reference(mt, messages, tools)
        assert encode(metadata, tok, messages, tools) == ref, name
        if name != "control strings in text":   # as text, those would become control tokens
            text = render(metadata, messages, tools=tools)
            assert llm.tokenize(text.encode(), add_bos=False, special=True) == ref, name


@pytest.fixture(scope="module")
def tekken(tmp_path_factory):
    name = "tekken_240718.json"
    v = tekken_metadata(json.load(open(os.path.join(DATA, name))), 131072, name)
    path = write_vocab_gguf(tmp_path_factory.mktemp("tekken") / "vocab.gguf",
                            {**v, "chat_template": "mistral-v3-tekken"})
    return path, MistralTokenizer.from_file(os.path.join(DATA, name))


def test_tekken_prompts_through_qinfer_and_llama_cpp(tekken):
    path, mt = tekken
    metadata = gguf_metadata(path)
    tok = from_gguf(metadata)
    llm = llama_cpp.Llama(path, vocab_only=True, verbose=False)
    assert llama_template(llm) == b"mistral-v3-tekken"
    assert chat_format(metadata).name == "mistral-v3-tekken"
    _check_conversations(metadata, tok, llm, mt)
    # llama.cpp's own mistral-v3-tekken text is qinfer's (after the BOS qinfer writes)
    # for a conversation without a system prompt.
    assert "<s>" + llama_render(b"mistral-v3-tekken", PLAIN) == render(metadata, PLAIN)


def test_llama_cpps_v7_tekken_text_is_qinfers():
    metadata = {"tokenizer.ggml.model": "gpt2", "tokenizer.chat_template": "mistral-v7-tekken",
                "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>"], "tokenizer.ggml.token_type": [3, 3, 3],
                "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}
    for messages in (PLAIN, SYSTEM_FIRST):
        assert "<s>" + llama_render(b"mistral-v7-tekken", messages) == render(metadata, messages)
