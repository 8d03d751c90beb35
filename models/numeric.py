"""Per-layer numeric view of a quantized model: where its fixed point departs from the float.

For every activation the two models compute (the input word, each dense layer's output, the
GRU state at every step), the integer tensor of the quantized model is read back in its Q
format and compared with the float model's on the same windows:

    SQNR     10 log10(sum f^2 / sum (f - q)^2), dB: how far above the error the signal is
    max |e|  the largest absolute error
    cosine   between the flattened tensors
    at limit values at the word's smallest or largest integer: saturated, or about to be

Errors accumulate: a layer's figures include what the layers before it lost, as on the device.
So the first layer whose SQNR falls well below the others is the one whose format costs
accuracy (the table X-CUBE-AI's `validate` prints per layer).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from models.fixedpoint import QFormat
from models.quantize import (
    WIRE_FORMAT,
    FloatDense,
    FloatGRU,
    FloatInput,
    FloatNet,
    FloatPool,
    IntDense,
    IntGRU,
    IntInput,
    IntPool,
    QuantizedModel,
)

MAX_WINDOWS = 256  # enough for stable figures; the GRU's states of all steps are kept in memory


@dataclass(frozen=True)
class LayerNumerics:
    """How one activation of the quantized model compares with the float model's."""

    name: str
    format: str
    values: int  # elements compared (windows x steps x units)
    sqnr_db: float | None  # None where the integer tensor is exact
    max_abs_error: float
    cosine: float
    at_limit: int  # values at the word's smallest or largest integer
    peak_of_range: float  # largest |float value| over the largest value the format holds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int_activations(model: QuantizedModel, counts: np.ndarray
                     ) -> Iterator[tuple[str, np.ndarray, QFormat]]:
    x = np.asarray(counts, dtype=np.int64)
    for op in model.ops:
        if isinstance(op, IntGRU):
            states = op.states(x)
            x = states[:, -1]
            yield op.name, states, op.h
            continue
        x = op.run(x)
        if isinstance(op, IntPool):
            yield op.name, x, WIRE_FORMAT
        elif isinstance(op, IntInput):
            yield op.name, x, op.out
        elif isinstance(op, IntDense):
            yield op.name, x, op.y


def _float_activations(net: FloatNet, x_g: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    x = np.asarray(x_g, dtype=np.float64)
    trace: dict[str, float] = {}
    for op in net.ops:
        if isinstance(op, FloatGRU):
            states = op.states(x, trace)
            x = states[:, -1]
            yield op.name, states
            continue
        x = op.run(x, trace)
        if isinstance(op, FloatPool | FloatInput | FloatDense):
            yield op.name, x


def _compare(name: str, ints: np.ndarray, fmt: QFormat, floats: np.ndarray) -> LayerNumerics:
    q, f = fmt.to_float(ints).ravel(), floats.ravel()
    error = f - q
    noise, signal = float(error @ error), float(f @ f)
    norms = float(np.linalg.norm(f) * np.linalg.norm(q))
    top = fmt.max_int * fmt.step
    sqnr = None if noise == 0.0 else round(float(10.0 * np.log10(max(signal, 1e-300) / noise)), 2)
    return LayerNumerics(
        name=name, format=str(fmt), values=int(q.size), sqnr_db=sqnr,
        max_abs_error=float(np.abs(error).max()) if error.size else 0.0,
        cosine=round(float(f @ q) / norms, 6) if norms > 0 else 1.0,
        at_limit=int(np.count_nonzero((ints == fmt.max_int) | (ints == fmt.min_int))),
        peak_of_range=round(float(np.abs(f).max()) / top, 4) if f.size else 0.0)


def layer_numerics(net: FloatNet, model: QuantizedModel, counts: np.ndarray,
                   max_windows: int = MAX_WINDOWS) -> list[LayerNumerics]:
    """Per activation, in the order the model computes them: the quantized model against the
    float model on the same windows of wire counts (N, L, 3); at most `max_windows` of them,
    evenly spread."""
    if len(counts) > max_windows:
        counts = counts[np.linspace(0, len(counts) - 1, max_windows).astype(np.int64)]
    x_g = WIRE_FORMAT.to_float(counts)
    floats = dict(_float_activations(net, x_g))
    return [_compare(name, ints, fmt, floats[name])
            for name, ints, fmt in _int_activations(model, counts) if name in floats]


def format_numerics(layers: list[dict[str, Any]] | list[LayerNumerics]) -> str:
    """The per-layer table a person reads after `harness quantize`."""
    rows = [layer.to_dict() if isinstance(layer, LayerNumerics) else layer for layer in layers]
    lines = [f"{'activation':12s} {'format':16s} {'SQNR dB':>8s} {'max |err|':>10s} "
             f"{'cosine':>8s} {'at limit':>9s} {'peak/range':>10s}"]
    for row in rows:
        sqnr = "exact" if row["sqnr_db"] is None else f"{row['sqnr_db']:.1f}"
        lines.append(f"{row['name']:12s} {row['format']:16s} {sqnr:>8s} "
                     f"{row['max_abs_error']:10.3g} {row['cosine']:8.5f} "
                     f"{row['at_limit']:>9,d} {row['peak_of_range']:10.3f}")
    return "\n".join(lines)
