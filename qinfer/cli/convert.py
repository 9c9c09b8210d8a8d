"""`qinfer convert SRC -o OUT.gguf [--type Q4_K_M]`."""
import os

NAME = "convert"
HELP = "convert a Mistral download (.tar or folder) or a Hugging Face folder to GGUF"


def add_arguments(p):
    p.add_argument("src", help="Mistral .tar, unpacked Mistral folder, or Hugging Face folder")
    p.add_argument("-o", "--out", required=True, help="output GGUF file")
    p.add_argument("--type", default="Q4_K_M", help="file type (F32, F16, BF16, Q8_0, Q4_K_M, ...)")
    p.add_argument("--quantizer", default="best", choices=["best", "ggml"])
    p.add_argument("--imatrix", help="llama.cpp importance-matrix file (GGUF or legacy .dat)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--no-verify", dest="verify_md5", action="store_false",
                   help="skip the md5 check of a tarball named in Mistral's published list")
    p.add_argument("-q", "--quiet", action="store_true")


def run(args):
    from qinfer.convert.api import convert

    from .progress import ProgressBar

    bar = ProgressBar("convert", args.quiet)
    try:
        out = convert(args.src, args.out, type=args.type, quantizer=args.quantizer,
                      imatrix=args.imatrix, progress=bar, force=args.force,
                      verify_md5=args.verify_md5)
    finally:
        bar.close()
    if not args.quiet:
        print(f"wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB)")
    return 0
