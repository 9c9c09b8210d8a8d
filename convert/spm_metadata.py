"""GGUF tokenizer metadata from a sentencepiece model file, as llama.cpp's
converter writes it (tokenizer.ggml.model "llama", pieces, scores, types)."""
from qinfer.errors import FormatError
from qinfer.tokenizer.special import BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED


def spm_metadata(data, n_vocab, label):
    """(list of (key, value) for gguf.GGUFWriter adders) from sentencepiece model bytes."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(data)
    except Exception as exc:  # noqa: BLE001 - sentencepiece raises bare RuntimeError/OSError
        raise FormatError(f"{label}: not a sentencepiece model ({exc})") from None
    n = sp.GetPieceSize()
    if n > n_vocab:
        raise FormatError(f"{label}: tokenizer has {n} pieces but the model only {n_vocab} embeddings")
    tokens, scores, types = [], [], []
    for i in range(n):
        tokens.append(sp.IdToPiece(i))
        scores.append(sp.GetScore(i))
        t = NORMAL
        if sp.IsUnknown(i):
            t = UNKNOWN
        elif sp.IsControl(i):
            t = CONTROL
        elif sp.IsUnused(i):
            t = UNUSED
        elif sp.IsByte(i):
            t = BYTE
        types.append(t)
    for i in range(n, n_vocab):   # embeddings beyond the tokenizer: padding, as llama.cpp does
        tokens.append(f"[PAD{i}]")
        scores.append(-1000.0)
        types.append(UNUSED)
    return {"model": "llama", "pre": "default", "tokens": tokens, "scores": scores, "types": types,
            "bos": sp.bos_id(), "eos": sp.eos_id(), "unk": sp.unk_id()}

