"""LLVM vector IR for the Numba kernels of matmul_ir.py.

Numba compiles scalar Python loops, and LLVM's vectoriser only sees one
block's loop at a time: every 16-32 codes end in a horizontal reduction and a
scalar scale multiply (benches/README.md, "Why the quantized types stay above
3x"). Numba's @intrinsic hands us llvmlite's IR builder instead, so the dot
products are written here directly on vector values (<32 x i8>, <8 x i32>,
<8 x float>) that live across blocks. The IR is target-independent: LLVM lowers
the sign-extend / multiply / pairwise-add pattern to vpmaddwd on AVX2 and to
smull/sadalp on NEON, so no code here names an instruction set.

Helpers take the IR builder `b` and return IR values; they run at compile
time only.
"""
import platform

import llvmlite.binding as llvm
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

I8, I16, I32, I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
F32 = ir.FloatType()


def _hardware_f16():
    """Whether LLVM converts half to float in one instruction for Numba's target:
    arm64 always, x86 with F16C. Elsewhere LLVM would call a runtime helper
    that Numba does not link (a crash), so the bits are converted by hand."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    if numba.config.CPU_FEATURES:   # NUMBA_CPU_FEATURES overrides the host's
        return "+f16c" in numba.config.CPU_FEATURES.split(",")
    return bool(llvm.get_host_cpu_features().get("f16c", False))


HARDWARE_F16 = _hardware_f16()


@intrinsic
def half_to_float(typingctx, bits):
    """float32 of IEEE half bits (uint16) by LLVM's fpext: vcvtph2ps with F16C,
    fcvt on arm64 (only to be used when HARDWARE_F16)."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), F32)
    return sig, codegen


def vec(t, n):
    return ir.VectorType(t, n)


def const(t, v):
    return ir.Constant(t, v)


def splat_const(t, n, v):
    return ir.Constant(vec(t, n), [ir.Constant(t, v)] * n)


def vector_const(t, values):
    return ir.Constant(vec(t, len(values)), [ir.Constant(t, x) for x in values])


def splat(b, value, n):
    """A vector of n copies of the scalar IR value."""
    v = b.insert_element(ir.Constant(vec(value.type, n), ir.Undefined), value, const(I32, 0))
    return shuffle(b, v, v, [0] * n)


def shuffle(b, x, y, idx):
    return b.shuffle_vector(x, y, ir.Constant(vec(I32, len(idx)), [const(I32, i) for i in idx]))


def byte_ptr(b, arr):
    return b.bitcast(arr.data, I8.as_pointer())


def load_vector(b, base, offset, t, n):
    """n elements of type t at byte offset (i64) from an i8* base, unaligned."""
    p = b.gep(base, [offset])
    return b.load(b.bitcast(p, vec(t, n).as_pointer()), align=1)


def load_scalar(b, base, offset, t):
    p = b.gep(base, [offset])
    return b.load(b.bitcast(p, t.as_pointer()), align=1)


def load_f16(b, base, offset):
    """float32 of the IEEE half at a byte offset. In hardware (vcvtph2ps /
    fcvt) where Numba's target has it; otherwise the bit construction of
    matmul._half_to_f32 (an fpext would become a runtime call Numba does not
    link): magnitude bits moved into float32 position, rescaled by 2**112
    (exact), exponent 31 forced to 255."""
    h = load_scalar(b, base, offset, I16)
    if HARDWARE_F16:
        return b.fpext(b.bitcast(h, ir.HalfType()), F32)
    u = b.zext(h, I32)
    inf_nan = b.and_(b.lshr(b.add(b.and_(u, const(I32, 0x7C00)), const(I32, 0x400)), const(I32, 15)),
                     const(I32, 1))
    bits = b.or_(b.or_(b.shl(b.and_(u, const(I32, 0x8000)), const(I32, 16)),
                       b.shl(b.and_(u, const(I32, 0x7FFF)), const(I32, 13))),
                 b.mul(inf_nan, const(I32, 0x7F800000)))
    return b.fmul(b.bitcast(bits, F32), const(F32, 5.192296858534828e33))


def pair_sums(b, a8, x8):
    """<32 x i8> a, x -> <16 x i32>: a[2i]*x[2i] + a[2i+1]*x[2i+1] (lanes 0-7
    from elements 0-15, lanes 8-15 from 16-31), exact."""
    a = b.sext(a8, vec(I32, 32))
    x = b.sext(x8, vec(I32, 32))
    even, odd = list(range(0, 32, 2)), list(range(1, 32, 2))
    return b.add(b.mul(shuffle(b, a, a, even), shuffle(b, x, x, even)),
                 b.mul(shuffle(b, a, a, odd), shuffle(b, x, x, odd)))


def halves_sum(b, v16):
    """<16 x i32> -> <8 x i32>: lane i + lane 8+i."""
    return b.add(shuffle(b, v16, v16, list(range(8))), shuffle(b, v16, v16, list(range(8, 16))))


def dot32(b, a8, x8):
    """<32 x i8> a, x -> <8 x i32> partial sums of a . x (exact)."""
    return halves_sum(b, pair_sums(b, a8, x8))


def mul_add(b, x, y, acc):
    """acc + x*y on float vectors, rounded as one fused operation where the
    target has FMA (contract flag: LLVM picks vfmadd / fmla, or mul + add)."""
    return b.fadd(b.fmul(x, y, flags=("contract",)), acc, flags=("contract",))


def horizontal_sum(b, v8):
    """Sum of the 8 lanes of a float vector in a fixed tree order."""
    s4 = b.fadd(shuffle(b, v8, v8, [0, 1, 2, 3]), shuffle(b, v8, v8, [4, 5, 6, 7]))
    s2 = b.fadd(shuffle(b, s4, s4, [0, 1]), shuffle(b, s4, s4, [2, 3]))
    return b.fadd(b.extract_element(s2, const(I32, 0)), b.extract_element(s2, const(I32, 1)))


def zeros_slot(b, t):
    """A stack slot holding a zero value of IR type t (promoted to a register by LLVM)."""
    return cgutils.alloca_once_value(b, ir.Constant(t, None))


def index(b, value):
    """An integer IR value as i64 (loop bounds and offsets)."""
    if value.type.width < 64:
        return b.sext(value, I64)
    return value
