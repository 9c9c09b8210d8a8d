"""Byte-level BPE pieces: the GPT-2 byte <-> character map and the pre-tokenizer
regexes of the vocabularies qinfer supports, run with Python's own `re`.

The patterns are written with Unicode property classes (\\p{L}, \\p{Lu}, ...)
as tiktoken and llama.cpp spell them; `re` has no such classes, so each one is
expanded once into an explicit character class built from `unicodedata`
(about 0.2 s, on the first encode). `\\s` is the Unicode White_Space property,
as in the Rust and C++ engines (Python's own `\\s` also matches U+001C..U+001F).
Python's Unicode database (14.0 for 3.11) may lag tiktoken's by a version:
letters added since then count as unassigned here.
"""
import functools
import re
import sys
import unicodedata

# tokenizer.ggml.pre -> pattern. "tekken" is the pat_str of Mistral's tekken.json files
# (identical in every published one); "gpt-2" is GPT-2's byte-level pattern.
PATTERNS = {
    "tekken": (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
               r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
               r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "gpt-2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
}

WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_GROUPS = {"L": ("Lu", "Ll", "Lt", "Lm", "Lo"), "M": ("Mn", "Mc", "Me"), "N": ("Nd", "Nl", "No")}


def bytes_to_unicode():
    """GPT-2's reversible map byte -> printable character: printable Latin-1 bytes
    stand for themselves, the other 68 bytes take U+0100.. in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
_BYTE_TABLE = [BYTE_TO_CHAR[b] for b in range(256)]


def byte_encode(text):
    """UTF-8 bytes of `text` spelled in the byte-level alphabet."""
    return "".join([_BYTE_TABLE[b] for b in text.encode("utf-8")])


@functools.lru_cache(maxsize=None)
def _category_ranges():
    """{two-letter category: [[first, last] code point runs]}, surrogates excluded.
    Only the runs are kept (a few thousand), not the 1.1 million code points."""
    runs = {}
    category = unicodedata.category
    for cp in range(sys.maxunicode + 1):
        r = runs.setdefault(category(chr(cp)), [])
        if r and r[-1][1] == cp - 1:
            r[-1][1] = cp
        else:
            r.append([cp, cp])
    runs.pop("Cs", None)
    return runs


@functools.lru_cache(maxsize=None)
def _class_body(name):
    """Character-class body (escaped ranges) for \\p{name}: a category or a group of them."""
    runs = _category_ranges()
    merged = []
    for a, b in sorted(r for n in _GROUPS.get(name, (name,)) for r in runs.get(n, ())):
        if merged and a == merged[-1][1] + 1:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in merged)


def translate(pattern):
    """`pattern` with \\p{X}, \\s and \\S rewritten for Python's `re`."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1]
            if nxt == "p":
                end = pattern.index("}", i)
                body = _class_body(pattern[i + 3:end])
                out.append(body if in_class else f"[{body}]")
                i = end + 1
                continue
            if nxt == "s":
                out.append(WHITE_SPACE if in_class else f"[{WHITE_SPACE}]")
                i += 2
                continue
            if nxt == "S":
                if in_class:
                    raise ValueError("\\S inside a character class is not supported")
                out.append(f"[^{WHITE_SPACE}]")
                i += 2
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=None)
def compiled(pre):
    """The compiled pre-tokenizer regex for tokenizer.ggml.pre `pre`."""
    return re.compile(translate(PATTERNS[pre]))


def split_words(pre, text):
    """Pre-tokenize `text`: the matches of the pattern, plus any text between them
    (as llama.cpp keeps unmatched runs as words of their own)."""
    words, pos = [], 0
    for m in compiled(pre).finditer(text):
        if m.start() > pos:
            words.append(text[pos:m.start()])
        if m.end() > m.start():
            words.append(m.group())
        pos = m.end()
    if pos < len(text):
        words.append(text[pos:])
    return words
