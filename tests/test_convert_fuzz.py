"""Fuzzing the checkpoint readers with mutated real files.

Real files are written by their own tools (tarfile, safetensors, torch.save);
hypothesis then flips bits, overwrites byte ranges and truncates them, aiming
most mutations at the bytes a reader trusts: tar header blocks, the safetensors
length and JSON header, the zip's local headers and central directory, and the
pickle (also re-zipped with a valid CRC, so that the unpickler itself sees the
damage). Whatever the bytes, a reader either returns tensors that lie inside
the file and map, or raises a QinferError; never another exception, never a hang.
"""
import contextlib
import io
import json
import signal
import subprocess
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_safetensors

from qinfer.convert.pth_reader import read_pth
from qinfer.convert.safetensors_reader import read_safetensors
from qinfer.convert.sources import open_checkpoint
from qinfer.errors import QinferError, UnsupportedError

# Files here are a few KB: a reader answers in milliseconds, so 10 s means it hangs.
HANG_SECONDS = 10
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _state():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 32, generator=g).to(torch.bfloat16)
    return {"tok_embeddings.weight": w, "norm.weight": torch.randn(32, generator=g),
            "layers.0.attention.wq.weight": w[2:6],            # a view at a storage offset
            "output.weight": torch.randn(4, 32, generator=g).half()}


def _pth_bytes(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip_regions(data):
    """Byte ranges of every local header, the pickle and the central directory."""
    regions = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            start = info.header_offset
            name_len, extra_len = int.from_bytes(data[start + 26:start + 28], "little"), \
                int.from_bytes(data[start + 28:start + 30], "little")
            body = start + 30 + name_len + extra_len
            regions.append((start, body))
            if info.filename.endswith("data.pkl"):
                regions.append((body, body + info.compress_size))
        regions.append((z.start_dir, len(data)))
    return regions


def _tar_regions(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [(ti.offset, ti.offset_data) for ti in tf] + [(len(data) - 1024, len(data))]


@contextlib.contextmanager
def _no_hang():
    def hang(signum, frame):
        raise AssertionError(f"reader still busy after {HANG_SECONDS} s")
    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@st.composite
def mutated(draw, data, regions):
    """`data` after 1-4 mutations, each placed in a trusted region (3 in 4) or anywhere."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 3)) and regions:
            lo, hi = draw(st.sampled_from(regions))
        else:
            lo, hi = 0, len(out)
        hi = min(hi, len(out))
        if hi <= lo:
            continue
        pos = draw(st.integers(lo, hi - 1))
        kind = draw(st.sampled_from(["flip", "overwrite", "truncate"]))
        if kind == "flip":
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            # Small random bytes, or a length-like value (0, huge, all ones)
            chunk = draw(st.one_of(st.binary(min_size=1, max_size=8),
                                   st.sampled_from([b"\x00" * 4, b"\xff" * 8, b"\x7f\xff\xff\xff",
                                                    (1 << 40).to_bytes(8, "little")])))
            out[pos:pos + len(chunk)] = chunk
        else:
            del out[pos:]
    return bytes(out)


def _check_refs(refs, path, lo, hi):
    """Tensors returned for a file must lie inside bytes [lo, hi) of it and map."""
    for name, ref in refs.items():
        assert ref.path == str(path)
        assert lo <= ref.offset and ref.offset + ref.nbytes <= hi, (name, ref)
        a = ref.array()
        assert a.shape == ref.shape and a.nbytes <= ref.nbytes


def _read_or_refuse(read):
    with _no_hang():
        try:
            return read()
        except QinferError as exc:
            # The CLI prints the message as one line: damaged bytes must not add lines
            # or control characters to it.
            assert str(exc).isprintable(), str(exc)
            return None


# ---- safetensors -----------------------------------------------------------------------

SAFETENSORS = save_safetensors({k: v.clone() for k, v in _state().items()})
_HLEN = int.from_bytes(SAFETENSORS[:8], "little")


@FUZZ
@given(data=mutated(SAFETENSORS, [(0, 8), (8, 8 + _HLEN)]))
def test_safetensors_reader(data, tmp_path):
    path = tmp_path / "consolidated.safetensors"
    path.write_bytes(data)
    refs = _read_or_refuse(lambda: read_safetensors(str(path)))
    if refs is not None:
        _check_refs(refs, path, 0, len(data))


@FUZZ
@given(header=st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets", "x"]),
                              st.one_of(st.integers(-2**70, 2**70), st.text(max_size=4),
                                        st.lists(st.integers(-5, 2**66), max_size=3), st.none())),
       pad=st.integers(0, 64))
def test_safetensors_reader_on_lying_headers(header, pad, tmp_path):
    # Well-formed JSON whose entries lie: wrong types, huge or negative sizes/offsets.
    blob = json.dumps({"t": header}).encode()
    path = tmp_path / "lying.safetensors"
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + bytes(pad))
    refs = _read_or_refuse(lambda: read_safetensors(str(path)))
    if refs is not None:
        _check_refs(refs, path, 0, path.stat().st_size)


# ---- .pth --------------------------------------------------------------------------------

PTH = _pth_bytes(_state())


@FUZZ
@given(data=mutated(PTH, _zip_regions(PTH)))
def test_pth_reader(data, tmp_path):
    path = tmp_path / "consolidated.00.pth"
    path.write_bytes(data)
    refs = _read_or_refuse(lambda: read_pth(str(path)))
    if refs is not None:
        _check_refs(refs, path, 0, len(data))


def _rezip(data, pickle_bytes):
    """The checkpoint `data` with its data.pkl replaced (CRC recomputed)."""
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = pickle_bytes if info.filename.endswith("data.pkl") else src.read(info)
            dst.writestr(info.filename, body)
    return out.getvalue()


_PICKLE = zipfile.ZipFile(io.BytesIO(PTH)).read(
    next(n for n in zipfile.ZipFile(io.BytesIO(PTH)).namelist() if n.endswith("data.pkl")))


@FUZZ
@given(pkl=mutated(_PICKLE, [(0, len(_PICKLE))]))
def test_pth_reader_on_damaged_pickles(pkl, tmp_path):
    path = tmp_path / "consolidated.00.pth"
    path.write_bytes(_rezip(PTH, pkl))
    refs = _read_or_refuse(lambda: read_pth(str(path)))
    if refs is not None:
        _check_refs(refs, path, 0, path.stat().st_size)


# ---- tar (holding the weights, so they are read at an offset inside the tar) -------------

def _tar_of(weights_name, weights):
    return _tar_bytes({"params.json": json.dumps({"dim": 32, "n_layers": 1}).encode(),
                       "tokenizer.model.v3": b"\x0a\x03abc", weights_name: weights})


TARS = {"pth": _tar_of("consolidated.00.pth", PTH),
        "safetensors": _tar_of("consolidated.safetensors", SAFETENSORS)}


def _tar_test(weights):
    @FUZZ
    @given(data=mutated(TARS[weights], _tar_regions(TARS[weights])))
    def test(data, tmp_path):
        path = tmp_path / "model.tar"
        path.write_bytes(data)

        def read():
            ck = open_checkpoint(str(path))
            for m in ck.files.values():
                assert m.path == str(path) and 0 <= m.offset and m.offset + m.size <= len(data)
            ck.json("params.json")
            ck.tokenizer()
            refs = ck.tensors()
            member = next(m for n, m in ck.files.items() if n.endswith((".pth", ".safetensors")))
            return refs, member

        got = _read_or_refuse(read)
        if got is not None:
            refs, member = got
            # inside the weights member, not merely inside the tar
            _check_refs(refs, path, member.offset, member.offset + member.size)
    return test


test_tar_reader_with_pth = _tar_test("pth")
test_tar_reader_with_safetensors = _tar_test("safetensors")


def test_unmutated_files_read_completely(tmp_path):
    # The fuzz tests above are only meaningful if the originals read: check that
    # each reader finds every tensor with torch's values.
    state = _state()
    (tmp_path / "a.safetensors").write_bytes(SAFETENSORS)
    (tmp_path / "a.pth").write_bytes(PTH)
    (tmp_path / "a.tar").write_bytes(TARS["pth"])
    (tmp_path / "b.tar").write_bytes(TARS["safetensors"])
    for refs in (read_safetensors(str(tmp_path / "a.safetensors")), read_pth(str(tmp_path / "a.pth")),
                 open_checkpoint(str(tmp_path / "a.tar")).tensors(),
                 open_checkpoint(str(tmp_path / "b.tar")).tensors()):
        assert refs.keys() == state.keys()
        for n, t in state.items():
            np.testing.assert_array_equal(refs[n].float32(), t.float().numpy())


def _gnu_tar():
    try:
        return "GNU tar" in subprocess.run(["tar", "--version"], capture_output=True, text=True).stdout
    except OSError:
        return False


@pytest.mark.skipif(not _gnu_tar(), reason="needs GNU tar to write a sparse member")
def test_sparse_tar_member_is_refused(tmp_path):
    # GNU tar -S stores a file with holes as its data blocks only: reading the member's
    # byte range in place would give wrong weights, so it is refused by name.
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "params.json").write_text("{}")
    with open(folder / "consolidated.safetensors", "wb") as f:
        f.write(SAFETENSORS)
        f.seek(1 << 20)                 # a 1 MiB hole, then data
        f.write(b"end")
    tar = tmp_path / "sparse.tar"
    subprocess.run(["tar", "-S", "-cf", str(tar), "-C", str(folder), "."], check=True)
    with pytest.raises(UnsupportedError) as exc:
        open_checkpoint(str(tar))
    assert str(exc.value) == (f"{tar}: './consolidated.safetensors' is stored sparse in the tar; "
                              "unpack it and convert the folder")
