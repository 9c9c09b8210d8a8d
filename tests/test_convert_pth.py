"""PyTorch .pth checkpoints read without torch (convert/pth_reader.py).

torch writes the files here (torch.save) and is the oracle for their values;
the reader itself must work, and refuse anything but tensors, without it.
"""
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import run_qinfer
from hf_to_gguf_f32 import tiny_mistral, tiny_mixtral
from tiny_checkpoints import VOCAB, write_pth_forms
from qinfer.convert.api import convert
from qinfer.convert.pth_reader import read_pth
from qinfer.convert.sources import open_checkpoint
from qinfer.errors import FormatError, UnsupportedError
from qinfer.gguf_file import GGUFFile

MODELS = {"mistral": lambda: tiny_mistral(vocab=VOCAB),
          "mixtral": lambda: tiny_mixtral(vocab=VOCAB)}
# torch dtype -> the dtype name TensorRef reports (safetensors')
DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.float64: "F64",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
          torch.uint8: "U8", torch.bool: "BOOL"}


def _bits(t):
    """A torch tensor's stored values as numpy, bf16 as its uint16 bit patterns
    (TensorRef.array() keeps bf16 as raw bits)."""
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(np.uint16)
    return t.contiguous().numpy()


def _tensors(path):
    f = GGUFFile(path)
    return {n: (t.qtype.name, bytes(f.tensor_data(t))) for n, t in f.tensors.items()}


@pytest.fixture(scope="module", params=list(MODELS))
def forms(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"pth-{request.param}")
    return write_pth_forms(MODELS[request.param](), str(root)), root, request.param


def test_pth_converts_like_safetensors(forms):
    paths, root, _ = forms
    # Q8_0 exercises the quantizer, BF16 checks every value passes through unchanged.
    for ftype in ("Q8_0", "BF16"):
        outs = {k: _tensors(convert(v, root / f"{k}-{ftype}.gguf", type=ftype, quantizer="ggml",
                                    force=True)) for k, v in paths.items()}
        assert outs["pth"] == outs["st"] == outs["pth_tar"]
        assert len(outs["st"]) > 10


def test_reader_equals_torch_load_in_folder_and_tar(forms):
    paths, root, _ = forms
    ref = torch.load(os.path.join(paths["pth"], "consolidated.00.pth"), weights_only=True)
    for src in (paths["pth"], paths["pth_tar"]):
        got = open_checkpoint(src).tensors()
        assert got.keys() == ref.keys()
        for n, t in ref.items():
            assert got[n].dtype == "BF16" and got[n].shape == tuple(t.shape)
            np.testing.assert_array_equal(got[n].array(), _bits(t))


def test_disjoint_shards_merge_and_overlapping_shards_are_refused(tmp_path):
    model = tiny_mistral(vocab=VOCAB)
    one = write_pth_forms(model, str(tmp_path / "one"))
    three = write_pth_forms(model, str(tmp_path / "three"), shards=3)
    assert sorted(os.listdir(three["pth"]))[:3] == [f"consolidated.0{i}.pth" for i in range(3)]
    a = _tensors(convert(one["pth"], tmp_path / "one.gguf", type="BF16"))
    b = _tensors(convert(three["pth_tar"], tmp_path / "three.gguf", type="BF16"))
    assert a == b
    # a tensor present in two shards (a model-parallel split) is refused, not guessed at
    sd = torch.load(os.path.join(three["pth"], "consolidated.00.pth"), weights_only=True)
    extra = torch.load(os.path.join(three["pth"], "consolidated.01.pth"), weights_only=True)
    dup = next(iter(sd))
    extra[dup] = sd[dup]
    torch.save(extra, os.path.join(three["pth"], "consolidated.01.pth"))
    with pytest.raises(UnsupportedError, match=f"{dup}.*consolidated.00.pth and consolidated.01.pth"):
        open_checkpoint(three["pth"]).tensors()


@st.composite
def state_dicts(draw):
    """Tensors of every storage dtype torch names, with views that share a storage at
    an offset (slices along dim 0), scalars, empty tensors, Parameters and tensors
    carrying Python attributes."""
    out = OrderedDict()
    for i in range(draw(st.integers(1, 5))):
        dtype = draw(st.sampled_from(sorted(DTYPES, key=str)))
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
        base = (torch.arange(int(np.prod(shape, dtype=np.int64)) * 3 + 3) % 251).to(dtype)
        t = base[: int(np.prod(shape, dtype=np.int64))].reshape(shape)
        out[f"t{i}"] = t
        if shape and shape[0] > 1 and draw(st.booleans()):
            out[f"t{i}.view"] = t[draw(st.integers(1, shape[0] - 1)):]     # same storage, offset
        if draw(st.booleans()) and dtype.is_floating_point:
            out[f"t{i}.param"] = torch.nn.Parameter(t.clone(), requires_grad=False)
        if draw(st.booleans()):
            tagged = t.clone()
            tagged.note = draw(st.sampled_from([1, "x", [2.5]]))   # saved via _rebuild_from_type_v2
            out[f"t{i}.tagged"] = tagged
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sd=state_dicts(), protocol=st.sampled_from([2, 4, 5]))
def test_any_state_dict_reads_as_torch_load(sd, protocol, tmp_path):
    # torch.save pickles with protocol 2 unless told otherwise; 4 and 5 name globals
    # with STACK_GLOBAL and frame the stream.
    path = tmp_path / "sd.pth"
    torch.save(sd, path, pickle_protocol=protocol)
    got = read_pth(str(path))
    assert got.keys() == sd.keys()
    size = os.path.getsize(path)
    for n, t in sd.items():
        assert got[n].shape == tuple(t.shape) and got[n].dtype == DTYPES[t.dtype]
        assert 0 <= got[n].offset and got[n].offset + got[n].nbytes <= size
        np.testing.assert_array_equal(got[n].array(), _bits(t.detach()))


def test_reader_never_imports_torch(forms):
    paths, _, _ = forms
    code = ("import sys; sys.modules['torch'] = None\n"     # any 'import torch' now fails
            "from qinfer.convert.pth_reader import read_pth\n"
            f"refs = read_pth({os.path.join(paths['pth'], 'consolidated.00.pth')!r})\n"
            "print(len(refs), sum(float(r.float32().sum()) != 0 for r in refs.values()))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=paths["pth"])
    assert r.returncode == 0, r.stderr
    n, nonzero = map(int, r.stdout.split())
    assert n > 10 and nonzero == n


# ---- refusals ------------------------------------------------------------------------

class _Payload:
    """Pickles as a call of `func(*args)`: what a malicious checkpoint carries."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _zip_pth(path, pkl, members=(), method=zipfile.ZIP_STORED, byteorder=b"little"):
    """A torch-style zip around the pickle bytes `pkl` and storage members {key: bytes}."""
    with zipfile.ZipFile(path, "w", method) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", byteorder)
        for key, data in dict(members).items():
            z.writestr(f"archive/data/{key}", data)
    return path


def _payloads(marker):
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "posix.system": _Payload(os.system, f"touch {marker}"),
        "builtins.eval": _Payload(eval, touch),
        "builtins.exec": _Payload(exec, touch),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(marker)]),
    }


@pytest.mark.parametrize("name", ["posix.system", "builtins.eval", "builtins.exec", "subprocess.call"])
def test_code_in_the_pickle_is_refused_and_not_run(tmp_path, name):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[name]
    # control: an ordinary unpickler does run it
    pickle.loads(pickle.dumps(payload, protocol=2))
    assert marker.exists()
    marker.unlink()
    # hidden among real tensors, as torch.save writes it ...
    beside = tmp_path / "beside.pth"
    torch.save({"w": torch.ones(4, dtype=torch.bfloat16), "x": payload}, beside)
    # ... and as the whole pickle (protocol 0 and the highest protocol)
    alone0 = _zip_pth(tmp_path / "alone0.pth", pickle.dumps(payload, protocol=0))
    alone5 = _zip_pth(tmp_path / "alone5.pth", pickle.dumps(payload, protocol=5))
    for path in (beside, alone0, alone5):
        with pytest.raises(FormatError) as exc:
            read_pth(str(path))
        assert str(exc.value) == f"{path}: refuses to unpickle {name}: only tensors are allowed"
    assert not marker.exists()


def test_other_globals_are_refused(tmp_path):
    # numpy arrays, a torch rebuild outside the allow-list, any other builtin
    torch.save({"a": np.zeros(3)}, tmp_path / "numpy.pth")
    torch.save({"a": torch.zeros(2, dtype=torch.float8_e4m3fn)}, tmp_path / "float8.pth")
    cases = {"numpy.pth": "numpy", "float8.pth": "torch._utils._rebuild_tensor_v3",
             "getattr.pth": "builtins.getattr"}
    _zip_pth(tmp_path / "getattr.pth", pickle.dumps(_Payload(getattr, "x", "upper"), protocol=2))
    for fname, what in cases.items():
        with pytest.raises(FormatError, match=f"{fname}: refuses to unpickle {what}"):
            read_pth(str(tmp_path / fname))


def test_pickle_cannot_alter_the_allowed_globals(tmp_path):
    # GLOBAL 'torch BFloat16Storage', then BUILD with {"dtype": "F32"} on it: were that
    # accepted, every later file would read bf16 storages as float32.
    evil = b"\x80\x02ctorch\nBFloat16Storage\n}X\x05\x00\x00\x00dtypeX\x03\x00\x00\x00F32sb."
    with pytest.raises(FormatError, match="set the state of torch.BFloat16Storage"):
        read_pth(str(_zip_pth(tmp_path / "build.pth", evil)))
    # _rebuild_from_type_v2 may only wrap the plain tensor rebuild, here it is handed
    # OrderedDict as the function to call
    redirect = b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n(ccollections\nOrderedDict\nctorch\nTensor\n)}tR."
    with pytest.raises(FormatError, match="rebuilt as something other than a plain torch.Tensor"):
        read_pth(str(_zip_pth(tmp_path / "redirect.pth", redirect)))
    torch.save({"w": torch.arange(6, dtype=torch.bfloat16)}, tmp_path / "good.pth")
    ref = read_pth(str(tmp_path / "good.pth"))["w"]
    assert ref.dtype == "BF16" and ref.float32().tolist() == list(range(6))


def _point_member_at(data, member, target):
    """The zip `data` with the central directory entry of `member` pointing at the
    local header of `target` (names relative to the checkpoint's folder)."""
    data = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        infos = {i.filename.split("/", 1)[1]: i for i in z.infolist()}
        pos = z.start_dir
    while data[pos:pos + 4] == b"PK\x01\x02":       # central directory entries
        n, m, k = struct.unpack("<HHH", data[pos + 28:pos + 34])
        if bytes(data[pos + 46:pos + 46 + n]).decode() == infos[member].filename:
            data[pos + 42:pos + 46] = struct.pack("<I", infos[target].header_offset)
        pos += 46 + n + m + k
    return bytes(data)


def test_malformed_checkpoints_are_refused(tmp_path):
    w = torch.arange(12, dtype=torch.bfloat16).reshape(3, 4)
    torch.save({"w": w.t()}, tmp_path / "strided.pth")
    torch.save({"w": w}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    torch.save({"model": {"w": w}}, tmp_path / "nested.pth")
    torch.save([w], tmp_path / "list.pth")
    good = tmp_path / "good.pth"
    torch.save({"w": w}, good)
    # compressed storage member: cannot be memory-mapped
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(tmp_path / "deflated.pth", "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(good) as src:
        prefix = src.namelist()[0].split("/")[0]
        pkl = src.read(f"{prefix}/data.pkl")
        storage = src.read(f"{prefix}/data/0")
    _zip_pth(tmp_path / "big_endian.pth", pkl, {"0": storage}, byteorder=b"big")
    _zip_pth(tmp_path / "short_storage.pth", pkl, {"0": storage[:-2]})
    _zip_pth(tmp_path / "no_storage.pth", pkl)
    two = tmp_path / "two.pth"
    torch.save({"w": w, "v": w + 1}, two)
    (tmp_path / "aliased.pth").write_bytes(_point_member_at(two.read_bytes(), "data/1", "data/0"))
    cases = {"strided.pth": (UnsupportedError, "only contiguous"),
             "legacy.pth": (UnsupportedError, "legacy (before 1.6) format"),
             "nested.pth": (FormatError, "'model' is not a named tensor"),
             "list.pth": (FormatError, "holds a list, not a state dict"),
             "deflated.pth": (UnsupportedError, "is compressed"),
             "big_endian.pth": (UnsupportedError, "not little-endian"),
             "short_storage.pth": (FormatError, "claims 12 BF16 elements"),
             "no_storage.pth": (FormatError, "no data/0 member"),
             "aliased.pth": (FormatError, "data/1: its local header names another file")}
    for fname, (kind, text) in cases.items():
        with pytest.raises(kind) as exc:
            read_pth(str(tmp_path / fname))
        assert str(exc.value).startswith(str(tmp_path / fname)) and text in str(exc.value), exc.value
    assert read_pth(str(good))["w"].shape == (3, 4)


def test_cli_refuses_a_malicious_checkpoint(forms, tmp_path):
    paths, _, name = forms
    if name != "mistral":
        pytest.skip("one model is enough for the command line")
    marker = tmp_path / "pwned"
    for form in ("folder", "tar"):
        src = tmp_path / f"evil-{form}"
        shutil.copytree(paths["pth"], src)
        pth = src / "consolidated.00.pth"
        sd = torch.load(pth, weights_only=True)
        sd["layers.0.attention.wq.weight"] = _Payload(os.system, f"touch {marker}")
        torch.save(sd, pth)
        if form == "tar":
            with tarfile.open(tmp_path / "evil.tar", "w") as tf:
                for n in sorted(os.listdir(src)):
                    tf.add(src / n, arcname=n)
            src = tmp_path / "evil.tar"
        out = tmp_path / f"{form}.gguf"
        r = run_qinfer("convert", src, "-o", out, "--type", "Q8_0")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines() == [
            f"qinfer convert: error: {src}:consolidated.00.pth: refuses to unpickle posix.system: "
            "only tensors are allowed"], r.stderr
        assert not out.exists() and not list(tmp_path.glob(".qinfer-*")) and not marker.exists()


def test_zip64_records_and_offsets_past_4_gib(tmp_path):
    # torch writes zip64 records for checkpoints over 4 GiB (Mistral 7B's is 14 GB):
    # the local headers then carry a zip64 extra field before the data. And a .pth
    # inside a tarball sits at a tar offset past 4 GiB for all but the first member.
    state = {"w": torch.arange(64, dtype=torch.bfloat16).reshape(8, 8), "b": torch.ones(3)}
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    zip64 = tmp_path / "zip64.pth"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(zip64, "w") as dst:
        for info in src.infolist():
            with dst.open(info.filename, "w", force_zip64=True) as out:
                out.write(src.read(info))
    body = zip64.read_bytes()
    assert b"\x01\x00\x10\x00" in body[:200]        # zip64 extra (id 1, 16 bytes) in a local header
    base = 5 << 30
    far = tmp_path / "far.bin"                      # sparse: only the last pages use disk
    with open(far, "wb") as f:
        f.seek(base)
        f.write(body)
    for refs in (read_pth(str(zip64)), read_pth(str(far), base, len(body))):
        assert refs.keys() == state.keys()
        for n, t in state.items():
            np.testing.assert_array_equal(refs[n].array(), _bits(t))
    assert read_pth(str(far), base, len(body))["w"].offset > base


def test_safetensors_are_preferred_over_pth(forms, tmp_path):
    # A folder holding both reads the safetensors; the .pth beside them is not opened
    # (here it would be refused).
    paths, _, name = forms
    if name != "mistral":
        pytest.skip("one model is enough")
    both = tmp_path / "both"
    shutil.copytree(paths["st"], both)
    _zip_pth(both / "consolidated.00.pth", pickle.dumps(_Payload(os.system, "true"), protocol=2))
    refs = open_checkpoint(both).tensors()
    assert {r.path for r in refs.values()} == {str(both / "consolidated.safetensors")}
    with pytest.raises(FormatError, match="refuses to unpickle posix.system"):
        read_pth(str(both / "consolidated.00.pth"))
