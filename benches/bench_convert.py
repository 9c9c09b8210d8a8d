"""Converter benchmark: a Mistral-7B-shaped .tar -> Q4_K_M GGUF, qinfer next to llama.cpp.

    python benches/bench_convert.py [--dir /tmp/qinfer-bench-7b] [--threads 2] [--shape 7b|small]
                                    [--type Q4_K_M] [--tools qinfer,llamacpp] [--clean]

The checkpoint (random bf16 weights ~N(0, 0.02), norms 1.0; 32 layers, dim 4096,
hidden 14336, 32 heads, 8 KV heads, vocab 32768 for --shape 7b: ~14.5 GB) is written
once into --dir in Mistral's raw layout (params.json, consolidated.safetensors with
Mistral's tensor names, mistral_common's v3 sentencepiece tokenizer), as an
uncompressed model.tar and as the same files unpacked in raw/. It is written
tensor by tensor (safetensors header first, then each tensor's bytes generated in
chunks), so the model is never in memory, and reused by later runs.

Each step runs in its own subprocess; its wall time, CPU time and peak resident
set size (ru_maxrss from wait4, which counts the mapped file pages it touched)
are reported:
- qinfer: `qinfer convert model.tar -o out.gguf --type Q4_K_M -q` (reads the tar in place);
- llama.cpp: convert_hf_to_gguf.py --mistral-format --outtype bf16 on raw/ (it
  cannot read the .tar), then llama_model_quantize to the same type (llama-cpp-python,
  ctypes, nthread = --threads); the two steps and their sum.
qinfer convert splits each tensor's rows over os.cpu_count() threads and has no
thread option; when --threads is below the core count, every step (both tools)
runs pinned to the first --threads CPUs (sched_setaffinity) so both get the same cores.
Outputs are deleted after each step (only their sizes and tensor types are kept);
--clean deletes the cached checkpoint at the end.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matmul import cpu_description  # noqa: E402

SHAPES = {
    "7b": dict(n_layers=32, dim=4096, hidden=14336, n_heads=32, n_kv=8, vocab=32768),
    # a quick check of the script itself (same vocabulary: the tokenizer fixes it)
    "small": dict(n_layers=2, dim=1024, hidden=2816, n_heads=8, n_kv=4, vocab=32768),
}
TOKENIZER = "mistral_instruct_tokenizer_240323.model.v3"     # vocab 32768, in mistral_common's data
CHUNK = 1 << 23                                              # values generated per step (32 MB float32)


def mistral_tensors(s):
    """(Mistral name, shape, is_norm) of every tensor, in the order they are stored."""
    d, hd = s["dim"], s["dim"] // s["n_heads"]
    out = [("tok_embeddings.weight", (s["vocab"], d), False)]
    for i in range(s["n_layers"]):
        p = f"layers.{i}."
        out += [(p + "attention.wq.weight", (s["n_heads"] * hd, d), False),
                (p + "attention.wk.weight", (s["n_kv"] * hd, d), False),
                (p + "attention.wv.weight", (s["n_kv"] * hd, d), False),
                (p + "attention.wo.weight", (d, s["n_heads"] * hd), False),
                (p + "attention_norm.weight", (d,), True),
                (p + "feed_forward.w1.weight", (s["hidden"], d), False),
                (p + "feed_forward.w2.weight", (d, s["hidden"]), False),
                (p + "feed_forward.w3.weight", (s["hidden"], d), False),
                (p + "ffn_norm.weight", (d,), True)]
    return out + [("norm.weight", (d,), True), ("output.weight", (s["vocab"], d), False)]


def params_json(s):
    return {"dim": s["dim"], "n_layers": s["n_layers"], "head_dim": s["dim"] // s["n_heads"],
            "hidden_dim": s["hidden"], "n_heads": s["n_heads"], "n_kv_heads": s["n_kv"], "norm_eps": 1e-5,
            "vocab_size": s["vocab"], "rope_theta": 1e6,
            # Mistral's params.json often names no context length; llama.cpp's converter
            # then writes none and llama_model_quantize refuses the file. Both read this key.
            "max_position_embeddings": 32768}


def safetensors_header(tensors):
    header, offset = {}, 0
    for name, shape, _ in tensors:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)        # data section 8-byte aligned, as safetensors writes it
    return len(raw).to_bytes(8, "little") + raw, offset


def write_bf16_normal(f, rng, count):
    """count bf16 values ~N(0, 0.02), generated CHUNK at a time as float32 and
    rounded to nearest-even on their top 16 bits (as torch's float -> bfloat16)."""
    for start in range(0, count, CHUNK):
        x = rng.standard_normal(min(CHUNK, count - start), dtype=np.float32)
        x *= 0.02
        b = x.view(np.uint32)
        b += ((b >> 16) & 1) + 0x7FFF
        f.write((b >> 16).astype(np.uint16).tobytes())


def checkpoint_bytes(s):
    return safetensors_header(mistral_tensors(s))[1]


def write_checkpoint(folder, s, seed=0):
    """raw/{params.json, consolidated.safetensors, tokenizer.model.v3} and model.tar in folder."""
    import mistral_common
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    tensors = mistral_tensors(s)
    header, data_bytes = safetensors_header(tensors)
    need = 2 * (len(header) + data_bytes) + (1 << 30)
    free = shutil.disk_usage(folder).free
    if free < need:
        sys.exit(f"{folder}: {free / 1e9:.1f} GB free, the checkpoint and its .tar need {need / 1e9:.1f} GB")
    (raw / "params.json").write_text(json.dumps(params_json(s)))
    shutil.copy(Path(mistral_common.__file__).parent / "data" / TOKENIZER, raw / "tokenizer.model.v3")
    rng = np.random.default_rng(seed)
    one = np.array([0x3F80], np.uint16).tobytes()        # bf16 1.0 (RMS norm weights)
    t0 = time.time()
    with open(raw / "consolidated.safetensors", "wb") as f:
        f.write(header)
        for i, (name, shape, is_norm) in enumerate(tensors):
            if is_norm:
                f.write(one * int(np.prod(shape)))
            else:
                write_bf16_normal(f, rng, int(np.prod(shape)))
            print(f"\r  writing {name:40s} {i + 1}/{len(tensors)}  {time.time() - t0:6.0f} s",
                  end="", flush=True)
    print()
    tmp = folder / "model.tar.part"
    with tarfile.open(tmp, "w") as tf:                   # stored, no compression
        for n in ("params.json", "tokenizer.model.v3", "consolidated.safetensors"):
            tf.add(raw / n, arcname=n)
    tmp.rename(folder / "model.tar")
    (folder / "complete").write_text(json.dumps(s))
    print(f"  checkpoint written in {time.time() - t0:.0f} s")


def cached_checkpoint(folder, s):
    done = folder / "complete"
    if done.exists() and json.loads(done.read_text()) == s:
        print(f"reusing the checkpoint in {folder}")
        return
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    print(f"writing the checkpoint into {folder}")
    write_checkpoint(folder, s)


def run_measured(label, cmd, n_cpus, env=None):
    """Run cmd; (wall s, CPU s, peak RSS bytes, load average over the run's last minute)."""
    cpus = sorted(os.sched_getaffinity(0))[:n_cpus]
    pin = None if n_cpus >= (os.cpu_count() or 1) else (lambda: os.sched_setaffinity(0, cpus))
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, preexec_fn=pin, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stderr.close()
    if p.returncode != 0:
        sys.exit(f"{label} failed ({p.returncode}):\n{err.decode()[-3000:]}")
    load = os.getloadavg()[0]
    print(f"  {label}: {wall:.0f} s wall, {ru.ru_maxrss / 1024:.0f} MB peak RSS, load {load:.2f}", flush=True)
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024, load


def tensor_types(path):
    from gguf import GGUFReader
    return {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}


LLAMA_QUANTIZE = """
import sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + sys.argv[3])
p.nthread = int(sys.argv[4])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), llama_cpp.byref(p)))
"""


def qinfer_command():
    exe = Path(sys.executable).parent / "qinfer"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from qinfer.cli import main; sys.exit(main())"]


def require_free(folder, nbytes, what):
    free = shutil.disk_usage(folder).free
    if free < nbytes:
        sys.exit(f"{folder}: {free / 1e9:.1f} GB free, {what} needs about {nbytes / 1e9:.1f} GB")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/qinfer-bench-7b", help="checkpoint cache and outputs")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--type", default="Q4_K_M")
    ap.add_argument("--tools", default="qinfer,llamacpp",
                    help="which to run (one tool per invocation lets two share a cached checkpoint)")
    ap.add_argument("--clean", action="store_true", help="delete the cached checkpoint at the end")
    a = ap.parse_args()
    s = SHAPES[a.shape]
    folder = Path(a.dir)
    model, flags = cpu_description()
    print(f"CPU: {model}; flags: {' '.join(flags)}; {os.cpu_count()} cores; threads: {a.threads}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    cached_checkpoint(folder, s)
    size_in = (folder / "model.tar").stat().st_size
    tools = a.tools.split(",")
    out_dir = folder / ("out-" + "-".join(tools))      # invocations with other --tools keep theirs
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    rows, types = [], {}
    # a Q4_K_M 7B file is ~0.3 of the bf16 size; bf16 intermediate = input size
    if "qinfer" in tools:
        require_free(folder, size_in // 2, "qinfer's output")
        q_out = out_dir / "qinfer.gguf"
        label = "qinfer convert (.tar)"
        cmd = qinfer_command() + ["convert", str(folder / "model.tar"), "-o", str(q_out), "--type", a.type, "-q"]
        rows.append((label, *run_measured(label, cmd, a.threads), q_out.stat().st_size))
        types["qinfer"] = tensor_types(q_out)
        q_out.unlink()
    if "llamacpp" in tools:
        sys.path.insert(0, str(ROOT / "tests" / "support"))
        from llamacpp_converter import llamacpp_tree
        tree = llamacpp_tree()
        env = dict(os.environ, PYTHONPATH=str(tree / "gguf-py"), NO_LOCAL_GGUF="")
        bf16 = out_dir / "llamacpp-bf16.gguf"
        require_free(folder, size_in + size_in // 2, "llama.cpp's bf16 file and its quantized output")
        label = "llama.cpp convert_hf_to_gguf (folder -> bf16)"
        cmd = [sys.executable, str(tree / "convert_hf_to_gguf.py"), str(folder / "raw"), "--mistral-format",
               "--outtype", "bf16", "--outfile", str(bf16)]
        rows.append((label, *run_measured(label, cmd, a.threads, env), bf16.stat().st_size))
        l_out = out_dir / "llamacpp.gguf"
        label = f"llama.cpp llama_model_quantize (bf16 -> {a.type})"
        cmd = [sys.executable, "-c", LLAMA_QUANTIZE, str(bf16), str(l_out), a.type, str(a.threads)]
        rows.append((label, *run_measured(label, cmd, a.threads), l_out.stat().st_size))
        types["llama.cpp"] = tensor_types(l_out)
        bf16.unlink()
        l_out.unlink()
        c, q = rows[-2], rows[-1]
        rows.append(("llama.cpp total", c[1] + q[1], c[2] + q[2], max(c[3], q[3]), q[4], q[5]))
    shutil.rmtree(out_dir)
    print(f"\n{a.shape} checkpoint, {size_in / 1e9:.2f} GB .tar -> {a.type}, {a.threads} threads "
          "(llama.cpp cannot read the .tar: it converts the unpacked folder)")
    print("| step | wall s | CPU s | peak RSS MB | load avg (1 min, at end) | output MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, wall, cpu, rss, load, size in rows:
        print(f"| {name} | {wall:.0f} | {cpu:.0f} | {rss / 2**20:.0f} | {load:.2f} | {size / 1e6:.0f} |")
    if len(types) == 2:
        same = types["qinfer"] == types["llama.cpp"]
        print(f"\ntensor names and types of the two outputs {'identical' if same else 'DIFFER'}")
        if not same:
            for n in sorted(set(types["qinfer"]) | set(types["llama.cpp"])):
                if types["qinfer"].get(n) != types["llama.cpp"].get(n):
                    print(f"  {n}: qinfer {types['qinfer'].get(n)}, llama.cpp {types['llama.cpp'].get(n)}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if a.clean:
        shutil.rmtree(folder)
        print(f"deleted {folder}")


if __name__ == "__main__":
    main()
