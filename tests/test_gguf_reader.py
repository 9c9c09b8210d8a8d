"""qinfer.gguf_file reads what gguf-py writes, and refuses broken files cleanly.

Oracle: gguf-py (GGUFWriter writes the files, GGUFReader reads them back).
Fuzzing: mutated and truncated copies of a real file must either parse into
tensors that lie inside the file, or raise a QinferError — never another
exception, a hang or an over-read.
"""
import struct

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from gguf import quants as gq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qinfer.errors import FormatError, QinferError, UnsupportedError
from qinfer.gguf_file import GGUFFile


def _write_sample(path, alignment=None):
    rng = np.random.default_rng(7)
    w = GGUFWriter(str(path), "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -5)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 0.25)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", -1.5e300)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo ▁ wörld")
    w.add_array("t.strs", ["a", "", "ü▁", "<0x0A>"])
    w.add_array("t.ints", [1, -2, 3])
    w.add_array("t.floats", [0.5, -1.0])
    w.add_array("t.bools", [True, False, True])
    tensors = {
        "a.f32": rng.standard_normal((3, 5), dtype=np.float32),
        "b.f16": rng.standard_normal((2, 4, 8)).astype(np.float16),
        "c.vec": rng.standard_normal(7, dtype=np.float32),
    }
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    q = rng.standard_normal((4, 64), dtype=np.float32)
    qbytes = gq.quantize(q, T.Q8_0)
    w.add_tensor("d.q8", qbytes, raw_dtype=T.Q8_0)
    tensors["d.q8"] = qbytes
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "sample.gguf"
    tensors = _write_sample(path)
    return path, tensors


def test_metadata_matches_gguf_reader(sample):
    path, _ = sample
    ours = GGUFFile(path)
    ref = GGUFReader(str(path))
    # GGUFReader adds the header as pseudo-keys "GGUF.version", ... .
    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert list(ours.metadata) == list(fields)
    assert ours.version == ref.fields["GGUF.version"].parts[-1][0]
    for key, field in fields.items():
        value = ours.metadata[key]
        types = field.types
        if types[0] == GGUFValueType.ARRAY:
            assert ours.value_types[key] == (9, int(types[1]))
            if types[1] == GGUFValueType.STRING:
                assert value == [bytes(field.parts[i]).decode() for i in field.data]
            else:
                np.testing.assert_array_equal(value, [field.parts[i][0] for i in field.data])
        elif types[0] == GGUFValueType.STRING:
            assert value == bytes(field.parts[field.data[0]]).decode()
        else:
            assert ours.value_types[key] == int(types[0])
            assert value == field.parts[field.data[0]][0]
    assert ours.metadata["t.u64"] == 2**63 + 5
    assert ours.metadata["t.bool"] is True
    assert ours.metadata["t.strs"] == ["a", "", "ü▁", "<0x0A>"]


def test_tensors_match_gguf_reader(sample):
    path, written = sample
    ours = GGUFFile(path)
    ref = {t.name: t for t in GGUFReader(str(path)).tensors}
    assert list(ours.tensors) == list(ref)
    for name, info in ours.tensors.items():
        r = ref[name]
        assert info.shape == tuple(int(d) for d in r.shape)
        assert info.qtype.ggml_id == int(r.tensor_type)
        assert info.offset == r.data_offset and info.nbytes == r.n_bytes
        data = ours.tensor_data(info)
        assert data.base is not None and not data.flags.writeable  # a view of the map
        assert data.tobytes() == np.asarray(written[name]).tobytes()
    assert ours.tensor_data("b.f16").shape == (2, 4, 16)
    assert ours.tensors["b.f16"].n_rows == 8


def test_custom_alignment(tmp_path):
    path = tmp_path / "a.gguf"
    _write_sample(path, alignment=64)
    f = GGUFFile(path)
    assert f.alignment == 64 and f.data_offset % 64 == 0
    assert all((t.offset - f.data_offset) % 64 == 0 for t in f.tensors.values())


# -- hand-made broken files ---------------------------------------------------

def _gguf(kvs=b"", n_kv=0, tensor_infos=b"", n_tensors=0, data=b"", version=3, align_pad=True):
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + kvs + tensor_infos
    if align_pad and n_tensors:
        head += b"\0" * (-len(head) % 32)
    return head + data


def _s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def _tinfo(name, shape, type_id, offset):
    return _s(name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape) \
        + struct.pack("<IQ", type_id, offset)


def _refuse(tmp_path, blob, match, exc=FormatError):
    p = tmp_path / "bad.gguf"
    p.write_bytes(blob)
    with pytest.raises(exc, match=match) as ei:
        GGUFFile(p)
    assert str(p) in str(ei.value)


def test_refuses_bad_headers(tmp_path):
    ok = _gguf(tensor_infos=_tinfo("x", [8], 0, 0), n_tensors=1, data=b"\0" * 32)
    p = tmp_path / "ok.gguf"
    p.write_bytes(ok)
    assert GGUFFile(p).tensors["x"].nbytes == 32
    _refuse(tmp_path, b"", "not a GGUF file")
    _refuse(tmp_path, b"GGML" + ok[4:], "magic")
    _refuse(tmp_path, _gguf(version=1) + b"\0" * 8, "version 1")
    _refuse(tmp_path, _gguf(version=3 << 24) + b"\0" * 8, "byte-swapped")
    _refuse(tmp_path, ok[:-1], "truncated")
    _refuse(tmp_path, _gguf(n_kv=10**15) + b"\0" * 8, "metadata entries")
    _refuse(tmp_path, _gguf(n_tensors=10**15) + b"\0" * 8, "tensors")
    _refuse(tmp_path, _gguf(kvs=_s("k") + struct.pack("<I", 99), n_kv=1) + b"\0" * 8, "invalid value type")
    _refuse(tmp_path, _gguf(kvs=_s("k") + struct.pack("<IIQ", 9, 9, 1), n_kv=1) + b"\0" * 8,
            "array of arrays")
    _refuse(tmp_path, _gguf(kvs=_s("k") + struct.pack("<IIQ", 9, 8, 2**60), n_kv=1), "truncated")
    _refuse(tmp_path, _gguf(kvs=_s("k") + struct.pack("<IIQ", 9, 4, 2**62), n_kv=1), "more than the file")
    kv = _s("k") + struct.pack("<IB", 0, 1)
    _refuse(tmp_path, _gguf(kvs=kv + kv, n_kv=2) + b"\0" * 8, "duplicate metadata key")
    _refuse(tmp_path, _gguf(kvs=_s("") + struct.pack("<IB", 0, 1), n_kv=1) + b"\0" * 8, "empty key")
    _refuse(tmp_path, _gguf(kvs=_s("general.alignment") + struct.pack("<II", 4, 48), n_kv=1)
            + b"\0" * 8, "power of two")
    _refuse(tmp_path, _gguf(kvs=_s("general.alignment") + struct.pack("<IQ", 10, 64), n_kv=1)
            + b"\0" * 8, "uint32")


def test_refuses_bad_tensor_infos(tmp_path):
    def one(info, data=b"\0" * 64):
        return _gguf(tensor_infos=info, n_tensors=1, data=data)

    _refuse(tmp_path, one(_tinfo("x", [8], 0, 64)), "truncated: tensor 'x'")
    _refuse(tmp_path, one(_tinfo("x", [8], 0, 2**63)), "truncated: tensor 'x'")
    _refuse(tmp_path, one(_tinfo("x", [8], 0, 4)), "not aligned")
    _refuse(tmp_path, one(_tinfo("x", [30], 8, 0)), "not a multiple of the block size 32")
    _refuse(tmp_path, one(_tinfo("x", [8], 200, 0)), "unknown type id 200")
    _refuse(tmp_path, one(_tinfo("x", [32], 33, 0)), "Q4_0_8_8.*removed")
    _refuse(tmp_path, one(_tinfo("x", [256], 16, 0)), "IQ2_XXS", UnsupportedError)
    _refuse(tmp_path, one(_tinfo("x", [2**40, 2**40], 0, 0)), "impossible shape")
    _refuse(tmp_path, one(_tinfo("x", [1] * 5, 0, 0)), "5 dimensions")
    _refuse(tmp_path, one(_tinfo("", [8], 0, 0)), "invalid name")
    _refuse(tmp_path, one(_tinfo("n" * 64, [8], 0, 0)), "invalid name")
    two = _tinfo("x", [8], 0, 0) + _tinfo("x", [8], 0, 32)
    _refuse(tmp_path, _gguf(tensor_infos=two, n_tensors=2, data=b"\0" * 64), "duplicate tensor")
    overlap = _tinfo("x", [16], 0, 0) + _tinfo("y", [8], 0, 32)
    _refuse(tmp_path, _gguf(tensor_infos=overlap, n_tensors=2, data=b"\0" * 96), "overlap")


# -- fuzzing --------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample_bytes(sample):
    return sample[0].read_bytes()


def _parse_or_refuse(tmp_path, blob):
    p = tmp_path / "fuzz.gguf"
    p.write_bytes(blob)
    try:
        f = GGUFFile(p)
    except QinferError as exc:
        assert str(p) in str(exc)
        return None
    for info in f.tensors.values():
        assert f.data_offset <= info.offset and info.offset + info.nbytes <= len(blob)
        assert f.tensor_data(info).nbytes == info.nbytes
    return f


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(data=st.data())
def test_fuzz_mutated_bytes(tmp_path, sample_bytes, data):
    blob = bytearray(sample_bytes)
    for _ in range(data.draw(st.integers(1, 6))):
        # Mostly hit the header/metadata/tensor-info region, where the parser works.
        pos = data.draw(st.integers(0, min(len(blob) - 1, 1200)))
        blob[pos] = data.draw(st.integers(0, 255))
    _parse_or_refuse(tmp_path, bytes(blob))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(data=st.data())
def test_fuzz_truncated_or_extended(tmp_path, sample_bytes, data):
    full = _parse_or_refuse(tmp_path, sample_bytes)
    data_end = max(t.offset + t.nbytes for t in full.tensors.values())
    cut = data.draw(st.integers(0, len(sample_bytes)))
    extra = data.draw(st.binary(max_size=16))
    f = _parse_or_refuse(tmp_path, sample_bytes[:cut] + extra)
    if cut + len(extra) < data_end:
        # Shorter than the last tensor's end: must be refused (trailing padding may go).
        assert f is None, f"a file cut at {cut} of {len(sample_bytes)} bytes was accepted"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=80)
@given(data=st.data())
def test_fuzz_counts_and_lengths(tmp_path, sample_bytes, data):
    # Overwrite one 8-byte little-endian field (a count, length or offset) with a
    # hostile value: the classic over-read/over-allocate attack.
    blob = bytearray(sample_bytes)
    pos = data.draw(st.integers(8, 900))
    value = data.draw(st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**62, 2**63, 2**64 - 1,
                                       len(blob), len(blob) + 1]))
    blob[pos:pos + 8] = struct.pack("<Q", value)
    _parse_or_refuse(tmp_path, bytes(blob))
