"""Mistral chat formats: the token ids qinfer builds for a conversation equal
mistral-common's encode_chat_completion for the same request (the oracle the
chat issue names), for Mistral's sentencepiece tokenizers v1, v2, v3, v7 and
tekken, with the vocabulary in GGUF metadata as qinfer's converter writes it."""
import glob
import json
import os

import pytest
import sentencepiece as spm
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qinfer import chat_formats, chat_template
from qinfer.convert.spm_metadata import spm_metadata
from qinfer.errors import QinferError, UnsupportedError
from qinfer.tokenizer import from_gguf
from chat_conversations import CALL, CONVERSATIONS, WEATHER
from tiny_checkpoints import demo_tokenizer_bytes

mistral_common = pytest.importorskip("mistral_common")
from mistral_common.protocol.instruct.request import ChatCompletionRequest  # noqa: E402
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy  # noqa: E402
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer  # noqa: E402

DATA = os.path.join(os.path.dirname(mistral_common.__file__), "data")
SPM_FILES = sorted(os.path.basename(f) for f in glob.glob(os.path.join(DATA, "*.model*")))
TEKKEN_FILES = sorted(os.path.basename(f) for f in glob.glob(os.path.join(DATA, "tekken*.json")))



def spm_gguf_metadata(model_bytes):
    """Tokenizer metadata as qinfer's converter writes it for a sentencepiece file."""
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(model_bytes)
    v = spm_metadata(model_bytes, sp.GetPieceSize(), "test")
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": v["tokens"],
            "tokenizer.ggml.scores": v["scores"], "tokenizer.ggml.token_type": v["types"],
            "tokenizer.ggml.bos_token_id": v["bos"], "tokenizer.ggml.eos_token_id": v["eos"],
            "tokenizer.ggml.unknown_token_id": v["unk"]}


_CACHE = {}


def spm_case(name):
    """(GGUF metadata, qinfer tokenizer, mistral-common tokenizer) for a data file."""
    if name not in _CACHE:
        md = spm_gguf_metadata(open(os.path.join(DATA, name), "rb").read())
        _CACHE[name] = md, from_gguf(md), MistralTokenizer.from_file(os.path.join(DATA, name))
    return _CACHE[name]


def reference(mt, messages, tools=None):
    return mt.encode_chat_completion(ChatCompletionRequest(messages=messages, tools=tools))


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("name", SPM_FILES)
def test_prompt_ids_equal_mistral_common(name, conversation):
    md, tok, mt = spm_case(name)
    messages, tools = CONVERSATIONS[conversation]
    if name.endswith(".v1") and tools:
        # v1 has no tools: mistral-common refuses the tool messages, qinfer the whole request.
        with pytest.raises(Exception, match="Tools not implemented"):
            reference(mt, messages, tools)
        with pytest.raises(UnsupportedError, match="mistral-v1 chat format has no tool"):
            chat_template.encode(md, tok, messages, tools)
        return
    ref = reference(mt, messages, tools).tokens
    assert chat_template.encode(md, tok, messages, tools) == ref
    # The same prompt as one string, tokenized with special-token parsing (how a
    # llama.cpp-style runtime reads a prompt), gives the same ids unless the
    # conversation's own text spells control tokens.
    text_ids = tok.encode(chat_template.render(md, messages, tools=tools), add_bos=False, parse_special=True)
    if conversation == "control strings in text":
        assert text_ids != ref
    else:
        assert text_ids == ref


def test_the_v2_format_forgets_tool_turns_before_the_last_user_message():
    # The case where v2 and v3 differ most; the ids test above covers it against
    # mistral-common, this pins what happens so a regression shows its cause.
    messages, tools = CONVERSATIONS["tools"]
    v2 = chat_formats.ChatFormat(2).segments(messages, tools)
    v3 = chat_formats.ChatFormat(3).segments(messages, tools)
    assert "[TOOL_CALLS]" not in v2 and "[TOOL_RESULTS]" not in v2
    assert v3.count("[TOOL_CALLS]") == 1 and v3.count("[TOOL_RESULTS]") == 1


# -- random conversations -----------------------------------------------------------------------------

WORDS = st.lists(st.sampled_from(list("ab zé.?!\n\t") + ["你", "🙂", "[INST]", "</s>", "  "]),
                max_size=8).map("".join)


@st.composite
def conversations(draw):
    """Runs of system/user/assistant messages (same-role runs get merged), ending with a user."""
    messages = []
    for _ in range(draw(st.integers(0, 3))):
        for role in ("system", "user", "assistant"):
            for _ in range(draw(st.integers(0 if role != "user" else 1, 2))):
                content = draw(WORDS)
                if role == "assistant":
                    content = "x" + content   # mistral-common needs a non-empty reply
                messages.append({"role": role, "content": content})
    messages.append({"role": "user", "content": draw(WORDS)})
    return messages


@settings(max_examples=25)
@given(messages=conversations(), name=st.sampled_from(SPM_FILES))
def test_random_conversations_equal_mistral_common(messages, name):
    md, tok, mt = spm_case(name)
    try:
        ref = reference(mt, messages).tokens
    except Exception:  # noqa: BLE001 - mistral-common's validator refused the shape; nothing to compare
        assume(False)
    assert chat_template.encode(md, tok, messages) == ref


# -- tekken ----------------------------------------------------------------------------------------------


def tekken_specials_metadata(mt):
    """Just the control tokens of a tekken file (enough to render a prompt)."""
    inner = mt.instruct_tokenizer.tokenizer
    tokens = [inner.id_to_piece(i) for i in range(inner.num_special_tokens)]
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "tekken", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": [3] * len(tokens),
            "tokenizer.ggml.bos_token_id": inner.bos_id, "tokenizer.ggml.eos_token_id": inner.eos_id}


@pytest.mark.parametrize("name", TEKKEN_FILES)
def test_tekken_prompt_text_equals_mistral_common(name):
    # Tekken decodes losslessly, so mistral-common's ids decoded with control
    # tokens kept spell its prompt as a string: the rendered prompt must equal it.
    mt = MistralTokenizer.from_file(os.path.join(DATA, name))
    md = tekken_specials_metadata(mt)
    assert chat_template.chat_format(md) == chat_formats.ChatFormat(3, tekken=True)
    for conversation, (messages, tools) in CONVERSATIONS.items():
        ids = reference(mt, messages, tools).tokens
        text = mt.instruct_tokenizer.tokenizer.decode(ids, special_token_policy=SpecialTokenPolicy.KEEP)
        assert chat_template.render(md, messages, tools=tools) == text, conversation


# -- choosing the format -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPM_FILES + ["demo"])
def test_format_from_the_vocabulary_is_mistral_commons_version(name):
    if name == "demo":   # the bundled demo model ships a bare tokenizer.model: v1 to mistral-common
        md, expected = spm_gguf_metadata(demo_tokenizer_bytes()), "v1"
    else:
        md, _, mt = spm_case(name)
        expected = mt.instruct_tokenizer.tokenizer.version.value
    assert f"v{chat_template.chat_format(md).version}" == expected


@pytest.mark.parametrize("template, version, tekken", [
    ("mistral-v1", 1, False), ("mistral-v3", 3, False), ("mistral-v3-tekken", 3, True),
    ("mistral-v7", 7, False), ("mistral-v7-tekken", 7, True)])
def test_llama_cpp_template_names_choose_the_format(template, version, tekken):
    md, _, _ = spm_case("tokenizer.model.v1")
    assert chat_template.chat_format({**md, "tokenizer.chat_template": template}) == \
        chat_formats.ChatFormat(version, tekken)


def test_a_jinja_template_is_rendered_in_a_sandbox():
    md, tok, _ = spm_case("tokenizer.model.v1")
    template = ("{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                "{% if tools %}{{ tools | length }} tools{% endif %}")
    md = {**md, "tokenizer.chat_template": template}
    messages = [{"role": "user", "content": "Hi"}]
    assert chat_template.chat_format(md) is None
    assert chat_template.render(md, messages) == "<s><user>Hi"
    assert chat_template.render(md, messages, tools=[WEATHER]) == "<s><user>Hi1 tools"
    assert chat_template.encode(md, tok, messages) == tok.encode("<s><user>Hi", add_bos=False,
                                                                  parse_special=True)
    evil = {**md, "tokenizer.chat_template": "{{ messages.__class__.__mro__ }}"}
    with pytest.raises(QinferError, match="chat template failed"):
        chat_template.render(evil, messages)
    # A name of another llama.cpp built-in template is refused, not printed as the prompt.
    with pytest.raises(UnsupportedError, match="'chatml' is a template name qinfer does not know"):
        chat_template.render({**md, "tokenizer.chat_template": "chatml"}, messages)


@pytest.mark.parametrize("file, tekken_version, name", [
    ("tokenizer.model", None, "mistral-v1"), ("tokenizer.model.v1", None, "mistral-v1"),
    ("tokenizer.model.v2", None, None), ("tokenizer.model.v3", None, "mistral-v3"),
    ("tokenizer.model.v7", None, "mistral-v7"), ("tekken.json", "v3", "mistral-v3-tekken"),
    ("tekken.json", "v7", "mistral-v7-tekken"), ("tekken.json", "v11", None)])
def test_converter_template_name_follows_llama_cpp(file, tekken_version, name):
    # llama.cpp's converter (conversion/mistral.py) names v1, v3 and v7 (spm or
    # tekken) and has no name for v2; v11+ get bundled jinja files qinfer does not write.
    data = json.dumps({"config": {"version": tekken_version}, "vocab": []}).encode()
    assert chat_formats.converter_template_name(file, lambda: data) == name


def test_missing_control_tokens_and_bad_messages_are_clear_errors():
    md, tok, _ = spm_case("mistral_instruct_tokenizer_240323.model.v3")
    v7 = {**md, "tokenizer.chat_template": "mistral-v7"}   # a v3 vocabulary has no [SYSTEM_PROMPT]
    with pytest.raises(UnsupportedError, match=r"no \[SYSTEM_PROMPT\] control token"):
        chat_template.encode(v7, tok, CONVERSATIONS["system prompt"][0])
    with pytest.raises(QinferError, match="tool_call_id"):
        chat_template.encode(md, tok, [{"role": "user", "content": "x"}, {"role": "assistant", "content": None,
                                       "tool_calls": [CALL]}, {"role": "tool", "content": "y"}])
    with pytest.raises(QinferError, match="content and tool calls"):
        chat_template.encode(md, tok, [{"role": "user", "content": "x"},
                                       {"role": "assistant", "content": "y", "tool_calls": [CALL]},
                                       {"role": "tool", "tool_call_id": "abc123def", "content": "z"}])
    with pytest.raises(QinferError, match="a tool must look like"):
        chat_template.encode(md, tok, [{"role": "user", "content": "x"}], tools=[{"name": "f"}])


# -- replies kept as generated -------------------------------------------------------------------------


def test_a_remembered_reply_keeps_its_generated_ids_only_after_its_own_prompt():
    md, tok, mt = spm_case("mistral_instruct_tokenizer_241114.model.v7")
    turn1 = [{"role": "user", "content": "Say hello"}]
    prompt = chat_template.encode(md, tok, turn1)
    # "Hello there" spelled piece by piece: not how the tokenizer would encode it.
    generated = tuple(tok.piece_to_id[p] for p in ("\u2581H", "e", "l", "l", "o", "\u2581there"))
    assert tok.decode(generated) == "Hello there"
    assert list(generated) != tok.encode("Hello there", add_bos=False)
    turn2 = turn1 + [{"role": "assistant", "content": "Hello there"}, {"role": "user", "content": "Again"}]
    canonical = reference(mt, turn2).tokens
    replies = {tuple(prompt): (generated, "Hello there")}
    ids = chat_template.encode(md, tok, turn2, replies=replies)
    assert ids[:len(prompt) + len(generated)] == prompt + list(generated)
    assert ids[len(prompt) + len(generated):] == canonical[len(prompt) + len(tok.encode("Hello there",
                                                                                          add_bos=False)):]
    # A different reply text, or the same text after another prompt, is encoded afresh.
    other = turn1 + [{"role": "assistant", "content": "Hello there!"}, {"role": "user", "content": "Again"}]
    assert chat_template.encode(md, tok, other, replies=replies) == reference(mt, other).tokens
    moved = [{"role": "user", "content": "Say hi"}] + turn2[1:]
    assert chat_template.encode(md, tok, moved, replies=replies) == reference(mt, moved).tokens


NAMES = st.text(alphabet=st.sampled_from("abc_xyz"), min_size=1, max_size=8)
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
                           max_leaves=6)


@given(calls=st.lists(st.fixed_dictionaries({"name": NAMES, "arguments": st.dictionaries(NAMES, JSON_VALUES)},
                                            optional={"id": st.from_regex(r"[a-zA-Z0-9]{9}", fullmatch=True)}),
                      min_size=1, max_size=3))
def test_tool_calls_written_by_a_model_parse_to_openai_calls(calls):
    parsed = chat_formats.parse_tool_calls(json.dumps(calls, ensure_ascii=False))
    assert [c["function"]["name"] for c in parsed] == [c["name"] for c in calls]
    assert [json.loads(c["function"]["arguments"]) for c in parsed] == [c["arguments"] for c in calls]
    assert all(p["id"] == c.get("id", p["id"]) and len(p["id"]) == 9 for p, c in zip(parsed, calls))
    # The parsed calls, sent back as an assistant message, are what the model wrote.
    v3 = chat_formats.ChatFormat(3).segments([{"role": "user", "content": "q"},
                                              {"role": "assistant", "content": None, "tool_calls": parsed},
                                              {"role": "user", "content": "q"}])
    written = json.loads(v3[v3.index("[TOOL_CALLS]") + 1])
    assert written == [{**c, "id": p["id"]} for c, p in zip(calls, parsed)]


@pytest.mark.parametrize("text", ["", "not json", "[]", "[1, 2]", '{"arguments": {}}', '[{"name": 3}]'])
def test_text_that_is_not_tool_calls_is_not_parsed(text):
    assert chat_formats.parse_tool_calls(text) is None


@st.composite
def tool_conversations(draw):
    """User turns, some answered through tool calls (ids of 9 letters/digits, as
    mistral-common requires) and their results, ending with a user or a tool result."""
    ids = st.from_regex(r"[a-zA-Z0-9]{9}", fullmatch=True)
    args = st.dictionaries(st.sampled_from(["city", "unit"]), WORDS, max_size=2).map(json.dumps)
    results = st.one_of(WORDS, st.dictionaries(st.sampled_from(["temp", "sky"]), WORDS, max_size=2).map(json.dumps))
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(WORDS)})
    for turn in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(WORDS)})
        if draw(st.booleans()):
            calls = [{"id": draw(ids), "type": "function",
                      "function": {"name": "get_weather", "arguments": draw(args)}}
                     for _ in range(draw(st.integers(1, 2)))]
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
            messages += [{"role": "tool", "tool_call_id": c["id"], "name": "get_weather", "content": draw(results)}
                         for c in calls]
            if draw(st.booleans()):
                return messages   # the model answers the tool results next
        messages.append({"role": "assistant", "content": "x" + draw(WORDS)})
    messages.append({"role": "user", "content": draw(WORDS)})
    return messages


@settings(max_examples=25)
@given(messages=tool_conversations(), name=st.sampled_from([f for f in SPM_FILES if not f.endswith(".v1")]))
def test_random_tool_conversations_equal_mistral_common(messages, name):
    md, tok, mt = spm_case(name)
    try:
        ref = reference(mt, messages, [WEATHER]).tokens
    except Exception:  # noqa: BLE001 - e.g. v2 takes one result per call turn; qinfer refuses that too
        with pytest.raises(QinferError):
            chat_template.encode(md, tok, messages, [WEATHER])
        assume(False)
    assert chat_template.encode(md, tok, messages, [WEATHER]) == ref
