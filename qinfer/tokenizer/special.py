"""Special-token partition shared by every vocabulary type, as llama.cpp's
tokenizer_st_partition does it: CONTROL, USER_DEFINED and UNKNOWN token texts
are cut out of the raw text longest first; USER_DEFINED ones always, CONTROL and
UNKNOWN ones only when the caller asks to parse special tokens."""

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


class Vocabulary:
    """What every tokenizer answers from its token list and token types."""

    @property
    def n_vocab(self):
        return len(self.tokens)

    def id_to_piece(self, i):
        return self.tokens[i]

    def is_special(self, i):
        return self.types[i] in (CONTROL, UNKNOWN)


def special_tokens(tokens, types):
    """[(text, id, type)] of the tokens the partition looks for, longest text first."""
    return sorted(((t, i, ty) for i, (t, ty) in enumerate(zip(tokens, types))
                   if ty in (CONTROL, USER_DEFINED, UNKNOWN) and t),
                  key=lambda e: -len(e[0]))


def partition(text, specials, parse_special):
    """[str fragment | int token id] with the special tokens of `specials` cut out."""
    parts = [text]
    for piece, tid, ty in specials:
        if ty != USER_DEFINED and not parse_special:
            continue
        new = []
        for p in parts:
            if not isinstance(p, str) or piece not in p:
                new.append(p)
                continue
            chunks = p.split(piece)
            for k, c in enumerate(chunks):
                if c:
                    new.append(c)
                if k < len(chunks) - 1:
                    new.append(tid)
        parts = new
    return parts
