"""Train the tiny Mistral that ships as qinfer/data/demo-mistral.tar.

    nice python tools/train_demo_model.py [--cpu-minutes 25] [--work build/demo-train]

Steps, all offline and on one CPU thread:
1. corpus: docstrings of the standard library and a few installed pure-Python
   packages, plus [INST] question/answer pairs built from them (demo_corpus.py);
2. tokenizer: a sentencepiece BPE model (BPE, because llama.cpp's SPM tokenizer
   reproduces sentencepiece's BPE merges, not unigram's Viterbi search) with
   byte fallback and Mistral's control tokens <unk> <s> </s> [INST] [/INST]
   at ids 0..4, the way Mistral's tokenizer.model.v2/v3 number them;
3. model: transformers' MistralForCausalLM (GQA, no sliding window), trained
   with AdamW for a fixed budget of CPU time;
4. export: raw Mistral tarball (demo_export.py) plus a model card.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_corpus  # noqa: E402
import demo_export  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTROL = ["[INST]", "[/INST]"]
# Shapes chosen so every matrix row (256 or 768 values) is a whole number of
# 256-value K-quant super-blocks: Q4_K_M of the demo uses real K-quants.
SHAPE = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4,
             num_attention_heads=8, num_key_value_heads=2, head_dim=32)


def train_tokenizer(texts, prefix, vocab_size):
    import sentencepiece as spm

    corpus = prefix + ".txt"
    with open(corpus, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(t.replace("\n\n", "\n") + "\n")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        control_symbols=CONTROL, character_coverage=1.0,
        # Mistral's files: identity normalisation, spaces kept as written.
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, split_digits=True, allow_whitespace_only_pieces=True,
        max_sentencepiece_length=16, num_threads=1,
        minloglevel=2)
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def encode_samples(sp, documents, pairs, rng):
    """Token sequences: documents as <s> text </s>; chats of one to three turns
    in either of the two token layouts a prompt can arrive in:
    - mistral-common's (v2/v3 instruct): [INST] + q + [/INST] + a + </s>;
    - the text "[INST] q [/INST] a</s>" tokenized as llama.cpp does with
      special tokens parsed: a text fragment after a control token gets one
      more leading space, so q becomes " q " and a " a" (sentencepiece's own
      dummy prefix plays the part of that space here)."""
    inst, end_inst = sp.piece_to_id("[INST]"), sp.piece_to_id("[/INST]")
    bos, eos = sp.bos_id(), sp.eos_id()
    samples = [[bos] + sp.encode(d) + [eos] for d in documents]
    pairs = list(pairs)
    rng.shuffle(pairs)
    i = 0
    while i < len(pairs):
        turns = pairs[i:i + rng.choice([1, 1, 2, 3])]
        i += len(turns)
        spaced = rng.random() < 0.5
        seq = [bos]
        for q, a in turns:
            if spaced:
                q, a = f" {q} ", f" {a}"
            seq += [inst] + sp.encode(q) + [end_inst] + sp.encode(a) + [eos]
        samples.append(seq)
    return samples


def pack(samples, seq_len, rng):
    """Shuffle the samples, concatenate, cut into [n, seq_len] windows."""
    rng.shuffle(samples)
    stream = np.fromiter((t for s in samples for t in s), dtype=np.int64)
    n = len(stream) // seq_len
    return stream[: n * seq_len].reshape(n, seq_len)


def build_model(vocab_size, seed):
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(seed)
    cfg = MistralConfig(vocab_size=vocab_size, max_position_embeddings=2048,
                        rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=None,
                        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                        attn_implementation="sdpa", **SHAPE)
    return MistralForCausalLM(cfg)


def train(model, windows, cpu_seconds, batch, lr, log):
    """AdamW, linear warm-up then cosine decay over the step count that the
    measured speed of the first steps predicts for the CPU budget."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    data = torch.from_numpy(windows)
    order = torch.randperm(len(data))
    warmup, total, step, pos = 50, None, 0, 0
    start = time.process_time()
    losses = []
    model.train()
    while True:
        used = time.process_time() - start
        if total is None and step == 20:
            total = max(100, int(cpu_seconds / (used / 20)))
            log(f"budget: {total} steps of {batch}x{windows.shape[1]} tokens")
        if total is not None and step >= total:
            break
        scale = min(1.0, (step + 1) / warmup)
        if total is not None and step > warmup:
            scale = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        if pos + batch > len(order):
            order, pos = torch.randperm(len(data)), 0
        xb = data[order[pos:pos + batch]]
        pos += batch
        loss = model(input_ids=xb, labels=xb).loss  # the model shifts labels by one itself
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 50 == 0:
            log(f"step {step} loss {np.mean(losses[-50:]):.3f} cpu {used / 60:.1f} min")
    return {"steps": step, "final_loss": float(np.mean(losses[-50:])),
            "cpu_minutes": (time.process_time() - start) / 60,
            "tokens_seen": step * batch * windows.shape[1]}


def sample_text(model, sp, prompt, n=40, question=False):
    """Greedy continuation (of a chat turn if `question`), to see in the log
    what the model writes."""
    import torch

    if question:
        ids = [sp.bos_id(), sp.piece_to_id("[INST]"), *sp.encode(f" {prompt} "), sp.piece_to_id("[/INST]")]
    else:
        ids = [sp.bos_id()] + sp.encode(prompt)
    start = len(ids)
    model.eval()
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == sp.eos_id():
                break
            ids.append(nxt)
    return sp.decode(ids[start:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-minutes", type=float, default=25.0)
    ap.add_argument("--vocab", type=int, default=3000)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=os.path.join(REPO, "build", "demo-train"))
    ap.add_argument("--out", default=os.path.join(REPO, "qinfer", "data", "demo-mistral.tar"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    os.makedirs(args.work, exist_ok=True)
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:7.0f}s] {msg}", flush=True)

    rng = random.Random(args.seed)
    documents, pairs = demo_corpus.gather(seed=args.seed)
    pairs = pairs + demo_corpus.HANDWRITTEN * 50  # seen often enough to be remembered
    log(f"corpus: {len(documents)} documents, {len(pairs)} instruction pairs")
    sp = train_tokenizer(documents + [f"{q} {a}" for q, a in pairs],
                         os.path.join(args.work, "tokenizer"), args.vocab)
    assert [sp.id_to_piece(i) for i in range(5)] == ["<unk>", "<s>", "</s>", *CONTROL]
    windows = pack(encode_samples(sp, documents, pairs, rng), args.seq_len, rng)
    log(f"tokens: {windows.size} in {len(windows)} windows of {args.seq_len}")

    model = build_model(sp.get_piece_size(), args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f} M parameters")
    stats = train(model, windows, args.cpu_minutes * 60, args.batch, args.lr, log)
    log(f"trained: {stats}")
    for prompt in ["The json module", "Return the number of"]:
        log(f"sample: {prompt!r} -> {sample_text(model, sp, prompt)!r}")
    for prompt in ["What does the os.path module do?", "Hello!", "What is a GGUF file?"]:
        log(f"chat: {prompt!r} -> {sample_text(model, sp, prompt, question=True)!r}")

    card = {"parameters": n_params, "vocab_size": sp.get_piece_size(),
            "shape": SHAPE, "seq_len": args.seq_len, "batch": args.batch, "lr": args.lr,
            "seed": args.seed, "documents": len(documents), "instruction_pairs": len(pairs),
            "corpus_tokens": int(windows.size), **stats}
    with open(os.path.join(args.work, "tokenizer.model"), "rb") as f:
        tok_bytes = f.read()
    model.save_pretrained(os.path.join(args.work, "hf"))  # kept for comparisons, not shipped
    demo_export.write_tarball(args.out, model, tok_bytes)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    log(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
