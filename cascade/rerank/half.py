"""Widening stored float16 vectors to float32: the kernels MaxSim runs before its products.

Two kernels give the same float32 for every float16 value but signalling NaNs (which
hardware conversion quiets; stored embeddings hold no NaNs):

- :func:`widen_hardware`: LLVM's ``fpext half -> float``, which compiles to the CPU's own
  conversion instruction where it has one (F16C's ``vcvtph2ps`` on x86-64, every 64-bit ARM
  core), eight values per instruction: about 4x the portable kernel on 256 x 384 rows here;
- :func:`widen_portable`: three branch-free passes of integer and float arithmetic that the
  compiler vectorises on any CPU (shift exponent and mantissa into place, multiply by 2**112,
  which also normalises subnormals, then set the all-ones exponent of infinities and NaNs and
  the sign); bit for bit numpy's ``astype(np.float32)``, which is scalar and slower still.

:data:`HARDWARE_HALF` says which one :func:`half_to_float32` is: decided once, from the host
CPU's features as LLVM reports them (without the instruction, LLVM would call a runtime helper
numba may not provide).

>>> import numpy as np
>>> halves = np.array([1.5, -0.0, 65504.0], dtype=np.float16)
>>> out = np.empty(3, np.float32)
>>> half_to_float32(halves.view(np.uint16), out)
>>> out.tolist()
[1.5, -0.0, 65504.0]
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_F16_TO_F32 = np.float32(2.0 ** 112)  # rebiases a float16 exponent (15) to float32's (127)


def hardware_half() -> bool:
    """Whether this CPU converts float16 to float32 in hardware (x86-64 with F16C, 64-bit ARM)."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    try:
        from llvmlite import binding

        return bool(binding.get_host_cpu_features().get("f16c"))
    except (ImportError, RuntimeError):
        return False


@intrinsic
def _half_bits_to_float(typingctx, bits):  # type: ignore[no-untyped-def]
    """float32 of the float16 whose bits are ``bits`` (uint16), by LLVM's fpext."""
    if not isinstance(bits, types.Integer) or bits.bitwidth != 16:
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(bits), codegen


@njit(cache=True, nogil=True)
def widen_hardware(src: np.ndarray, dst: np.ndarray) -> None:
    """``dst[i]`` (float32 [n]) = the float16 whose bits are ``src[i]`` (uint16 [n])."""
    for i in range(src.shape[0]):
        dst[i] = _half_bits_to_float(src[i])


@njit(cache=True, nogil=True)
def widen_portable(src: np.ndarray, dst: np.ndarray) -> None:
    """As :func:`widen_hardware`, by integer and float arithmetic (see the module docstring)."""
    bits = dst.view(np.uint32)
    for i in range(src.shape[0]):
        bits[i] = (np.uint32(src[i]) & np.uint32(0x7FFF)) << np.uint32(13)
    for i in range(src.shape[0]):
        dst[i] = dst[i] * _F16_TO_F32
    for i in range(src.shape[0]):
        h = np.uint32(src[i])
        b = bits[i]
        if (h & np.uint32(0x7C00)) == np.uint32(0x7C00):
            b = b | np.uint32(0x7F800000)
        bits[i] = b | ((h & np.uint32(0x8000)) << np.uint32(16))


HARDWARE_HALF = hardware_half()
half_to_float32 = widen_hardware if HARDWARE_HALF else widen_portable
