"""Read a GGUF file without trusting it.

    f = GGUFFile("model.gguf")
    f.metadata["llama.block_count"]          # plain Python values / numpy arrays
    info = f.tensors["blk.0.attn_q.weight"]  # TensorInfo: shape (ggml order), type, offset
    rows = f.tensor_data(info)               # uint8 view of the memory-mapped file, no copy

The whole file is memory-mapped read-only; tensor data are numpy views into
that map, so loading costs nothing until a byte is touched. Every count, size
and offset read from the file is checked against the file's size before it is
used, so a truncated or hostile file raises FormatError (naming the file and
the problem) instead of over-reading, allocating absurd amounts or looping.

Metadata values: integers, floats, bools and strings become Python scalars;
arrays of numbers become read-only numpy arrays of the stored dtype; arrays of
strings become lists of str; arrays of bools become numpy bool arrays. Strings
that are not valid UTF-8 keep their bytes via "surrogateescape". The GGUF value
type of every key is kept in `value_types` (`(ARRAY, element type)` for arrays)
so a writer can reproduce it.
"""
import mmap
import os
import struct
from dataclasses import dataclass

import numpy as np

from .errors import FormatError, UnsupportedError
from .quants.types import BY_ID, QuantType

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4          # GGML_MAX_DIMS
MAX_NAME = 64         # GGML_MAX_NAME: names must be shorter (NUL-terminated in ggml)

# GGUF value types (gguf.h).
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALAR_DTYPES = {
    UINT8: np.dtype("<u1"), INT8: np.dtype("<i1"), UINT16: np.dtype("<u2"), INT16: np.dtype("<i2"),
    UINT32: np.dtype("<u4"), INT32: np.dtype("<i4"), FLOAT32: np.dtype("<f4"), BOOL: np.dtype("<i1"),
    UINT64: np.dtype("<u8"), INT64: np.dtype("<i8"), FLOAT64: np.dtype("<f8"),
}
_STRUCT_FORMATS = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
                   FLOAT32: "<f", BOOL: "<b", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}
VALUE_TYPE_NAMES = {UINT8: "uint8", INT8: "int8", UINT16: "uint16", INT16: "int16", UINT32: "uint32",
                    INT32: "int32", FLOAT32: "float32", BOOL: "bool", STRING: "string",
                    ARRAY: "array", UINT64: "uint64", INT64: "int64", FLOAT64: "float64"}

# ggml types that llama.cpp removed (weights repacked at load time instead).
REMOVED_TYPES = {31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8",
                 36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8"}


def _ggml_type_name(type_id):
    """ggml's name for a type id qinfer does not implement, or None if ggml has none."""
    try:
        from gguf import GGMLQuantizationType
        return GGMLQuantizationType(type_id).name
    except (ImportError, ValueError):
        return None


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple        # ggml order: shape[0] is the contiguous row length
    qtype: QuantType
    offset: int         # absolute byte offset of the data in the file
    nbytes: int

    @property
    def n_per_row(self) -> int:
        return self.shape[0]

    @property
    def n_rows(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1

    @property
    def n_elements(self) -> int:
        return self.n_per_row * self.n_rows

    @property
    def row_bytes(self) -> int:
        return self.qtype.row_bytes(self.n_per_row)


class _Cursor:
    """Bounds-checked little-endian reads from a buffer; errors name the file."""

    def __init__(self, buf, size, path):
        self.buf, self.size, self.path, self.pos = buf, size, path, 0

    def fail(self, what):
        raise FormatError(f"{self.path}: {what}")

    def need(self, n, what):
        if n < 0 or n > self.size - self.pos:
            self.fail(f"truncated: {what} needs {n} bytes at offset {self.pos}, "
                      f"but the file has only {self.size - self.pos} left")

    def unpack(self, fmt, what):
        n = struct.calcsize(fmt)
        self.need(n, what)
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v[0] if len(v) == 1 else v

    def u32(self, what):
        return self.unpack("<I", what)

    def u64(self, what):
        return self.unpack("<Q", what)

    def raw_string(self, what):
        n = self.u64(f"length of {what}")
        self.need(n, what)
        b = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return b

    def string(self, what):
        return self.raw_string(what).decode("utf-8", errors="surrogateescape")

    def array(self, dtype, count, what):
        nbytes = count * dtype.itemsize
        self.need(nbytes, what)
        a = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += nbytes
        return a


def _advise_huge_pages(mm):
    """Ask Linux to read the file into 2 MiB page-cache folios and map them
    with one TLB entry each. Generation streams every weight once per token,
    and with 4 KiB pages the page walks cost 10-15% of a matmul's bandwidth
    (benches/README.md, "Huge pages"). Only pages the file reads from disk from
    now on are affected; a kernel without THP for files ignores or refuses it."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        try:
            mm.madvise(advice)
        except OSError:
            pass


class GGUFFile:
    """A parsed, validated GGUF file backed by a read-only memory map."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise FormatError(f"{self.path}: cannot open: {exc.strerror}") from None
        try:
            self.file_size = os.fstat(fd).st_size
            if self.file_size < 24:
                raise FormatError(f"{self.path}: not a GGUF file (only {self.file_size} bytes)")
            self._mmap = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        _advise_huge_pages(self._mmap)
        self.buffer = np.frombuffer(self._mmap, dtype=np.uint8)
        self.metadata = {}
        self.value_types = {}
        self.tensors = {}
        self._parse(_Cursor(self._mmap, self.file_size, self.path))

    # -- parsing ---------------------------------------------------------------

    def _parse(self, cur):
        magic = bytes(self._mmap[:4])
        if magic != MAGIC:
            cur.fail(f"not a GGUF file (magic {magic!r}, expected b'GGUF')")
        cur.pos = 4
        version = cur.u32("version")
        if version not in SUPPORTED_VERSIONS:
            if version & 0xFFFF == 0 and version >> 16:
                cur.fail(f"GGUF version {version:#x} looks byte-swapped: big-endian files are not supported")
            cur.fail(f"unsupported GGUF version {version} (qinfer reads versions 2 and 3)")
        self.version = version
        n_tensors = cur.u64("tensor count")
        n_kv = cur.u64("metadata count")
        # Each KV pair takes >= 13 bytes and each tensor info >= 28: counts beyond
        # what the file can hold are lies, caught before any loop runs.
        if n_kv > self.file_size // 13:
            cur.fail(f"truncated or corrupt: the header claims {n_kv} metadata entries, "
                     f"more than {self.file_size} bytes can hold")
        if n_tensors > self.file_size // 28:
            cur.fail(f"truncated or corrupt: the header claims {n_tensors} tensors, "
                     f"more than {self.file_size} bytes can hold")
        for i in range(n_kv):
            self._read_kv(cur, i)
        self.alignment = self._alignment(cur)
        seen = set()
        infos = [self._read_tensor_info(cur, i, seen) for i in range(n_tensors)]
        self.data_offset = -(-cur.pos // self.alignment) * self.alignment
        if n_tensors and self.data_offset > self.file_size:
            cur.fail(f"truncated: tensor data would start at {self.data_offset}, "
                     f"past the end of the file ({self.file_size} bytes)")
        self._place_tensors(cur, infos)

    def _read_kv(self, cur, i):
        key = cur.string(f"key of metadata entry {i}")
        if not key:
            cur.fail(f"metadata entry {i} has an empty key")
        if key in self.metadata:
            cur.fail(f"duplicate metadata key {key!r}")
        vtype = cur.u32(f"value type of {key!r}")
        if vtype == ARRAY:
            etype = cur.u32(f"element type of {key!r}")
            count = cur.u64(f"element count of {key!r}")
            value = self._read_array(cur, key, etype, count)
            self.value_types[key] = (ARRAY, etype)
        else:
            value = self._read_scalar(cur, key, vtype)
            self.value_types[key] = vtype
        self.metadata[key] = value

    def _read_scalar(self, cur, key, vtype):
        if vtype == STRING:
            return cur.string(f"value of {key!r}")
        dt = _SCALAR_DTYPES.get(vtype)
        if dt is None:
            cur.fail(f"metadata key {key!r} has invalid value type {vtype}")
        v = cur.unpack(_STRUCT_FORMATS[vtype], f"value of {key!r}")
        if vtype == BOOL:
            return bool(v)
        return v

    def _read_array(self, cur, key, etype, count):
        if etype == STRING:
            # Every string carries an 8-byte length: bound the count before looping.
            cur.need(count * 8 if count <= self.file_size else self.file_size + 1,
                     f"{count} strings of {key!r}")
            return [cur.string(f"element {j} of {key!r}") for j in range(count)]
        if etype == ARRAY:
            cur.fail(f"metadata key {key!r} is an array of arrays, which GGUF readers refuse")
        dt = _SCALAR_DTYPES.get(etype)
        if dt is None:
            cur.fail(f"metadata key {key!r} has invalid array element type {etype}")
        if count > self.file_size:
            cur.fail(f"metadata key {key!r} claims {count} elements, more than the file can hold")
        a = cur.array(dt, count, f"{count} elements of {key!r}")
        return a.astype(bool) if etype == BOOL else a

    def _alignment(self, cur):
        if "general.alignment" not in self.metadata:
            return DEFAULT_ALIGNMENT
        a = self.metadata["general.alignment"]
        if self.value_types["general.alignment"] != UINT32:
            cur.fail("general.alignment must be a uint32")
        if a == 0 or a & (a - 1):
            cur.fail(f"general.alignment {a} is not a power of two")
        return a

    def _read_tensor_info(self, cur, i, seen):
        name = cur.string(f"name of tensor {i}")
        if not name or len(name.encode("utf-8", "surrogateescape")) >= MAX_NAME:
            cur.fail(f"tensor {i} has an invalid name {name[:80]!r} (empty or {MAX_NAME}+ bytes)")
        if name in seen:
            cur.fail(f"duplicate tensor name {name!r}")
        seen.add(name)
        n_dims = cur.u32(f"dimension count of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            cur.fail(f"tensor {name!r} has {n_dims} dimensions (1..{MAX_DIMS} allowed)")
        shape = tuple(cur.u64(f"shape of {name!r}") for _ in range(n_dims))
        n = 1
        for d in shape:
            # ggml stores ne as int64; products must stay far below 2**63.
            if d >= 1 << 62:
                cur.fail(f"tensor {name!r} has an impossible dimension {d}")
            n *= d
            if n >= 1 << 62:
                cur.fail(f"tensor {name!r} has an impossible shape {shape}")
        type_id = cur.u32(f"type of {name!r}")
        qtype = self._tensor_type(cur, name, type_id)
        if shape[0] % qtype.block_size:
            cur.fail(f"tensor {name!r} of type {qtype.name} has rows of {shape[0]} elements, "
                     f"not a multiple of the block size {qtype.block_size}")
        offset = cur.u64(f"data offset of {name!r}")
        nbytes = n // qtype.block_size * qtype.type_size
        return name, shape, qtype, offset, nbytes

    def _tensor_type(self, cur, name, type_id):
        if type_id in REMOVED_TYPES:
            cur.fail(f"tensor {name!r} has type {REMOVED_TYPES[type_id]} (id {type_id}), which "
                     "llama.cpp removed; re-quantize to Q4_0 (repacking happens at run time)")
        qt = BY_ID.get(type_id)
        if qt is not None:
            return qt
        known = _ggml_type_name(type_id)
        if known is not None:
            raise UnsupportedError(f"{self.path}: tensor {name!r} has type {known} (id {type_id}), "
                                   "which qinfer does not support")
        cur.fail(f"tensor {name!r} has unknown type id {type_id}")

    def _place_tensors(self, cur, infos):
        spans = []
        for name, shape, qtype, rel, nbytes in infos:
            if rel % self.alignment:
                cur.fail(f"tensor {name!r} data offset {rel} is not aligned to {self.alignment}")
            start = self.data_offset + rel
            if rel > self.file_size or nbytes > self.file_size - start:
                cur.fail(f"truncated: tensor {name!r} needs bytes {start}..{start + nbytes} "
                         f"but the file ends at {self.file_size}")
            self.tensors[name] = TensorInfo(name, shape, qtype, start, nbytes)
            spans.append((start, start + nbytes, name))
        spans.sort()
        end, last = 0, None
        for start, stop, name in spans:
            if stop == start:
                continue  # an empty tensor overlaps nothing
            if start < end:
                cur.fail(f"tensors {last!r} and {name!r} overlap in the file")
            end, last = stop, name

    # -- access ----------------------------------------------------------------

    def get(self, key, default=None):
        return self.metadata.get(key, default)

    def tensor_data(self, t):
        """The tensor's bytes as a read-only uint8 view shaped
        [outer dims (reversed ggml order) ..., row_bytes]; no copy."""
        info = self.tensors[t] if isinstance(t, str) else t
        flat = self.buffer[info.offset:info.offset + info.nbytes]
        outer = tuple(reversed(info.shape[1:]))
        return flat.reshape(outer + (info.row_bytes,))

    def close(self):
        """Drop this object's references to the map. The map itself is freed
        when the last numpy view into it is gone."""
        self.buffer = None
        self._mmap = None

    def __repr__(self):
        return (f"GGUFFile({self.path!r}, version={self.version}, "
                f"{len(self.metadata)} keys, {len(self.tensors)} tensors)")
