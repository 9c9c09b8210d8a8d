"""Byte-level BPE tokenizer (GGUF tokenizer.ggml.model = "gpt2"), as llama.cpp
runs it: special tokens cut out first, each text fragment split into words by
the pre-tokenizer regex of tokenizer.ggml.pre, each word spelled in GPT-2's
byte alphabet, then merged pair by pair, lowest merge rank first (leftmost on
ties). With pre "tekken" (ignore_merges) a word that is itself a token is
emitted whole, which is what tiktoken does for Mistral's tekken vocabularies.
A symbol left that is not a token falls back to one token per byte."""
import heapq

from ..errors import FormatError, UnsupportedError
from .pretokenize import CHAR_TO_BYTE, PATTERNS, byte_encode, split_words
from .special import Vocabulary, BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED, partition, special_tokens

IGNORE_MERGES = {"tekken"}
_CACHE_LIMIT = 65536   # words remembered per tokenizer (a chat's worth of text)


class BpeTokenizer(Vocabulary):
    def __init__(self, tokens, types, merges, pre="tekken", bos_id=1, eos_id=2, unk_id=-1,
                 add_bos=True, add_eos=False):
        if pre not in PATTERNS:
            raise UnsupportedError(f"BPE pre-tokenizer {pre!r} is not supported "
                                   f"(supported: {', '.join(sorted(PATTERNS))})")
        self.tokens = list(tokens)
        self.types = [int(t) for t in types] if len(types) else [NORMAL] * len(self.tokens)
        if len(self.types) != len(self.tokens):
            raise FormatError(f"{len(self.tokens)} tokens but {len(self.types)} token types")
        self.pre = pre
        self.ignore_merges = pre in IGNORE_MERGES
        self.bos_id, self.eos_id, self.unk_id = bos_id, eos_id, unk_id
        self.add_bos, self.add_eos = add_bos, add_eos
        # a text listed twice maps to its last id, as in llama.cpp's token_to_id
        self.piece_to_id = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {}
        for r, m in enumerate(merges):
            # llama.cpp splits at the first space after the first character
            cut = m.find(" ", 1)
            if cut < 0:
                raise FormatError(f"tokenizer.ggml.merges[{r}] = {m!r} is not 'left right'")
            self.ranks.setdefault((m[:cut], m[cut + 1:]), r)
        self._specials = special_tokens(self.tokens, self.types)
        self._cache = {}

    @classmethod
    def from_metadata(cls, md):
        def get(k, d):
            v = md.get(k)
            return d if v is None else v
        pre = get("tokenizer.ggml.pre", "default")
        if md.get("tokenizer.ggml.merges") is None:   # llama.cpp refuses such files too
            raise FormatError("the GGUF's BPE vocabulary has no tokenizer.ggml.merges")
        return cls(md["tokenizer.ggml.tokens"], list(get("tokenizer.ggml.token_type", [])),
                   list(get("tokenizer.ggml.merges", [])), pre,
                   int(get("tokenizer.ggml.bos_token_id", 1)), int(get("tokenizer.ggml.eos_token_id", 2)),
                   int(get("tokenizer.ggml.unknown_token_id", -1)),
                   bool(get("tokenizer.ggml.add_bos_token", True)),
                   bool(get("tokenizer.ggml.add_eos_token", False)))

    # ---- encoding ---------------------------------------------------------

    def _merge(self, word):
        """Symbols of one byte-level word after the BPE merges."""
        syms = list(word)
        n = len(syms)
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prev = list(range(-1, n - 1))
        heap = []
        ranks = self.ranks

        def push(left, right):
            if left >= 0 and right >= 0:
                r = ranks.get((syms[left], syms[right]))
                if r is not None:
                    heapq.heappush(heap, (r, left, right, syms[left] + syms[right]))

        for i in range(n - 1):
            push(i, i + 1)
        while heap:
            _, left, right, text = heapq.heappop(heap)
            # stale entries: either symbol was merged away or has grown since
            if not syms[left] or not syms[right] or syms[left] + syms[right] != text:
                continue
            syms[left] = text
            syms[right] = ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            push(prev[left], left)
            push(left, nxt[left])
        out, i = [], 0
        while i >= 0:
            out.append(syms[i])
            i = nxt[i]
        return out

    def _word_ids(self, word):
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        whole = self.piece_to_id.get(word) if self.ignore_merges else None
        if whole is not None:
            ids = [whole]
        else:
            ids = []
            for s in self._merge(word):
                tid = self.piece_to_id.get(s)
                if tid is not None:
                    ids.append(tid)
                    continue
                # not a token (only in vocabularies that lack some bytes): one token per
                # byte, skipping bytes the vocabulary lacks
                for ch in s:
                    b = self.piece_to_id.get(ch)
                    if b is not None:
                        ids.append(b)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def encode(self, text, add_bos=True, parse_special=False):
        ids = [self.bos_id] if (add_bos and self.add_bos) else []
        for part in partition(text, self._specials, parse_special):
            if isinstance(part, int):
                ids.append(part)
                continue
            for word in split_words(self.pre, part):
                ids.extend(self._word_ids(byte_encode(word)))
        if add_bos and self.add_eos:
            ids.append(self.eos_id)
        return ids

    # ---- decoding ---------------------------------------------------------

    def token_bytes(self, i, special=False):
        ty = self.types[i] if i < len(self.types) else NORMAL
        t = self.tokens[i]
        if ty in (CONTROL, UNKNOWN):
            return t.encode("utf-8") if special else b""
        if ty == USER_DEFINED:
            return t.encode("utf-8")
        if ty == BYTE:
            return bytes([int(t[3:5], 16)])
        if ty == UNUSED:
            return b""
        try:
            return bytes([CHAR_TO_BYTE[c] for c in t])
        except KeyError:
            # not in the byte alphabet: llama.cpp shows such a token as its raw text
            return t.encode("utf-8")

    def decode_bytes(self, ids, special=False):
        return b"".join(self.token_bytes(i, special) for i in ids)

    def decode(self, ids, special=False):
        return self.decode_bytes(list(ids), special).decode("utf-8", errors="replace")
