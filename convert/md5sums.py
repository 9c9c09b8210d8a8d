"""md5 check of Mistral's published raw tarballs.

Mistral publishes an md5 for each raw download (REFERENCE.md §11). A tarball of
15 to 260 GB that was cut short or corrupted in transit can still parse as a tar
(members before the damage look fine), so when the file name of a tarball is one
of Mistral's, its md5 is checked once, before any conversion work, streaming the
file in large chunks and reporting progress through the converter's callback.
"""
import hashlib
import os
import time

from qinfer.errors import QinferError

# Mistral's published list, verbatim (tarball name -> md5). Two downloads of
# Mistral 7B v0.3 (base and instruct) are listed under the same name
# mistral-7B-v0.3.tar, so a name maps to every md5 published for it. The
# torrent of Mixtral-8x22B-v0.1 is a folder, not a tarball: no file name of a
# tarball can match it, so it is not in this table.
PUBLISHED = (
    ("mistral-7B-v0.1.tar", "37dab53973db2d56b2da0a033a15307f"),
    ("Mistral-7B-v0.2-Instruct.tar", "fbae55bc038f12f010b4251326e73d39"),
    ("mistral-7B-v0.3.tar", "0663b293810d7571dad25dae2f2a5806"),      # base
    ("mistral-7B-v0.3.tar", "80b71fcb6416085bcb4efad86dfb4d52"),      # instruct
    ("Mixtral-8x7B-v0.1-Instruct.tar", "8e2d3930145dc43d3084396f49d38a3f"),
    ("mixtral-8x22B-Instruct-v0.3.tar", "471a02a6902706a2f1e44a693813855b"),
    ("mixtral-8x22B-v0.3.tar", "a2fa75117174f87d1197e3a4eb50371a"),
    ("codestral-22B-v0.1.tar", "1ea95d474a1d374b1d1b20a8e0159de3"),
    ("mathstral-7B-v0.1.tar", "5f05443e94489c261462794b1016f10b"),
    ("mistral-nemo-base-2407.tar", "c5d079ac4b55fc1ae35f51f0a3c0eb83"),
    ("mistral-nemo-instruct-2407.tar", "296fbdf911cb88e6f0be74cd04827fe7"),
    ("mistral-large-instruct-2407.tar", "fc602155f9e39151fba81fcaab2fa7c4"),
    ("codestral-mamba-7B-v0.1.tar", "d3993e4024d1395910c55db0d11db163"),
)

# 16 MiB reads: few enough system calls that hashing runs at md5's own speed
# (hashlib releases the GIL on large buffers), small enough to stay out of RSS.
CHUNK = 16 << 20


def expected_md5s(path):
    """The md5s Mistral published for a tarball with this file name (case-insensitive,
    as case-insensitive file systems and browsers may change it), or () if none."""
    base = os.path.basename(os.fspath(path)).lower()
    return tuple(md5 for name, md5 in PUBLISHED if name.lower() == base)


def file_md5(path, progress=None):
    """Hex md5 of a file, read in CHUNK pieces; progress(name, done, total, elapsed)
    is called after each piece with name "md5 <file name>"."""
    h = hashlib.md5()
    label = f"md5 {os.path.basename(path)}"
    total = os.path.getsize(path)
    done, t0 = 0, time.time()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            done += n
            if progress:
                progress(label, done, total, time.time() - t0)
    return h.hexdigest()


def verify_published_md5(path, progress=None):
    """If `path` is a tarball Mistral published an md5 for, check it. Returns the md5
    when checked, None when the name is not in the list; raises QinferError naming
    the file, the expected and the actual md5 when it does not match."""
    path = os.fspath(path)
    expected = expected_md5s(path)
    if not expected or not os.path.isfile(path):
        return None
    try:
        got = file_md5(path, progress)
    except OSError as exc:
        raise QinferError(f"{path}: cannot read it to check its md5 ({exc.strerror or exc})") from None
    if got not in expected:
        raise QinferError(f"{path}: md5 is {got}, but Mistral published {' or '.join(expected)} "
                          "for this file: the download is corrupt or incomplete "
                          "(pass --no-verify to convert it anyway)")
    return got
