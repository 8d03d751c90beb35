"""Dynamic fixed-point primitives, bit for bit what `models/csrc/tag_nn.c` does.

A value v is stored as the integer round(v * 2**frac) in a signed word of `bits` bits (a Q
format). Every primitive here has a C twin of the same name in tag_nn.c; the tests compile the C
and compare. Integers are carried in numpy int64 so that nothing wraps silently: where the C
saturates, this saturates at the same bound.

Rounding is round-half-up: (v + 2**(s-1)) >> s with an arithmetic shift, as GCC compiles `>>` on
signed integers for Arm and x86.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# Gate outputs and the GRU's internal state are Q15 in both word lengths, as CMSIS-NN keeps the
# gates of its int8 LSTM in int16: an 8-bit gate would quantize sigmoid to 1/128.
GATE_FRAC = 15
GATE_BITS = 16
WORD_BITS = (8, 16)

# Fractional bits a tensor may have. With both factors of a product at most 31, an accumulator
# has at most 62, so every shift between two formats in the C (int64, tag_align) stays below 63
# bits and is defined. A tensor whose values exceed the word's integer range saturates at frac 0.
MIN_FRAC, MAX_FRAC = 0, 31


@dataclass(frozen=True)
class QFormat:
    """A signed word of `bits` bits holding round(value * 2**frac)."""

    bits: int
    frac: int

    @property
    def min_int(self) -> int:
        return -(2 ** (self.bits - 1))

    @property
    def max_int(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def step(self) -> float:
        return 2.0**-self.frac

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Round float values to this format, saturating at the word's range."""
        scaled = np.round(np.asarray(values, dtype=np.float64) * 2.0**self.frac)
        return np.clip(scaled, self.min_int, self.max_int).astype(np.int64)

    def to_float(self, ints: np.ndarray) -> np.ndarray:
        return np.asarray(ints, dtype=np.float64) * self.step

    def __str__(self) -> str:
        return f"Q{self.bits - 1 - self.frac}.{self.frac} ({self.bits}-bit)"


def choose_format(max_abs: float, bits: int) -> QFormat:
    """The format with the most fractional bits in which `max_abs` still fits without overflow."""
    if not np.isfinite(max_abs):
        raise ValueError(f"cannot choose a Q format for a range of {float(max_abs)}")
    if max_abs <= 0.0:
        return QFormat(bits, bits - 1)
    frac = math.floor(math.log2((2 ** (bits - 1) - 1) / max_abs))
    return QFormat(bits, min(max(frac, MIN_FRAC), MAX_FRAC))


def saturate(values: np.ndarray, bits: int) -> np.ndarray:
    """Clamp to a signed `bits`-bit word (C: tag_sat)."""
    return np.clip(values, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def align(values: np.ndarray, from_frac: int, to_frac: int) -> np.ndarray:
    """Re-express values from Q(.from_frac) in Q(.to_frac) (C: tag_align).

    Narrowing rounds half up; widening shifts left and saturates at int32, so the result always
    fits the int32 the C keeps it in.
    """
    values = np.asarray(values, dtype=np.int64)
    shift = from_frac - to_frac
    if shift > 0:
        return (values + (1 << (shift - 1))) >> shift
    if shift < 0:
        return np.clip(values << -shift, INT32_MIN, INT32_MAX)
    return np.clip(values, INT32_MIN, INT32_MAX)


# --- sigmoid and tanh: a 257-entry Q15 table over [-8, 8], linearly interpolated ---------------
# The table input is Q3.12 in an int16 range, so [-8, 8) covers the whole of it; beyond +-8 both
# functions are within 3.4e-4 of their limits.
LUT_INPUT_FRAC = 12
LUT_INDEX_SHIFT = 8  # 65536 input steps / 256 intervals
LUT_X = np.linspace(-8.0, 8.0, 257)


def _q15_table(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values * 2**GATE_FRAC), -32767, 32767).astype(np.int64)


SIGMOID_LUT = _q15_table(1.0 / (1.0 + np.exp(-LUT_X)))
TANH_LUT = _q15_table(np.tanh(LUT_X))


def _lookup(table: np.ndarray, values: np.ndarray, frac: int) -> np.ndarray:
    u = saturate(align(values, frac, LUT_INPUT_FRAC), 16) + 32768  # 0 .. 65535
    index = u >> LUT_INDEX_SHIFT
    within = u & ((1 << LUT_INDEX_SHIFT) - 1)
    low = table[index]
    return low + align((table[index + 1] - low) * within, LUT_INDEX_SHIFT, 0)


def sigmoid_q15(values: np.ndarray, frac: int) -> np.ndarray:
    """sigmoid of values in Q(.frac), as Q15 (C: tag_sigmoid_q15)."""
    return _lookup(SIGMOID_LUT, values, frac)


def tanh_q15(values: np.ndarray, frac: int) -> np.ndarray:
    """tanh of values in Q(.frac), as Q15 (C: tag_tanh_q15)."""
    return _lookup(TANH_LUT, values, frac)


def activation_errors() -> dict[str, float]:
    """Largest absolute error of the fixed-point sigmoid and tanh over their whole input range."""
    q12 = np.arange(-32768, 32768, dtype=np.int64)  # every Q3.12 input the table can see
    x = q12 / 2.0**LUT_INPUT_FRAC
    scale = 2.0**-GATE_FRAC
    return {
        "sigmoid_max_abs_error": float(np.max(np.abs(sigmoid_q15(q12, 12) * scale
                                                      - 1.0 / (1.0 + np.exp(-x))))),
        "tanh_max_abs_error": float(np.max(np.abs(tanh_q15(q12, 12) * scale - np.tanh(x)))),
    }
