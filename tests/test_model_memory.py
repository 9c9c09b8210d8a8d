"""qinfer.load maps the file instead of reading it: RSS grows by little more than
the metadata, whatever the size of the weights."""
import os

import numpy as np
import pytest
from gguf import GGUFWriter

import qinfer


def _rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _write(path, dim=1024, vocab=16384, hidden=2048):
    w = GGUFWriter(str(path), "llama")
    for add, v in ((w.add_context_length, 512), (w.add_embedding_length, dim), (w.add_block_count, 1),
                   (w.add_feed_forward_length, hidden), (w.add_head_count, 8), (w.add_head_count_kv, 4),
                   (w.add_vocab_size, vocab)):
        add(v)
    w.add_layer_norm_rms_eps(1e-5)
    ones = np.ones(dim, np.float32)
    big = np.full((vocab, dim), 0.01, np.float16)  # 32 MiB each: embeddings and output
    w.add_tensor("token_embd.weight", big)
    for name, shape in (("attn_q", (dim, dim)), ("attn_k", (dim // 2, dim)), ("attn_v", (dim // 2, dim)),
                        ("attn_output", (dim, dim)), ("ffn_gate", (hidden, dim)), ("ffn_up", (hidden, dim)),
                        ("ffn_down", (dim, hidden))):
        w.add_tensor(f"blk.0.{name}.weight", np.full(shape, 0.01, np.float16))
    w.add_tensor("blk.0.attn_norm.weight", ones)
    w.add_tensor("blk.0.ffn_norm.weight", ones)
    w.add_tensor("output_norm.weight", ones)
    w.add_tensor("output.weight", big)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_load_does_not_read_the_weights(tmp_path):
    path = _write(tmp_path / "big.gguf")
    size = path.stat().st_size
    assert size > 75 * 2**20
    before = _rss()
    m = qinfer.load(path, n_ctx=512)
    grown = _rss() - before
    # Metadata, norm vectors and Python objects: a few MiB, not the 78 MiB of weights.
    # The KV cache (1 layer x 512 x 4 heads x 128 x 2 x 2 bytes = 1 MiB) is
    # calloc'd and untouched, so it does not count either.
    assert grown < 8 * 2**20, f"load grew RSS by {grown / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file"
    logits = m.logits([1, 2, 3])
    assert logits.shape == (3, 16384) and np.isfinite(logits).all()


def _vm_flags_of_mapping(path):
    """VmFlags of this process's mapping of `path` (from /proc/self/smaps)."""
    target, mine = os.path.realpath(path), False
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                mine = line.rstrip().endswith(target)
            elif mine and head[0] == "VmFlags:":
                return set(head[1:])
    return None


@pytest.mark.skipif(not os.path.isdir("/sys/kernel/mm/transparent_hugepage"),
                    reason="the kernel has no transparent huge pages (not Linux, or THP compiled out)")
def test_the_weights_mapping_asks_for_huge_pages(tmp_path):
    # Generation streams every weight each token; 2 MiB pages spare the page
    # walks that cost 10-15% of the bandwidth with 4 KiB pages (benches/README.md).
    path = _write(tmp_path / "big.gguf")
    m = qinfer.load(path, n_ctx=64)
    flags = _vm_flags_of_mapping(path)
    assert flags is not None, "the model file is not mapped"
    assert "hg" in flags, f"no MADV_HUGEPAGE on the weights' mapping (VmFlags {sorted(flags)})"
    assert "mr" in flags and "mw" not in flags, "the weights must be mapped read-only"
    del m
