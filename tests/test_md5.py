"""md5 check of tarballs named as in Mistral's published list (convert/md5sums.py)."""
import hashlib
import os
import shutil

import pytest

from cli import run_qinfer
from hf_to_gguf_f32 import tiny_mistral
from tiny_checkpoints import VOCAB, write_forms
from qinfer.convert import md5sums
from qinfer.convert.api import convert
from qinfer.errors import QinferError
from qinfer.gguf_file import GGUFFile


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    root = tmp_path_factory.mktemp("md5")
    return write_forms(tiny_mistral(vocab=VOCAB), str(root))["tar"]


def _md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def test_published_list_lookup():
    # Values from REFERENCE.md §11; the name match ignores case.
    assert md5sums.expected_md5s("/dl/mistral-7B-v0.1.tar") == ("37dab53973db2d56b2da0a033a15307f",)
    assert md5sums.expected_md5s("MIXTRAL-8X7B-V0.1-INSTRUCT.TAR") == ("8e2d3930145dc43d3084396f49d38a3f",)
    # base and instruct v0.3 are both published as mistral-7B-v0.3.tar
    assert set(md5sums.expected_md5s("mistral-7B-v0.3.tar")) == {
        "0663b293810d7571dad25dae2f2a5806", "80b71fcb6416085bcb4efad86dfb4d52"}
    assert md5sums.expected_md5s("model.tar") == ()
    assert all(len(m) == 32 and set(m) <= set("0123456789abcdef") for _, m in md5sums.PUBLISHED)


def test_streamed_md5_and_progress(tarball, monkeypatch):
    monkeypatch.setattr(md5sums, "CHUNK", 4096)   # many chunks out of a small file
    calls = []
    got = md5sums.file_md5(tarball, lambda *a: calls.append(a))
    assert got == _md5(tarball)
    size = os.path.getsize(tarball)
    assert len(calls) == -(-size // 4096)
    assert [c[1] for c in calls] == sorted(c[1] for c in calls) and calls[-1][1] == size
    assert all(c[0] == f"md5 {os.path.basename(tarball)}" and c[2] == size for c in calls)


def test_convert_checks_a_published_name(tarball, tmp_path, monkeypatch):
    src = tmp_path / "mistral-7B-v0.1.tar"
    shutil.copy(tarball, src)
    real = _md5(src)
    out = tmp_path / "out.gguf"

    # matching: converts, and the md5 phase reported progress over the whole tarball
    monkeypatch.setattr(md5sums, "PUBLISHED", (("mistral-7B-v0.1.tar", real),))
    seen = []
    convert(src, out, type="F32", progress=lambda n, d, t, e: seen.append((n, d, t)))
    assert GGUFFile(out).tensors
    assert ("md5 mistral-7B-v0.1.tar", os.path.getsize(src), os.path.getsize(src)) in seen

    # mismatching: one message naming the file, the published and the actual md5; no output
    wrong = "0" * 32
    monkeypatch.setattr(md5sums, "PUBLISHED", (("mistral-7B-v0.1.tar", wrong),))
    out2 = tmp_path / "out2.gguf"
    with pytest.raises(QinferError) as exc:
        convert(src, out2, type="F32")
    msg = str(exc.value)
    assert str(src) in msg and wrong in msg and real in msg and "--no-verify" in msg
    assert not out2.exists() and not list(tmp_path.glob(".qinfer-*"))

    # skipped on request: the same mismatching file converts
    convert(src, out2, type="F32", verify_md5=False)
    assert GGUFFile(out2).tensors

    # a name outside the list is not hashed at all
    monkeypatch.setattr(md5sums, "file_md5", lambda *a: pytest.fail("hashed an unlisted tarball"))
    convert(tarball, tmp_path / "out3.gguf", type="F32")


def test_cli_reports_mismatch_and_no_verify_skips(tarball, tmp_path):
    # A tiny tarball under a real published name cannot have Mistral's md5.
    src = tmp_path / "mistral-7B-v0.1.tar"
    shutil.copy(tarball, src)
    out = tmp_path / "out.gguf"
    r = run_qinfer("convert", src, "-o", out, "--type", "F32", "-q")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "37dab53973db2d56b2da0a033a15307f" in r.stderr and _md5(src) in r.stderr and str(src) in r.stderr
    assert not out.exists()
    r = run_qinfer("convert", src, "-o", out, "--type", "F32", "-q", "--no-verify")
    assert r.returncode == 0, r.stderr
    assert GGUFFile(out).tensors
