"""Text side of generation: stop strings held back while they may be starting,
and turning a stream of token ids into complete characters."""


class StopMatcher:
    """Feed text chunks; get back what can be shown now.

    Text that could be the beginning of a stop string is held back until the
    next chunks prove it is not; once a stop string appears, the text before it
    is returned and `matched` is set (the stop string itself is dropped)."""

    def __init__(self, stops):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.matched = None

    def _held(self, text):
        """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best

    def push(self, text):
        """-> (text to show, whether a stop string was found)."""
        if self.matched is not None:
            return "", True
        self.pending += text
        found = self._first_match()
        if found:
            i, s = found
            # a longer stop string that starts earlier may still complete
            undecided = len(self.pending) - self._held(self.pending)
            if undecided >= i:
                out, self.pending, self.matched = self.pending[:i], "", s
                return out, True
            out, self.pending = self.pending[:undecided], self.pending[undecided:]
            return out, False
        keep = self._held(self.pending)
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def _first_match(self):
        """(start, stop string) of the earliest complete stop string in the held text, or None."""
        found = [(i, s) for s in self.stops if (i := self.pending.find(s)) >= 0]
        return min(found) if found else None

    def flush(self, text=""):
        """End of generation: the earliest stop string still held back cuts the
        text there; without one everything held back is text."""
        out, _ = self.push(text)
        if self.matched is not None:
            return out
        found = self._first_match()
        if found:
            i, self.matched = found
            out, self.pending = out + self.pending[:i], ""
            return out
        out, self.pending = out + self.pending, ""
        return out


class _DiffDecoder:
    """Incremental detokenization with only `tokenizer.decode`: decode a short
    window of ids and emit what it adds over the same window without the new
    ids. The window starts one token before the new ones, so rules that
    depend on position (the first token's leading space, byte tokens that
    form one character together) are applied as in a full decode; text that
    ends in an incomplete UTF-8 sequence (U+FFFD) is held until completed."""

    def __init__(self, tokenizer, context=()):
        self.decode = tokenizer.decode
        self.ids = list(context)[-1:]
        self.start = 0                # window start in self.ids
        self.done = len(self.ids)     # ids whose text has been emitted

    def feed(self, token):
        self.ids.append(int(token))
        before = self.decode(self.ids[self.start:self.done])
        after = self.decode(self.ids[self.start:])
        if after == before or after.endswith("\ufffd"):
            return ""
        new = after[len(before):] if after.startswith(before) else after
        self.start, self.done = len(self.ids) - 1, len(self.ids)
        return new

    def flush(self):
        before = self.decode(self.ids[self.start:self.done])
        after = self.decode(self.ids[self.start:])
        self.start = self.done = len(self.ids)
        return after[len(before):] if after.startswith(before) else ""


def stream_decoder(tokenizer, context=()):
    """An object with feed(token_id) -> str and flush() -> str for `tokenizer`;
    `context`: ids that precede the stream (its last one sets the leading-space rule)."""
    return _DiffDecoder(tokenizer, context)
