"""Layer-by-layer view of the integer reference: what a trace build of the C reports.

A firmware built with TAG_MODEL_TRACE calls a hook after each operation writes its output
(models/export.py); the host compares those tensors with the ones computed here, in the same
order, to find the first layer that went wrong. One numbering for both sides: a layer is the
index of its operation in QuantizedModel.ops.

    GRU-MLP: input, perceptron and GRU run once per time step (step = t, the GRU's tensor is the
             new state h_t); the head's dense layers once per window (step 0).
    MLP:     pool, input and every dense layer once per window (step 0).

CRC convention (TRACE_CRC.crc32): CRC-32/ISO-HDLC, as zlib.crc32, over the tensor's values each
sign-extended to int16, little-endian. Every traced tensor fits int16: words of 8 or 16 bits,
and the MLP's pooled int16 counts.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.quantize import AXES, FloatGRU, IntGRU, QuantizedModel

TRACE_DTYPE = np.dtype("<i2")  # the element type of the CRC and of TRACE_TENSOR values


@dataclass(frozen=True)
class TracedLayer:
    """One traced operation: its number on the wire, its name and how often it reports."""

    index: int  # into QuantizedModel.ops
    name: str
    per_step: bool  # once per time step (GRU-MLP's input, perceptron, GRU) or once per window


@dataclass(frozen=True)
class TracedTensor:
    """One operation's output as the reference computes it."""

    layer: int
    step: int
    values: np.ndarray  # int64, one dimension

    @property
    def crc32(self) -> int:
        return tensor_crc(self.values)


def per_step_ops(ops: Sequence[Any]) -> int:
    """How many leading operations run once per time step: up to and including the GRU; none
    without a GRU (the MLP sees the whole window at once)."""
    for index, op in enumerate(ops):
        if isinstance(op, IntGRU | FloatGRU):
            return index + 1
    return 0


def traced_layers(ops: Sequence[Any]) -> list[TracedLayer]:
    """Every operation of a model as the trace numbers it."""
    stepped = per_step_ops(ops)
    return [TracedLayer(i, op.name, i < stepped) for i, op in enumerate(ops)]


def tensor_crc(values: np.ndarray | Sequence[int]) -> int:
    """The CRC a trace build sends for a tensor: zlib's CRC-32 over int16 little-endian."""
    array = np.asarray(values, dtype=np.int64)
    if array.size and (array.min() < -32768 or array.max() > 32767):
        raise ValueError("a traced tensor holds values outside int16")
    return zlib.crc32(array.astype(TRACE_DTYPE).tobytes())


def reference_tensors(model: QuantizedModel, counts: np.ndarray) -> list[TracedTensor]:
    """Every operation's output for one window of int16 wire counts (L, 3), in the order the C
    runs them. The last tensor is the logits, equal to model.run(counts[None])[0]."""
    x = np.asarray(counts, dtype=np.int64)
    if x.shape != (model.window, AXES):
        raise ValueError(f"expected one window of shape ({model.window}, {AXES}), got {x.shape}")
    return list(_run_ops(model.ops, x[None]))


def _run_ops(ops: Sequence[Any], x: np.ndarray) -> Iterator[TracedTensor]:
    stepped = per_step_ops(ops)
    if stepped:
        # Each step on its own: the per-step operations act on every step alike, so this is
        # what QuantizedModel.run computes on the whole window (it runs IntGRU.step in a loop).
        gru = ops[stepped - 1]
        h = np.zeros((1, gru.hidden), dtype=np.int64)
        for t in range(x.shape[1]):
            y = x[:, t]
            for index, op in enumerate(ops[:stepped - 1]):
                y = op.run(y)
                yield TracedTensor(index, t, y[0])
            h = gru.step(y, h)
            yield TracedTensor(stepped - 1, t, h[0])
        x = h
    for index in range(stepped, len(ops)):
        x = ops[index].run(x)
        yield TracedTensor(index, 0, x[0])
