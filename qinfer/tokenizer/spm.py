"""SentencePiece-style tokenizer (GGUF tokenizer.ggml.model = "llama"), as
llama.cpp runs it (REFERENCE §6): special tokens cut out first (longest first;
CONTROL/UNKNOWN only when parse_special), a space prefix and "▁" escaping per
text fragment, merges of adjacent symbols by highest score (leftmost on ties),
resegmentation through the recorded merges, and <0xXX> byte fallback."""
import heapq

from .special import Vocabulary, BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, partition, special_tokens
SPACE = "\u2581"


class SpmTokenizer(Vocabulary):
    def __init__(self, tokens, scores, types, bos_id=1, eos_id=2, unk_id=0, add_bos=True,
                 add_eos=False, add_space_prefix=True):
        self.tokens = list(tokens)
        self.scores = list(scores)
        self.types = list(types)
        self.bos_id, self.eos_id, self.unk_id = bos_id, eos_id, unk_id
        self.add_bos, self.add_eos, self.add_space_prefix = add_bos, add_eos, add_space_prefix
        self.piece_to_id = {}
        for i, t in enumerate(self.tokens):
            self.piece_to_id.setdefault(t, i)
        self.byte_ids = {}
        for i, (t, ty) in enumerate(zip(self.tokens, self.types)):
            if ty == BYTE and len(t) == 6 and t.startswith("<0x"):
                self.byte_ids[int(t[3:5], 16)] = i
        self._specials = special_tokens(self.tokens, self.types)

    @classmethod
    def from_metadata(cls, md):
        def get(k, d):
            v = md.get(k)
            return d if v is None else v
        return cls(md["tokenizer.ggml.tokens"], list(get("tokenizer.ggml.scores", [])),
                   list(get("tokenizer.ggml.token_type", [])),
                   int(get("tokenizer.ggml.bos_token_id", 1)), int(get("tokenizer.ggml.eos_token_id", 2)),
                   int(get("tokenizer.ggml.unknown_token_id", 0)),
                   bool(get("tokenizer.ggml.add_bos_token", True)),
                   bool(get("tokenizer.ggml.add_eos_token", False)),
                   bool(get("tokenizer.ggml.add_space_prefix", True)))

    # ---- encoding ---------------------------------------------------------

    def _segment(self, text):
        syms = list(text)
        n = len(syms)
        if n == 0:
            return []
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        alive = [True] * n
        rev = {}
        heap = []

        def push(left, right):
            if left < 0 or right < 0:
                return
            s = syms[left] + syms[right]
            tid = self.piece_to_id.get(s)
            if tid is None:
                return
            heapq.heappush(heap, (-self.scores[tid], left, right, s))

        for i in range(n - 1):
            push(i, i + 1)
        while heap:
            _, left, right, s = heapq.heappop(heap)
            if not (alive[left] and alive[right]) or nxt[left] != right or syms[left] + syms[right] != s:
                continue
            rev[s] = (syms[left], syms[right])
            syms[left] = s
            alive[right] = False
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            push(prev[left], left)
            push(left, nxt[left])
        out = []
        i = 0
        while i >= 0:
            self._resegment(syms[i], rev, out)
            i = nxt[i]
        return out

    def _resegment(self, s, rev, out):
        tid = self.piece_to_id.get(s)
        if tid is not None:
            out.append(tid)
            return
        if s in rev:
            a, b = rev[s]
            self._resegment(a, rev, out)
            self._resegment(b, rev, out)
            return
        for byte in s.encode("utf-8"):
            out.append(self.byte_ids.get(byte, self.unk_id))

    def encode(self, text, add_bos=True, parse_special=False):
        ids = [self.bos_id] if (add_bos and self.add_bos) else []
        prev_special = True
        for part in partition(text, self._specials, parse_special):
            if isinstance(part, int):
                ids.append(part)
                prev_special = True
                continue
            if not part:
                continue
            if self.add_space_prefix and prev_special:
                part = " " + part
            ids.extend(self._segment(part.replace(" ", SPACE)))
            prev_special = False
        if add_bos and self.add_eos:
            ids.append(self.eos_id)
        return ids

    # ---- decoding ---------------------------------------------------------

    def token_bytes(self, i, special=False):
        ty = self.types[i] if i < len(self.types) else NORMAL
        if ty == BYTE:
            return bytes([int(self.tokens[i][3:5], 16)])
        if ty in (CONTROL, UNKNOWN, UNUSED) and not special:
            return b""
        return self.tokens[i].replace(SPACE, " ").encode("utf-8")

    def decode_bytes(self, ids, special=False):
        data = b"".join(self.token_bytes(i, special) for i in ids)
        first = next((i for i in ids if self.types[i] not in (CONTROL, UNKNOWN, UNUSED)), None)
        if self.add_space_prefix and first is not None and data.startswith(b" ") \
                and self.tokens[first].startswith(SPACE):
            data = data[1:]
        return data

    def decode(self, ids, special=False):
        return self.decode_bytes(list(ids), special).decode("utf-8", errors="replace")
