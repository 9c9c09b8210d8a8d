"""Find what a user downloaded: a Mistral .tar (read in place), an unpacked
Mistral folder (params.json), or a Hugging Face folder (config.json)."""
import json
import os
import tarfile
from dataclasses import dataclass, field

from qinfer.errors import FormatError, UnsupportedError

from .pth_reader import read_pth
from .safetensors_reader import read_safetensors

TOKENIZER_NAMES = ("tekken.json", "tokenizer.model.v7", "tokenizer.model.v3", "tokenizer.model.v2",
                   "tokenizer.model.v1", "tokenizer.model", "tokenizer.json")


@dataclass
class Member:
    """A file of the checkpoint: a path, or a byte range inside a tar."""
    name: str
    path: str
    offset: int = 0
    size: int = 0

    def read(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read(self.size)


@dataclass
class Checkpoint:
    kind: str                     # "mistral" (params.json) or "hf" (config.json)
    label: str
    files: dict = field(default_factory=dict)   # base name -> Member

    def json(self, name):
        try:
            return json.loads(self.files[name].read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"{self.label}: {name} is not valid JSON ({exc})") from None

    def tensors(self):
        """{tensor name: TensorRef} over every weights file of the checkpoint: the
        .safetensors files, or else the PyTorch .pth files (Mistral-7B-v0.1 and the
        Mixtral tarballs ship consolidated.00.pth). Several files must hold disjoint
        tensors: a tensor split across shards (model-parallel checkpoints) is refused
        rather than guessed at."""
        for suffix, reader in ((".safetensors", read_safetensors), (".pth", read_pth)):
            names = sorted(n for n in self.files if n.endswith(suffix))
            if names:
                break
        else:
            raise FormatError(f"{self.label}: no weights found (consolidated.safetensors, "
                              "consolidated.00.pth or model*.safetensors)")
        out, where = {}, {}
        for n in names:
            m = self.files[n]
            for name, ref in reader(m.path, m.offset, m.size, f"{self.label}:{n}").items():
                if name in out:
                    raise UnsupportedError(f"{self.label}: tensor {name!r} is in both {where[name]} and "
                                           f"{n}; checkpoints that split tensors across shards are "
                                           "not supported")
                out[name], where[name] = ref, n
        return out

    def tokenizer(self):
        for n in TOKENIZER_NAMES:
            if n in self.files:
                return self.files[n]
        raise FormatError(f"{self.label}: no tokenizer file (tokenizer.model*, tekken.json)")


def open_checkpoint(src):
    src = os.fspath(src)
    if not os.path.exists(src):
        raise FormatError(f"{src}: no such file or folder")
    files = {}
    if os.path.isdir(src):
        for n in os.listdir(src):
            p = os.path.join(src, n)
            if os.path.isfile(p):
                files[n] = Member(n, p, 0, os.path.getsize(p))
    else:
        size = os.path.getsize(src)
        try:
            with tarfile.open(src, "r:") as tf:
                for ti in tf:
                    if ti.isfile():
                        if ti.issparse():
                            # the bytes stored are the file minus its holes: no range of
                            # the tar holds the member as it is, so it cannot be mapped
                            raise UnsupportedError(f"{src}: {ti.name!r} is stored sparse in the tar; "
                                                   "unpack it and convert the folder")
                        if ti.offset_data + ti.size > size:
                            raise FormatError(f"{src}: tar is truncated inside {ti.name!r}")
                        base = os.path.basename(ti.name)
                        files[base] = Member(base, src, ti.offset_data, ti.size)
        except tarfile.TarError as exc:
            raise FormatError(f"{src}: not a readable uncompressed tar ({exc})") from None
    if "params.json" in files:
        kind = "mistral"
    elif "config.json" in files:
        kind = "hf"
    else:
        raise FormatError(f"{src}: neither params.json (Mistral) nor config.json (Hugging Face) found")
    return Checkpoint(kind, src, files)
