"""Reinterpret 32 bits as a float32 inside numba kernels (a register bitcast that SIMD loops keep)."""

from llvmlite import ir as llvm_ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def float32_from_bits(typingctx, bits):
    """The float32 whose IEEE-754 bits are ``bits`` (int32 or uint32), e.g. a density read with its label."""
    if not (isinstance(bits, types.Integer) and bits.bitwidth == 32):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.FloatType())

    return types.float32(bits), codegen
