"""`qinfer quantize IN.gguf OUT.gguf TYPE`."""
NAME = "quantize"
HELP = "re-type an F32/F16/BF16 GGUF file (ours or llama.cpp's) to a quantized file type"


def add_arguments(p):
    p.add_argument("src", help="input GGUF (F32, F16 or BF16 tensors)")
    p.add_argument("out", help="output GGUF")
    p.add_argument("type", help="file type: Q8_0, Q4_K_M, Q4_0, ...")
    p.add_argument("--quantizer", default="best", choices=["best", "ggml"])
    p.add_argument("--imatrix", help="llama.cpp importance-matrix file (GGUF or legacy .dat)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary line")


def run(args):
    import os

    from qinfer.convert.api import quantize

    from .progress import ProgressBar

    bar = ProgressBar("quantize", args.quiet)
    try:
        out = quantize(args.src, args.out, args.type, quantizer=args.quantizer, imatrix=args.imatrix,
                       progress=bar, force=args.force)
    finally:
        bar.close()
    if not args.quiet:
        print(f"wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB)")
    return 0
