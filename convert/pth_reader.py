"""PyTorch zip checkpoints (consolidated.00.pth) read without torch and without
running anything the file asks for.

A torch.save file is a zip: `<prefix>/data.pkl` pickles the state dict, each
tensor storage's bytes are the member `<prefix>/data/<key>`, stored uncompressed.
Unpickling an arbitrary pickle runs arbitrary code, so the unpickler here knows
exactly the globals a state dict of tensors needs and returns its own inert
stand-ins for them: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`
(and `_rebuild_parameter` and `torch._tensor._rebuild_from_type_v2` with
`torch.Tensor`, which wrap it for parameters and for tensors carrying Python
attributes), and the typed storage classes torch 2.x names in persistent ids. Anything else is refused by name before it is
looked up. Tensors come back as the same lazy TensorRef the safetensors reader
returns: a byte range of the file (or of the tar holding it), memory-mapped only
when converted, so nothing is copied.
"""
import _compat_pickle
import collections
import io
import lzma
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

from qinfer.errors import FormatError, UnsupportedError

from .safetensors_reader import DTYPES, TensorRef

# torch's typed storage class -> the dtype name TensorRef uses (safetensors').
STORAGES = {"BFloat16Storage": "BF16", "HalfStorage": "F16", "FloatStorage": "F32",
            "DoubleStorage": "F64", "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16",
            "CharStorage": "I8", "ByteStorage": "U8", "BoolStorage": "BOOL"}
# A state dict's pickle takes ~100 bytes per tensor (a few hundred KB for the ~2000
# tensors of Mixtral 8x22B); a far larger one is not a state dict and is refused
# before it is read into memory.
MAX_PICKLE = 64 << 20
_LOCAL_HEADER = struct.Struct("<4s22xHH")   # signature ... name length, extra length
# torch's legacy format starts by pickling this magic number (protocol 2, LONG1).
_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"


class _Window(io.RawIOBase):
    """Read-only file object over path[base : base+size] (a tar member or a whole
    file): zipfile sees the member as the whole file and cannot read past it."""

    def __init__(self, f, base, size):
        self._f, self._base, self._size, self._pos = f, base, size, 0

    @property
    def size(self):
        return self._size

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, pos, whence=0):
        start = {0: 0, 1: self._pos, 2: self._size}[whence]
        if start + pos < 0:
            raise OSError("seek before the start of the member")
        self._pos = start + pos
        return self._pos

    def readinto(self, b):
        n = max(0, min(len(b), self._size - self._pos))
        self._f.seek(self._base + self._pos)
        got = self._f.readinto(memoryview(b)[:n]) if n else 0
        self._pos += got
        return got


class _Storage:
    """One storage the pickle referred to: where its bytes are and how many elements."""
    __slots__ = ("dtype", "key", "offset", "numel")

    def __init__(self, dtype, key, offset, numel):
        self.dtype, self.key, self.offset, self.numel = dtype, key, offset, numel

    def __setstate__(self, state):
        raise FormatError("pickle tries to set the state of a storage")


class _Tensor:
    """A tensor the pickle rebuilt: a contiguous range of a storage."""
    __slots__ = ("dtype", "shape", "offset", "nbytes")

    def __init__(self, dtype, shape, offset, nbytes):
        self.dtype, self.shape, self.offset, self.nbytes = dtype, shape, offset, nbytes

    def __setstate__(self, state):
        raise FormatError("pickle tries to set the state of a tensor")


class _Global:
    """What find_class hands the unpickler for an allowed global: an inert object
    that forwards calls to our rebuild function (None for storage classes, which
    only name a dtype). Slots and a refusing __setstate__ keep a pickle from
    changing it (BUILD), so one file cannot alter how the next is read."""
    __slots__ = ("qualname", "call", "dtype")

    def __init__(self, qualname, call=None, dtype=None):
        self.qualname, self.call, self.dtype = qualname, call, dtype

    def __call__(self, *args):
        if self.call is None:
            raise FormatError(f"pickle calls {self.qualname}")
        return self.call(*args)

    def __setstate__(self, state):
        raise FormatError(f"pickle tries to set the state of {self.qualname}")


def _printable(text):
    """`text` for a one-line message: control characters of a damaged file escaped."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _int(v, what):
    # bool is an int subclass; a pickle that says True for a size is not a state dict.
    if type(v) is not int:
        raise FormatError(f"{what} is {type(v).__name__}, not an integer")
    return v


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, _Storage):
        raise FormatError("a tensor is rebuilt from something that is not a storage")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
        raise FormatError("a tensor's size and stride are not tuples of one length")
    shape = tuple(_int(s, "a tensor dimension") for s in size)
    strides = tuple(_int(s, "a tensor stride") for s in stride)
    start = _int(storage_offset, "a storage offset")
    if start < 0 or any(s < 0 for s in shape):
        raise FormatError("a tensor has a negative dimension or storage offset")
    count = int(np.prod(shape, dtype=object)) if shape else 1
    expect = 1
    for dim, st in zip(reversed(shape), reversed(strides)):
        if dim != 1 and st != expect and count:
            raise UnsupportedError(f"a tensor of shape {shape} has strides {strides}: only contiguous "
                                   "tensors are supported (re-save it with .contiguous())")
        expect *= dim
    if count == 0:
        # torch lets an empty view's offset point anywhere; it reads no bytes.
        start = 0
    if start + count > storage.numel:
        raise FormatError(f"a tensor of shape {shape} at element {start} runs past its storage "
                          f"{storage.key!r} of {storage.numel} elements")
    itemsize = np.dtype(DTYPES[storage.dtype]).itemsize
    return _Tensor(storage.dtype, shape, storage.offset + start * itemsize, count * itemsize)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _Tensor):
        raise FormatError("a parameter wraps something that is not a tensor")
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    # torch.save's form for a tensor carrying Python attributes (t.foo = ...): the
    # plain rebuild, then the attributes (`state`), which say nothing about its values.
    if func is not ALLOWED[("torch._utils", "_rebuild_tensor_v2")] or new_type is not _TENSOR \
            or not isinstance(args, tuple):
        raise FormatError("a tensor is rebuilt as something other than a plain torch.Tensor")
    return func(*args)


def _ordered_dict(*args):
    if args:
        raise FormatError("OrderedDict is called with arguments")
    return collections.OrderedDict()


ALLOWED = {("collections", "OrderedDict"): _Global("collections.OrderedDict", _ordered_dict),
           ("torch._utils", "_rebuild_tensor_v2"): _Global("torch._utils._rebuild_tensor_v2",
                                                           _rebuild_tensor_v2),
           ("torch._utils", "_rebuild_parameter"): _Global("torch._utils._rebuild_parameter",
                                                           _rebuild_parameter)}
_TENSOR = _Global("torch.Tensor")       # only ever compared against, never called
ALLOWED.update({("torch", name): _Global(f"torch.{name}", dtype=dtype) for name, dtype in STORAGES.items()})
ALLOWED[("torch", "Tensor")] = _TENSOR
ALLOWED[("torch._tensor", "_rebuild_from_type_v2")] = _Global("torch._tensor._rebuild_from_type_v2",
                                                              _rebuild_from_type_v2)


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, data, storage):
        super().__init__(io.BytesIO(data))
        self._storage = storage

    def find_class(self, module, name):
        # Protocols 0-2 (torch.save uses 2) spell some globals by their Python 2 names
        # (__builtin__.eval, commands.call); name them as Python 3 does, like the
        # stdlib's own find_class, so the message says what the file asks for.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise FormatError(f"refuses to unpickle {_printable(module)}.{_printable(name)}: "
                              "only tensors are allowed") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _Global) and pid[1].dtype and isinstance(pid[2], str)):
            raise FormatError(f"unexpected persistent id {str(pid)[:80]}")
        return self._storage(pid[1].dtype, pid[2], _int(pid[4], "a storage size"))


def _member_data(window, info):
    """Offset of a stored member's bytes inside the window, from its local header."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise UnsupportedError(f"member {_printable(info.filename)} is compressed; tensors must be "
                               "stored uncompressed (as torch.save writes them) to be memory-mapped")
    if info.compress_size != info.file_size:
        raise FormatError(f"member {_printable(info.filename)} has inconsistent sizes")
    window.seek(info.header_offset)
    raw = window.read(_LOCAL_HEADER.size)
    if len(raw) != _LOCAL_HEADER.size or raw[:4] != b"PK\x03\x04":
        raise FormatError(f"member {_printable(info.filename)} has no local header where the "
                          "central directory says")
    _, name_len, extra_len = _LOCAL_HEADER.unpack(raw)
    # The local header must name the member too: a central directory that points two
    # members at one local header would otherwise alias storages silently.
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if window.read(name_len) != info.orig_filename.encode(encoding, "surrogateescape"):
        raise FormatError(f"member {_printable(info.filename)}: its local header names another file")
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    if start + info.file_size > window.size:
        raise FormatError(f"member {_printable(info.filename)} runs past the end of the file")
    return start


def _open_zip(window, label):
    if window.read(len(_LEGACY_MAGIC)) == _LEGACY_MAGIC:
        raise UnsupportedError(f"{label}: written in torch's legacy (before 1.6) format, which is not "
                               "supported; re-save it with a current torch")
    window.seek(0)
    try:
        return zipfile.ZipFile(window)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error,
            OverflowError, UnicodeDecodeError) as exc:
        raise FormatError(f"{label}: not a PyTorch zip checkpoint ({_printable(str(exc))})") from None


def _records(zf, label):
    """{record name: ZipInfo} of the single top-level folder torch.save writes."""
    pkls = [i.filename for i in zf.infolist()
            if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
    if len(pkls) != 1:
        raise FormatError(f"{label}: a PyTorch checkpoint has one data.pkl, this zip has {len(pkls)}")
    prefix = pkls[0][: -len("data.pkl")]
    return {i.filename[len(prefix):]: i for i in zf.infolist() if i.filename.startswith(prefix)}


# the compression methods zipfile decompresses (others raise from inside zf.read)
READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _read_record(zf, info, label, limit):
    if info.file_size > limit:
        raise FormatError(f"{label}: {info.filename} is {info.file_size} bytes, too large for a state dict")
    if info.compress_type not in READABLE_METHODS:
        raise FormatError(f"{label}: {_printable(info.filename)} uses zip compression method "
                          f"{info.compress_type}, which Python's zipfile cannot read")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError, EOFError, ValueError, struct.error,
            OverflowError, RuntimeError) as exc:
        # CRC mismatch, bad local header, damaged compressed stream, encryption
        raise FormatError(f"{label}: cannot read {_printable(info.filename)} "
                          f"({_printable(str(exc))})") from None


def read_pth(path, base=0, size=None, label=None):
    """Index the PyTorch zip checkpoint stored at `path`[base : base+size] (a plain
    file or a tar member). Returns {name: TensorRef}."""
    label = label or path
    with open(path, "rb") as f:
        fsize = os.fstat(f.fileno()).st_size
        if size is None:
            size = fsize - base
        if base + size > fsize:
            raise FormatError(f"{label}: file is truncated ({fsize - base} of {size} bytes present)")
        window = _Window(f, base, size)
        zf = _open_zip(window, label)
        records = _records(zf, label)
        order = records.get("byteorder")
        if order is not None and _read_record(zf, order, label, 16) != b"little":
            raise UnsupportedError(f"{label}: tensors are not little-endian")
        data = _read_record(zf, records["data.pkl"], label, MAX_PICKLE)
        storages = {}

        def storage(dtype, key, numel):
            got = storages.get(key)
            if got is None:
                info = records.get(f"data/{key}")
                if info is None:
                    raise FormatError(f"storage {key!r} has no data/{_printable(key)} member")
                if numel < 0 or numel * np.dtype(DTYPES[dtype]).itemsize > info.file_size:
                    raise FormatError(f"storage {key!r} claims {numel} {dtype} elements, more "
                                      f"than its {info.file_size}-byte member holds")
                got = storages[key] = _Storage(dtype, key, base + _member_data(window, info), numel)
            elif got.dtype != dtype:
                raise FormatError(f"storage {key!r} is used as both {got.dtype} and {dtype}")
            return got

        try:
            obj = _StateDictUnpickler(data, storage).load()
        except FormatError as exc:
            raise FormatError(f"{label}: {_printable(str(exc))}") from None
        except UnsupportedError as exc:
            raise UnsupportedError(f"{label}: {_printable(str(exc))}") from None
        except Exception as exc:
            # A damaged pickle fails inside the unpickler with whatever it tripped on
            # (UnpicklingError, EOFError, KeyError, TypeError, MemoryError ...); all
            # mean the same to the user: data.pkl is not a valid state dict.
            raise FormatError(f"{label}: corrupt data.pkl ({type(exc).__name__}: "
                              f"{_printable(str(exc))[:200]})") from None
    if not isinstance(obj, dict):
        raise FormatError(f"{label}: holds a {type(obj).__name__}, not a state dict of tensors")
    out = {}
    for name, t in obj.items():
        if not isinstance(name, str) or not isinstance(t, _Tensor):
            raise FormatError(f"{label}: entry {str(name)[:80]!r} is not a named tensor")
        out[name] = TensorRef(name, t.dtype, t.shape, path, t.offset, t.nbytes)
    return out
