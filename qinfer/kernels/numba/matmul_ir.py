"""y = x @ W.T for the quantized weight types in the Numba backend, each
row dot product one LLVM vector-IR function (vector_ir.py).

Same arithmetic as the C core (csrc/act_quant.c, csrc/dot_*.c): activations
quantized to int8 per 32 values (Q8_0 form) or per 256 (Q8_K form), with
the integer sums of every 16; per block an exact integer dot product of the
weight codes with them, scaled in float (weight scale x activation scale;
the min / offset terms through the 16-value sums) and accumulated in 8 float
lanes that are summed once per row. Only the order of the float additions
differs from the C kernels. Every (row, token) pair is computed by the same
function, so a token's outputs depend neither on the batch it came in nor on
the thread split.

Block layouts and element order: REFERENCE.md §1 (the per-type code
builders below say which bits make each element's code).
"""
import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from . import vector_ir as v
from .row_pool import claim, finish, run

U = np.uintp
TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
BLOCK = {name: 256 if name.endswith("_K") else 32 for name in TYPES}


def _arrays(context, builder, signature, args, which):
    return [context.make_array(signature.args[i])(context, builder, args[i]) for i in which]


def _legacy_dot(context, b, signature, args, type_size, codes, has_min):
    """sum over blocks of d_w * d_x * (codes . q) [+ m * d_x * sum(q)];
    args = (w, row offset, q, d, s16, n_blocks); codes(b, row base, block
    offset) -> <32 x i8> weight codes (signed, or unsigned below 32)."""
    w, q, d, s16 = _arrays(context, b, signature, args, (0, 2, 3, 4))
    wbase = b.gep(v.byte_ptr(b, w), [v.index(b, args[1])])
    qbase, dbase = v.byte_ptr(b, q), b.bitcast(d.data, v.F32.as_pointer())
    sbase = b.bitcast(s16.data, v.I32.as_pointer())
    acc = v.zeros_slot(b, v.vec(v.F32, 8))
    mins = v.zeros_slot(b, v.F32)
    with v.cgutils.for_range(b, v.index(b, args[5])) as loop:
        i = loop.index
        ob = b.mul(i, v.const(v.I64, type_size))
        xq = v.load_vector(b, qbase, b.mul(i, v.const(v.I64, 32)), v.I8, 32)
        s = b.sitofp(v.dot32(b, codes(b, wbase, ob), xq), v.vec(v.F32, 8))
        dx = b.load(b.gep(dbase, [i]))
        scale = b.fmul(v.load_f16(b, wbase, ob), dx)
        b.store(v.mul_add(b, s, v.splat(b, scale, 8), b.load(acc)), acc)
        if has_min:   # + m * d_x * (sum of the block's 32 quantized activations)
            two = b.mul(i, v.const(v.I64, 2))
            qsum = b.add(b.load(b.gep(sbase, [two])), b.load(b.gep(sbase, [b.add(two, v.const(v.I64, 1))])))
            m = b.fmul(v.load_f16(b, wbase, b.add(ob, v.const(v.I64, 2))), dx)
            b.store(v.mul_add(b, b.sitofp(qsum, v.F32), m, b.load(mins)), mins)
    total = v.horizontal_sum(b, b.load(acc))
    return b.fadd(total, b.load(mins)) if has_min else total


def _nibbles(b, wbase, offset):
    """<32 x i8> of the 16 bytes at offset: low nibbles (elements 0-15), then high (16-31)."""
    raw = v.load_vector(b, wbase, offset, v.I8, 16)
    return v.shuffle(b, b.and_(raw, v.splat_const(v.I8, 16, 15)), b.lshr(raw, v.splat_const(v.I8, 16, 4)),
                     list(range(32)))


def _fifth_bits(b, wbase, offset):
    """<32 x i8>: 16 where bit j of the little-endian uint32 at offset is set (element j), else 0."""
    qh = v.splat(b, v.load_scalar(b, wbase, offset, v.I32), 32)
    bits = v.vector_const(v.I32, [1 << j for j in range(32)])
    hit = b.icmp_unsigned("!=", b.and_(qh, bits), v.splat_const(v.I32, 32, 0))
    return b.select(hit, v.splat_const(v.I8, 32, 16), v.splat_const(v.I8, 32, 0))


def _codes_q4_0(b, wbase, ob):
    return b.sub(_nibbles(b, wbase, b.add(ob, v.const(v.I64, 2))), v.splat_const(v.I8, 32, 8))


def _codes_q4_1(b, wbase, ob):
    return _nibbles(b, wbase, b.add(ob, v.const(v.I64, 4)))


def _codes_q5_0(b, wbase, ob):
    code = b.or_(_nibbles(b, wbase, b.add(ob, v.const(v.I64, 6))), _fifth_bits(b, wbase, b.add(ob, v.const(v.I64, 2))))
    return b.sub(code, v.splat_const(v.I8, 32, 16))


def _codes_q5_1(b, wbase, ob):
    return b.or_(_nibbles(b, wbase, b.add(ob, v.const(v.I64, 8))), _fifth_bits(b, wbase, b.add(ob, v.const(v.I64, 4))))


def _codes_q8_0(b, wbase, ob):
    return v.load_vector(b, wbase, b.add(ob, v.const(v.I64, 2)), v.I8, 32)


def _legacy(type_size, codes, has_min):
    def codegen(context, b, signature, args):
        return _legacy_dot(context, b, signature, args, type_size, codes, has_min)

    @intrinsic
    def dot(typingctx, w, offset, q, d, s16, n_blocks):
        return types.float32(w, offset, q, d, s16, n_blocks), codegen
    return dot


# Row of blocks at byte `offset` of w . activations (q int8, d f32 per 32, s16 int32 per 16).
dot_q4_0 = _legacy(18, _codes_q4_0, False)
dot_q4_1 = _legacy(20, _codes_q4_1, True)
dot_q5_0 = _legacy(22, _codes_q5_0, False)
dot_q5_1 = _legacy(24, _codes_q5_1, True)
dot_q8_0 = _legacy(34, _codes_q8_0, False)


def _q45_k_scales(b, blk):
    """The 8 (scale, min) pairs of a Q4_K/Q5_K super-block as i32 IR values
    (REFERENCE.md: 6 bits each in the 12 bytes at offset 4)."""
    byte = [b.zext(v.load_scalar(b, blk, v.const(v.I64, 4 + k), v.I8), v.I32) for k in range(12)]
    c63, c15, c6, c4 = (v.const(v.I32, c) for c in (63, 15, 6, 4))
    sc, mn = [], []
    for j in range(8):
        if j < 4:
            sc.append(b.and_(byte[j], c63))
            mn.append(b.and_(byte[j + 4], c63))
        else:
            sc.append(b.or_(b.and_(byte[j + 4], c15), b.shl(b.lshr(byte[j - 4], c6), c4)))
            mn.append(b.or_(b.lshr(byte[j + 4], c4), b.shl(b.lshr(byte[j], c6), c4)))
    return sc, mn


def _q3_k_scales(b, blk):
    """The 16 signed scales of a Q3_K super-block (REFERENCE.md: low 4 bits in
    bytes 96-103, top 2 bits in bytes 104-107, stored +32)."""
    byte = [b.zext(v.load_scalar(b, blk, v.const(v.I64, 96 + k), v.I8), v.I32) for k in range(12)]
    out = []
    for j in range(16):
        low = b.and_(byte[j], v.const(v.I32, 15)) if j < 8 else b.lshr(byte[j - 8], v.const(v.I32, 4))
        high = b.and_(b.lshr(byte[8 + j % 4], v.const(v.I32, 2 * (j // 4))), v.const(v.I32, 3))
        out.append(b.sub(b.or_(low, b.shl(high, v.const(v.I32, 4))), v.const(v.I32, 32)))
    return out


def _sixteens(b, codes, xq, scale_a, scale_b):
    """<8 x i32> of scale_a * (first 16 codes . q) + scale_b * (last 16 . q) lanes."""
    both = v.shuffle(b, v.splat(b, scale_a, 8), v.splat(b, scale_b, 8), list(range(16)))
    return v.halves_sum(b, b.mul(v.pair_sums(b, codes, xq), both))


def _k_dot(context, b, signature, args, type_size, super_block):
    """sum over super-blocks of d * d_x * isum - dmin * d_x * msum, args = (w,
    row offset, q, d, s16, n_super); super_block(b, blk, xq(offset), s16(k))
    -> (isum <8 x i32>, msum i32 or None, d, dmin or None)."""
    w, q, d, s16 = _arrays(context, b, signature, args, (0, 2, 3, 4))
    wbase = b.gep(v.byte_ptr(b, w), [v.index(b, args[1])])
    qbase, dbase = v.byte_ptr(b, q), b.bitcast(d.data, v.F32.as_pointer())
    sbase = b.bitcast(s16.data, v.I32.as_pointer())
    acc = v.zeros_slot(b, v.vec(v.F32, 8))
    mins = v.zeros_slot(b, v.F32)
    with v.cgutils.for_range(b, v.index(b, args[5])) as loop:
        i = loop.index
        blk = b.gep(wbase, [b.mul(i, v.const(v.I64, type_size))])
        x0 = b.mul(i, v.const(v.I64, 256))
        s0 = b.mul(i, v.const(v.I64, 16))

        def xq(offset):
            return v.load_vector(b, qbase, b.add(x0, v.const(v.I64, offset)), v.I8, 32)

        def qsum16(k):   # sum of the quantized activations k*16 .. k*16+15 of this super-block
            return b.load(b.gep(sbase, [b.add(s0, v.const(v.I64, k))]))

        isum, msum, dw, dmin = super_block(b, blk, xq, qsum16)
        dx = b.load(b.gep(dbase, [i]))
        b.store(v.mul_add(b, b.sitofp(isum, v.vec(v.F32, 8)), v.splat(b, b.fmul(dw, dx), 8), b.load(acc)), acc)
        if msum is not None:
            b.store(v.mul_add(b, b.sitofp(msum, v.F32), b.fmul(dmin, dx), b.load(mins)), mins)
    return b.fsub(v.horizontal_sum(b, b.load(acc)), b.load(mins))


def _sum(b, values):
    total = values[0]
    for x in values[1:]:
        total = b.add(total, x)
    return total


def _super_q45_k(five):
    def super_block(b, blk, xq, qsum16):
        sc, mn = _q45_k_scales(b, blk)
        qh = v.load_vector(b, blk, v.const(v.I64, 16), v.I8, 32) if five else None
        parts = []
        for j in range(4):   # 64 values: low nibbles sub-block 2j, high nibbles 2j+1
            raw = v.load_vector(b, blk, v.const(v.I64, (48 if five else 16) + 32 * j), v.I8, 32)
            for half, codes in enumerate((b.and_(raw, v.splat_const(v.I8, 32, 15)),
                                          b.lshr(raw, v.splat_const(v.I8, 32, 4)))):
                if five:   # bit 2j (+1 for the high nibbles) of qh[l] is the fifth bit
                    bit = b.and_(b.lshr(qh, v.splat_const(v.I8, 32, 2 * j + half)), v.splat_const(v.I8, 32, 1))
                    codes = b.or_(codes, b.shl(bit, v.splat_const(v.I8, 32, 4)))
                parts.append(b.mul(v.dot32(b, codes, xq(64 * j + 32 * half)), v.splat(b, sc[2 * j + half], 8)))
        msum = _sum(b, [b.mul(mn[k], b.add(qsum16(2 * k), qsum16(2 * k + 1))) for k in range(8)])
        return _sum(b, parts), msum, v.load_f16(b, blk, v.const(v.I64, 0)), v.load_f16(b, blk, v.const(v.I64, 2))
    return super_block


def _super_q2_k(b, blk, xq, qsum16):
    byte = [b.zext(v.load_scalar(b, blk, v.const(v.I64, k), v.I8), v.I32) for k in range(16)]
    sc = [b.and_(x, v.const(v.I32, 15)) for x in byte]
    parts = []
    for n in range(2):   # byte l of a 32-byte half: elements l, l+32, l+64, l+96 at shifts 0, 2, 4, 6
        raw = v.load_vector(b, blk, v.const(v.I64, 16 + 32 * n), v.I8, 32)
        for k in range(4):
            codes = b.and_(b.lshr(raw, v.splat_const(v.I8, 32, 2 * k)), v.splat_const(v.I8, 32, 3))
            s = 8 * n + 2 * k
            parts.append(_sixteens(b, codes, xq(128 * n + 32 * k), sc[s], sc[s + 1]))
    msum = _sum(b, [b.mul(b.lshr(byte[k], v.const(v.I32, 4)), qsum16(k)) for k in range(16)])
    return _sum(b, parts), msum, v.load_f16(b, blk, v.const(v.I64, 80)), v.load_f16(b, blk, v.const(v.I64, 82))


def _super_q3_k(b, blk, xq, qsum16):
    sc = _q3_k_scales(b, blk)
    hm = v.load_vector(b, blk, v.const(v.I64, 0), v.I8, 32)
    parts = []
    for n in range(2):
        raw = v.load_vector(b, blk, v.const(v.I64, 32 + 32 * n), v.I8, 32)
        for k in range(4):   # code = low 2 bits - 4 unless hmask bit 4n+k is set
            low = b.and_(b.lshr(raw, v.splat_const(v.I8, 32, 2 * k)), v.splat_const(v.I8, 32, 3))
            bit = b.and_(b.lshr(hm, v.splat_const(v.I8, 32, 4 * n + k)), v.splat_const(v.I8, 32, 1))
            codes = b.sub(b.or_(low, b.shl(bit, v.splat_const(v.I8, 32, 2))), v.splat_const(v.I8, 32, 4))
            s = 8 * n + 2 * k
            parts.append(_sixteens(b, codes, xq(128 * n + 32 * k), sc[s], sc[s + 1]))
    return _sum(b, parts), None, v.load_f16(b, blk, v.const(v.I64, 108)), None


def _super_q6_k(b, blk, xq, qsum16):
    scales = [b.sext(v.load_scalar(b, blk, v.const(v.I64, 192 + k), v.I8), v.I32) for k in range(16)]
    m15, m3 = v.splat_const(v.I8, 32, 15), v.splat_const(v.I8, 32, 3)
    parts = []
    for n in range(2):
        ql0 = v.load_vector(b, blk, v.const(v.I64, 64 * n), v.I8, 32)
        ql1 = v.load_vector(b, blk, v.const(v.I64, 64 * n + 32), v.I8, 32)
        qh = v.load_vector(b, blk, v.const(v.I64, 128 + 32 * n), v.I8, 32)
        lows = (b.and_(ql0, m15), b.and_(ql1, m15),
                b.lshr(ql0, v.splat_const(v.I8, 32, 4)), b.lshr(ql1, v.splat_const(v.I8, 32, 4)))
        for k in range(4):   # elements 128n + 32k + l: bit pair k of qh[l] on top
            high = b.and_(b.lshr(qh, v.splat_const(v.I8, 32, 2 * k)), m3)
            codes = b.sub(b.or_(lows[k], b.shl(high, v.splat_const(v.I8, 32, 4))), v.splat_const(v.I8, 32, 32))
            s = 8 * n + 2 * k
            parts.append(_sixteens(b, codes, xq(128 * n + 32 * k), scales[s], scales[s + 1]))
    return _sum(b, parts), None, v.load_f16(b, blk, v.const(v.I64, 208)), None


def _k_quant(type_size, super_block):
    def codegen(context, b, signature, args):
        return _k_dot(context, b, signature, args, type_size, super_block)

    @intrinsic
    def dot(typingctx, w, offset, q, d, s16, n_super):
        return types.float32(w, offset, q, d, s16, n_super), codegen
    return dot


# Row of super-blocks at byte `offset` of w . activations in Q8_K form
# (q int8, d f32 per 256, s16 int32 sums of every 16 q).
dot_q2_k = _k_quant(84, _super_q2_k)
dot_q3_k = _k_quant(110, _super_q3_k)
dot_q4_k = _k_quant(144, _super_q45_k(False))
dot_q5_k = _k_quant(176, _super_q45_k(True))
dot_q6_k = _k_quant(210, _super_q6_k)


# ---- the row kernel (row_pool protocol: claim chunks of rows until none is left) ----

KIND = {name: k for k, name in enumerate(TYPES)}


@njit(cache=True, nogil=True)
def _mm(kind, w, stride, q, d, s16, out, state, chunk_rows):
    """One kernel for every type (a branch per row, always taken the same
    way); the weight row stays in L1 while every token is dotted with it."""
    nb = q.shape[1] // 32
    n_super = q.shape[1] // 256
    while True:
        r0, r1 = claim(state, chunk_rows, out.shape[1])
        if r0 >= r1:
            break
        for r in range(r0, r1):
            o = U(r * stride)
            for t in range(q.shape[0]):
                if kind == 0:
                    y = dot_q4_0(w, o, q[t], d[t], s16[t], nb)
                elif kind == 1:
                    y = dot_q4_1(w, o, q[t], d[t], s16[t], nb)
                elif kind == 2:
                    y = dot_q5_0(w, o, q[t], d[t], s16[t], nb)
                elif kind == 3:
                    y = dot_q5_1(w, o, q[t], d[t], s16[t], nb)
                elif kind == 4:
                    y = dot_q8_0(w, o, q[t], d[t], s16[t], nb)
                elif kind == 5:
                    y = dot_q2_k(w, o, q[t], d[t], s16[t], n_super)
                elif kind == 6:
                    y = dot_q3_k(w, o, q[t], d[t], s16[t], n_super)
                elif kind == 7:
                    y = dot_q4_k(w, o, q[t], d[t], s16[t], n_super)
                elif kind == 8:
                    y = dot_q5_k(w, o, q[t], d[t], s16[t], n_super)
                else:
                    y = dot_q6_k(w, o, q[t], d[t], s16[t], n_super)
                out[t, r] = y
        finish(state, r1 - r0)


def matmul(name, flat, stride, q, d, s16, out, n_threads):
    """out[t, r] = row r of the weights (flat bytes + stride) . token t's
    quantized activations (matmul.quantize_act with block BLOCK[name])."""
    run(_mm, (KIND[name], flat, stride, q, d, s16, out), out.shape[1], n_threads)
    return out
