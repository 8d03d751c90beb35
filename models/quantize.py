"""Dynamic fixed-point (DQ) quantization of a student and its bit-exact integer reference.

A student becomes a short list of operations. Each exists twice: as float (the folded student,
used to calibrate and to export the float32 C variant) and as integer (the quantized model, whose
`run` is the numpy reference the C must equal bit for bit).

    GRU-MLP: input (N,L,3) -> Input -> Dense 'perceptron' per step (N,L,P) -> GRU (N,H)
             -> Dense.. (N,C)
    MLP:     input (N,L,3) -> AvgPool + flatten (N,3L/pool) -> Input -> Dense.. (N,C)

The model input is the accelerometer sample as int16 counts in Q(.INPUT_FRAC) g, as it arrives on
the wire; the student's input normalisation is folded into the first dense layer.

Each weight, bias and activation tensor gets its own Q format from its range on calibration data
(`fixedpoint.choose_format`). Products accumulate in int32; a weight format is narrowed until no
input in the word's range can overflow that accumulator, so C and numpy agree even on saturating
windows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from device_sim.protocol import MESSAGES
from models.errors import QuantizationError, RunDirectoryError
from models.fixedpoint import (
    GATE_BITS,
    GATE_FRAC,
    INT32_MAX,
    MAX_FRAC,
    MIN_FRAC,
    WORD_BITS,
    QFormat,
    activation_errors,
    align,
    choose_format,
    saturate,
    sigmoid_q15,
    tanh_q15,
)

FORMAT_VERSION = "tag-dq/1"
INPUT_FRAC = 12  # wire samples: int16 counts of 1/4096 g (the MPU9250 at +-8 g), full scale +-8 g
WIRE_FORMAT = QFormat(16, INPUT_FRAC)
WIRE_FULL_SCALE_G = WIRE_FORMAT.max_int * WIRE_FORMAT.step  # what an int16 count can carry
AXES = 3
MAX_CLASSES = MESSAGES["RESULT"].array.max_count  # logits per RESULT frame
GATES = ("r", "z", "n")  # PyTorch's order of the GRU gates
PRE_ACTIVATIONS = ("r", "z", "in", "hn", "n")  # r, z: gate inputs; in, hn: the two halves of n
PRE_OF_BIAS = ("r", "z", "in", "hn")  # the pre-activation each GRU bias row adds to
LUT_RANGE = 8.0  # sigmoid and tanh saturate their input at +-8, so a larger range buys nothing


def exact_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Integer x @ w.T, exact: every partial sum is an integer below 2**53, so float64 BLAS is."""
    return np.rint(x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64)


def worst_case_accumulator(weights: np.ndarray, input_bits: int) -> int:
    """Largest |sum w*x| any row can reach for inputs anywhere in a signed input_bits word."""
    return int(np.abs(weights).sum(axis=-1).max()) * 2 ** (input_bits - 1)


def quantize_weights(w: np.ndarray, bits: int, x: QFormat,
                     bias: tuple[np.ndarray, QFormat] | None = None) -> tuple[np.ndarray, QFormat]:
    """Weights in the finest format whose int32 accumulator (products plus the aligned bias)
    cannot overflow for any input in x's word."""
    fmt = choose_format(float(np.abs(w).max()), bits)
    while True:
        q = fmt.quantize(w)
        bound = worst_case_accumulator(q, x.bits)
        if bias is not None:
            b_int, b_fmt = bias
            bound += int(np.abs(align(b_int, b_fmt.frac, fmt.frac + x.frac)).max())
        if bound <= INT32_MAX:
            return q, fmt
        fmt = QFormat(bits, fmt.frac - 1)


# --- float operations: the folded student -----------------------------------------------------

@dataclass
class FloatInput:
    """Wire counts to g."""

    name: str = "input"

    def run(self, x: np.ndarray, trace: dict[str, float]) -> np.ndarray:
        trace[self.name] = max(trace.get(self.name, 0.0), float(np.abs(x).max()))
        return x


@dataclass
class FloatPool:
    """Mean over non-overlapping blocks of `pool` samples, then time-major flatten."""

    pool: int
    name: str = "pool"

    def run(self, x: np.ndarray, trace: dict[str, float]) -> np.ndarray:
        n, length, axes = x.shape
        return x.reshape(n, length // self.pool, self.pool, axes).mean(axis=2).reshape(n, -1)


@dataclass
class FloatDense:
    name: str
    w: np.ndarray  # (out, in)
    b: np.ndarray  # (out,)
    relu: bool

    def run(self, x: np.ndarray, trace: dict[str, float]) -> np.ndarray:
        y = x @ self.w.T + self.b
        if self.relu:
            y = np.maximum(y, 0.0)
        trace[self.name] = max(trace.get(self.name, 0.0), float(np.abs(y).max()))
        return y


@dataclass
class FloatGRU:
    """PyTorch's GRU, one layer, final state; biases of r and z merged, those of n kept apart."""

    name: str
    w_ih: np.ndarray  # (3, H, P) gates r, z, n
    w_hh: np.ndarray  # (3, H, H)
    b: np.ndarray  # (4, H): r, z, in, hn

    @property
    def hidden(self) -> int:
        return self.w_hh.shape[1]

    def run(self, x: np.ndarray, trace: dict[str, float]) -> np.ndarray:
        return self.states(x, trace)[:, -1]

    def states(self, x: np.ndarray, trace: dict[str, float]) -> np.ndarray:
        """The state after every step (N, L, H); the peaks of the pre-activations in `trace`."""
        n, length, _ = x.shape
        h = np.zeros((n, self.hidden))
        states = np.empty((n, length, self.hidden))
        peaks = dict.fromkeys(PRE_ACTIVATIONS, 0.0)
        ax = np.einsum("nlp,ghp->gnlh", x, self.w_ih)  # input halves of all gates at once
        for t in range(length):
            ah = np.einsum("nh,gkh->gnk", h, self.w_hh)
            pre = {"r": ax[0, :, t] + ah[0] + self.b[0], "z": ax[1, :, t] + ah[1] + self.b[1],
                   "in": ax[2, :, t] + self.b[2], "hn": ah[2] + self.b[3]}
            r = 1.0 / (1.0 + np.exp(-pre["r"]))
            z = 1.0 / (1.0 + np.exp(-pre["z"]))
            pre["n"] = pre["in"] + r * pre["hn"]
            h = (1.0 - z) * np.tanh(pre["n"]) + z * h
            states[:, t] = h
            for key, value in pre.items():
                peaks[key] = max(peaks[key], float(np.abs(value).max()))
        for key, value in peaks.items():
            name = f"{self.name}.{key}"
            trace[name] = max(trace.get(name, 0.0), value)
        return states


@dataclass
class FloatNet:
    """The student with its normalisation folded in: what both C variants compute."""

    kind: str
    ops: list[Any]
    window: int
    class_names: tuple[str, ...]

    @property
    def model_hash(self) -> str:
        """Short hash of every float32 parameter: names the float variant on the device."""
        digest = hashlib.sha256(self.kind.encode())
        for op in self.ops:
            for value in vars(op).values():
                if isinstance(value, np.ndarray):
                    digest.update(value.astype("<f4").tobytes())
        return digest.hexdigest()[:16]

    def run(self, x_g: np.ndarray, trace: dict[str, float] | None = None) -> np.ndarray:
        trace = {} if trace is None else trace
        x = np.asarray(x_g, dtype=np.float64)
        for op in self.ops:
            x = op.run(x, trace)
        return x


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def fold_student(student: torch.nn.Module, class_names: tuple[str, ...],
                 window: int) -> FloatNet:
    """Turn a GRUMLPStudent or MLPStudent into float operations with normalisation folded in."""
    kind = student.config["kind"]
    mean, std = _numpy(student.input_mean), _numpy(student.input_std)

    def dense(name: str, layer: torch.nn.Linear, relu: bool, axis_of_input=None) -> FloatDense:
        w, b = _numpy(layer.weight), _numpy(layer.bias)
        if axis_of_input is not None:  # (x - mean) / std folded: w' = w / std, b' = b - w' @ mean
            w = w / std[axis_of_input]
            b = b - w @ mean[axis_of_input]
        return FloatDense(name, w, b, relu)

    mlp = list(student.mlp)
    head = [dense(f"mlp{i}", layer, relu=i < len(mlp) - 1) for i, layer in enumerate(mlp)]
    if kind == "gru_mlp":
        gru, hidden = student.gru, student.gru.hidden_size
        w_ih = _numpy(gru.weight_ih_l0).reshape(3, hidden, -1)
        w_hh = _numpy(gru.weight_hh_l0).reshape(3, hidden, hidden)
        b_ih = _numpy(gru.bias_ih_l0).reshape(3, hidden)
        b_hh = _numpy(gru.bias_hh_l0).reshape(3, hidden)
        b = np.stack([b_ih[0] + b_hh[0], b_ih[1] + b_hh[1], b_ih[2], b_hh[2]])
        perceptron = dense("perceptron", student.perceptron, relu=True,
                           axis_of_input=np.arange(AXES))
        ops = [FloatInput(), perceptron, FloatGRU("gru", w_ih, w_hh, b), *head]
    elif kind == "mlp":
        pool = student.config["pool"]
        first = mlp[0]
        head[0] = dense("mlp0", first, relu=len(mlp) > 1,
                        axis_of_input=np.arange(first.in_features) % AXES)
        ops = [FloatPool(pool), FloatInput(), *head]
    else:
        raise QuantizationError(f"cannot quantize a model of kind {kind!r}")
    return FloatNet(kind, ops, window, tuple(class_names))


# --- integer operations: the quantized model and its reference -------------------------------

@dataclass
class IntInput:
    """Wire counts Q(.INPUT_FRAC) int16 -> the model's input word."""

    out: QFormat
    name: str = "input"

    def run(self, x: np.ndarray) -> np.ndarray:
        return saturate(align(x, INPUT_FRAC, self.out.frac), self.out.bits)

    def describe(self) -> dict:
        return {"op": "input", "name": self.name, "in_frac": INPUT_FRAC,
                "out_bits": self.out.bits, "out_frac": self.out.frac}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}


@dataclass
class IntPool:
    """Rounded mean of `pool` int16 wire samples per axis (pool is a power of two), flattened."""

    pool: int
    name: str = "pool"

    @property
    def shift(self) -> int:
        return self.pool.bit_length() - 1

    def run(self, x: np.ndarray) -> np.ndarray:
        n, length, axes = x.shape
        sums = x.reshape(n, length // self.pool, self.pool, axes).sum(axis=2)
        return align(sums, self.shift, 0).reshape(n, -1)

    def describe(self) -> dict:
        return {"op": "avgpool", "name": self.name, "pool": self.pool, "shift": self.shift}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}


@dataclass
class IntDense:
    """y = sat(align(w @ x + align(b), w.frac + x.frac -> y.frac)), optionally ReLU."""

    name: str
    w_int: np.ndarray  # (out, in)
    b_int: np.ndarray  # (out,)
    w: QFormat
    b: QFormat
    x: QFormat
    y: QFormat
    relu: bool

    @property
    def acc_frac(self) -> int:
        return self.w.frac + self.x.frac

    @property
    def b_acc(self) -> np.ndarray:
        """The bias in the accumulator's format, as the C stores it (int32: aligned once here,
        not at every call)."""
        return align(self.b_int, self.b.frac, self.acc_frac)

    def run(self, x: np.ndarray) -> np.ndarray:
        acc = exact_matmul(x, self.w_int) + self.b_acc
        y = saturate(align(acc, self.acc_frac, self.y.frac), self.y.bits)
        return np.maximum(y, 0) if self.relu else y

    def describe(self) -> dict:
        out_dim, in_dim = self.w_int.shape
        return {"op": "dense", "name": self.name, "in_dim": in_dim, "out_dim": out_dim,
                "w_frac": self.w.frac, "b_frac": self.b.frac, "in_frac": self.x.frac,
                "out_frac": self.y.frac, "relu": self.relu}

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"{self.name}.w": self.w_int, f"{self.name}.b": self.b_int}


@dataclass
class IntGRU:
    """GRU step in integers; gates and the update run in Q15, the state is stored in the word."""

    name: str
    w_ih_int: np.ndarray  # (3, H, P) gates r, z, n
    w_hh_int: np.ndarray  # (3, H, H)
    b_int: np.ndarray  # (4, H): r, z, in, hn
    w_ih: list[QFormat]  # per gate
    w_hh: list[QFormat]
    b: list[QFormat]  # per bias row
    pre: dict[str, QFormat]  # per pre-activation, 16-bit
    x: QFormat
    h: QFormat = field(init=False)

    def __post_init__(self) -> None:
        self.h = QFormat(self.x.bits, self.x.bits - 1)  # the state lies in (-1, 1)

    @property
    def hidden(self) -> int:
        return self.w_hh_int.shape[1]

    @property
    def b_pre(self) -> np.ndarray:
        """The bias rows (4, H) r, z, in, hn, each in the format of the pre-activation it adds
        to, as the C stores them (int32: aligned once here, not at every step)."""
        return np.stack([align(self.b_int[k], self.b[k].frac, self.pre[key].frac)
                         for k, key in enumerate(PRE_OF_BIAS)])

    def _to_pre(self, key: str, *terms: tuple[np.ndarray, int]) -> np.ndarray:
        total = sum(align(values, frac, self.pre[key].frac) for values, frac in terms)
        return saturate(total, GATE_BITS)

    def step(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        ax = [exact_matmul(x, self.w_ih_int[g]) for g in range(3)]
        ah = [exact_matmul(h, self.w_hh_int[g]) for g in range(3)]
        xf = [self.w_ih[g].frac + self.x.frac for g in range(3)]
        hf = [self.w_hh[g].frac + self.h.frac for g in range(3)]
        b_pre = self.b_pre
        bias = [(b_pre[k], self.pre[key].frac) for k, key in enumerate(PRE_OF_BIAS)]
        pre_r = self._to_pre("r", (ax[0], xf[0]), (ah[0], hf[0]), bias[0])
        pre_z = self._to_pre("z", (ax[1], xf[1]), (ah[1], hf[1]), bias[1])
        pre_in = self._to_pre("in", (ax[2], xf[2]), bias[2])
        pre_hn = self._to_pre("hn", (ah[2], hf[2]), bias[3])
        r = sigmoid_q15(pre_r, self.pre["r"].frac)
        z = sigmoid_q15(pre_z, self.pre["z"].frac)
        pre_n = self._to_pre("n", (pre_in, self.pre["in"].frac),
                             (r * pre_hn, GATE_FRAC + self.pre["hn"].frac))
        n = tanh_q15(pre_n, self.pre["n"].frac)
        h15 = align(h, self.h.frac, GATE_FRAC)
        h15 = n + align(z * (h15 - n), GATE_FRAC, 0)  # (1 - z) * n + z * h
        return saturate(align(h15, GATE_FRAC, self.h.frac), self.h.bits)

    def pre_sums_fit_int32(self) -> bool:
        """Whether every pre-activation sum, for any input and state, stays inside int32 before
        it is saturated to 16 bits: then the C may add the aligned terms in 32 bits (exactly
        what the int64 sum gives). From the largest row sum of |weights| and the widest words."""
        def aligned(bound: int, from_frac: int, to_frac: int) -> int:
            shift = from_frac - to_frac
            return (bound >> shift) + 1 if shift > 0 else min(bound << -shift, 2**31)

        ax = [worst_case_accumulator(self.w_ih_int[g], self.x.bits) for g in range(3)]
        ah = [worst_case_accumulator(self.w_hh_int[g], self.h.bits) for g in range(3)]
        xf = [self.w_ih[g].frac + self.x.frac for g in range(3)]
        hf = [self.w_hh[g].frac + self.h.frac for g in range(3)]
        b = [(int(np.abs(self.b_int[k]).max()), self.b[k].frac) for k in range(4)]
        gate = 2 ** (GATE_BITS - 1)  # a saturated pre-activation's magnitude
        sums = {"r": [(ax[0], xf[0]), (ah[0], hf[0]), b[0]],
                "z": [(ax[1], xf[1]), (ah[1], hf[1]), b[1]],
                "in": [(ax[2], xf[2]), b[2]], "hn": [(ah[2], hf[2]), b[3]],
                "n": [(gate, self.pre["in"].frac), (gate * gate, GATE_FRAC + self.pre["hn"].frac)]}
        return all(sum(aligned(bound, frac, self.pre[key].frac) for bound, frac in terms) < 2**31
                   for key, terms in sums.items())

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.states(x)[:, -1]

    def states(self, x: np.ndarray) -> np.ndarray:
        """The state after every step (N, L, H), in self.h."""
        h = np.zeros((x.shape[0], self.hidden), dtype=np.int64)
        states = np.empty((x.shape[0], x.shape[1], self.hidden), dtype=np.int64)
        for t in range(x.shape[1]):
            h = states[:, t] = self.step(x[:, t], h)
        return states

    def describe(self) -> dict:
        return {"op": "gru", "name": self.name, "in_dim": self.w_ih_int.shape[2],
                "hidden": self.hidden, "in_frac": self.x.frac, "h_frac": self.h.frac,
                "w_ih_frac": [f.frac for f in self.w_ih], "w_hh_frac": [f.frac for f in self.w_hh],
                "b_frac": [f.frac for f in self.b],
                "pre_frac": {key: fmt.frac for key, fmt in self.pre.items()}}

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"{self.name}.w_ih": self.w_ih_int, f"{self.name}.w_hh": self.w_hh_int,
                f"{self.name}.b": self.b_int}


@dataclass
class QuantizedModel:
    kind: str
    word_bits: int
    window: int
    class_names: tuple[str, ...]
    ops: list[Any]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def logit_frac(self) -> int:
        return self.ops[-1].y.frac

    @property
    def param_bytes(self) -> int:
        """Bytes of the weights and biases at the word length: what the word length buys. (The
        C keeps the biases in int32, pre-aligned, as CMSIS-NN does: the firmware's flash figure
        counts what it really holds.) Part of describe(), so of model_hash: keep its meaning."""
        count = sum(a.size for op in self.ops for a in op.arrays().values())
        return count * self.word_bits // 8

    def run(self, counts: np.ndarray) -> np.ndarray:
        """Integer logits (N, C) for windows of int16 wire counts (N, L, 3)."""
        x = np.asarray(counts, dtype=np.int64)
        if x.ndim != 3 or x.shape[1:] != (self.window, AXES):
            raise ValueError(f"expected windows of shape (N, {self.window}, {AXES}), got {x.shape}")
        for op in self.ops:
            x = op.run(x)
        return x

    def describe(self) -> dict:
        return {"format": FORMAT_VERSION, "kind": self.kind, "word_bits": self.word_bits,
                "window": self.window, "axes": AXES, "class_names": list(self.class_names),
                "input_frac": INPUT_FRAC, "logit_frac": self.logit_frac,
                "param_bytes": self.param_bytes, "activation_errors": activation_errors(),
                "ops": [op.describe() for op in self.ops]}

    def arrays(self) -> dict[str, np.ndarray]:
        return {key: value for op in self.ops for key, value in op.arrays().items()}

    @property
    def model_hash(self) -> str:
        """Short hash of the formats and every stored integer: names the model on the device."""
        digest = hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode())
        for key, value in sorted(self.arrays().items()):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(value, dtype="<i8").tobytes())
        return digest.hexdigest()[:16]


def tensor_formats(model: QuantizedModel) -> dict[str, str]:
    """The Q format of every stored and computed tensor, by name ("perceptron.w", "gru.pre.r",
    "mlp1.out"): what a quantization change changes."""
    formats: dict[str, QFormat] = {}
    for op in model.ops:
        if isinstance(op, IntInput):
            formats[f"{op.name}.out"] = op.out
        elif isinstance(op, IntDense):
            formats |= {f"{op.name}.w": op.w, f"{op.name}.b": op.b, f"{op.name}.out": op.y}
        elif isinstance(op, IntGRU):
            for g, gate in enumerate(GATES):
                formats[f"{op.name}.w_ih.{gate}"] = op.w_ih[g]
                formats[f"{op.name}.w_hh.{gate}"] = op.w_hh[g]
            for key, fmt in zip(("r", "z", "in", "hn"), op.b, strict=True):
                formats[f"{op.name}.b.{key}"] = fmt
            formats |= {f"{op.name}.pre.{key}": fmt for key, fmt in op.pre.items()}
            formats[f"{op.name}.h"] = op.h
    return {name: str(fmt) for name, fmt in formats.items()}


def _formats(op: Any) -> list[QFormat]:
    """Every Q format an operation holds."""
    found: list[QFormat] = []
    for value in vars(op).values():
        items = value.values() if isinstance(value, dict) else (
            value if isinstance(value, list) else [value])
        found += [item for item in items if isinstance(item, QFormat)]
    return found


def check_model(model: QuantizedModel) -> None:
    """What the C can run bit for bit: a known kind and word length, every fractional format in
    [MIN_FRAC, MAX_FRAC], every stored integer inside its word, shapes that chain from the
    window to one logit per class. QuantizationError says what is wrong."""
    if model.kind not in ("gru_mlp", "mlp"):
        raise QuantizationError(f"unknown model kind {model.kind!r}")
    if model.word_bits not in WORD_BITS:
        raise QuantizationError(f"word length {model.word_bits!r} is none of {WORD_BITS}")
    if not isinstance(model.window, int) or not 1 <= model.window <= 65535:
        raise QuantizationError(f"window {model.window!r} is not 1..65535 samples")
    if not 1 <= len(model.class_names) <= MAX_CLASSES or not all(
            isinstance(name, str) for name in model.class_names):
        raise QuantizationError(f"{len(model.class_names)} class names; 1 to {MAX_CLASSES} "
                                "strings are possible")
    for op in model.ops:
        for fmt in _formats(op):
            if not isinstance(fmt.frac, int) or not MIN_FRAC <= fmt.frac <= MAX_FRAC \
                    or fmt.bits not in (*WORD_BITS, GATE_BITS):
                raise QuantizationError(f"{op.name}: format Q(.{fmt.frac}) of {fmt.bits} bits; "
                                        f"fractional bits must be {MIN_FRAC}..{MAX_FRAC}")
        for key, values in op.arrays().items():
            low, high = -(2 ** (model.word_bits - 1)), 2 ** (model.word_bits - 1) - 1
            if values.size and (values.min() < low or values.max() > high):
                raise QuantizationError(f"{key} holds values outside {model.word_bits}-bit "
                                        f"words ({int(values.min())}..{int(values.max())})")
    try:
        logits = model.run(np.zeros((1, model.window, AXES), dtype=np.int64))
    except (ValueError, IndexError) as error:
        raise QuantizationError(f"the weights' shapes do not fit the operations ({error})") \
            from error
    if logits.shape != (1, model.n_classes):
        raise QuantizationError(f"the model gives {logits.shape[-1]} logits for "
                                f"{model.n_classes} classes")


def counts_from_g(x_g: np.ndarray) -> np.ndarray:
    """Windows in g as the int16 wire counts the device receives."""
    return WIRE_FORMAT.quantize(x_g)


def g_from_counts(counts: np.ndarray) -> np.ndarray:
    """Wire counts back in g, float32."""
    return WIRE_FORMAT.to_float(counts).astype(np.float32)


def as_device_input(x_g: np.ndarray) -> np.ndarray:
    """Windows in g rounded to what the device receives (wire counts), back in g."""
    return g_from_counts(counts_from_g(x_g))


def calibrate(net: FloatNet, x_g: np.ndarray, batch: int = 256) -> dict[str, float]:
    """Largest magnitude of every activation of the float model over the calibration windows."""
    trace: dict[str, float] = {}
    for start in range(0, len(x_g), batch):
        net.run(x_g[start:start + batch], trace)
    return trace


def quantize(net: FloatNet, calibration_g: np.ndarray, word_bits: int) -> QuantizedModel:
    """Choose every tensor's Q format from the calibration windows (in g) and quantize."""
    if word_bits not in (8, 16):
        raise QuantizationError(f"word length must be 8 or 16 bits, not {word_bits}")
    # Calibrate on what the device sees: samples already rounded to wire counts.
    calibration_g = as_device_input(calibration_g)
    peaks = calibrate(net, calibration_g)
    bits = word_bits
    x_fmt = WIRE_FORMAT  # pooling runs on the wire counts
    ops: list[Any] = []
    for op in net.ops:
        if isinstance(op, FloatPool):
            ops.append(IntPool(op.pool))
        elif isinstance(op, FloatInput):
            fmt = choose_format(peaks[op.name], bits)
            x_fmt = QFormat(bits, min(fmt.frac, INPUT_FRAC))  # no finer than the sensor's counts
            ops.append(IntInput(x_fmt))
        elif isinstance(op, FloatDense):
            b_fmt = choose_format(float(np.abs(op.b).max()), bits)
            b_int = b_fmt.quantize(op.b)
            w_int, w_fmt = quantize_weights(op.w, bits, x_fmt, (b_int, b_fmt))
            y_fmt = choose_format(peaks[op.name], bits)
            ops.append(IntDense(op.name, w_int, b_int, w_fmt, b_fmt, x_fmt, y_fmt, op.relu))
            x_fmt = y_fmt
        elif isinstance(op, FloatGRU):
            ih = [quantize_weights(op.w_ih[g], bits, x_fmt) for g in range(3)]
            hh = [quantize_weights(op.w_hh[g], bits, QFormat(bits, bits - 1)) for g in range(3)]
            b_fmts = [choose_format(float(np.abs(row).max()), bits) for row in op.b]
            pre = {}
            for key in PRE_ACTIVATIONS:
                peak = peaks[f"{op.name}.{key}"]
                if key in ("r", "z", "n"):  # feed a saturating table
                    peak = min(peak, LUT_RANGE)
                pre[key] = choose_format(peak, GATE_BITS)
            gru = IntGRU(op.name, np.stack([q for q, _ in ih]), np.stack([q for q, _ in hh]),
                         np.stack([f.quantize(row) for f, row in zip(b_fmts, op.b, strict=True)]),
                         [f for _, f in ih], [f for _, f in hh], b_fmts, pre, x_fmt)
            ops.append(gru)
            x_fmt = gru.h
        else:
            raise QuantizationError(f"no integer form for operation {op!r}")
    return QuantizedModel(net.kind, word_bits, net.window, net.class_names, ops)


# --- files: JSON for formats, npz of integer arrays; nothing pickled ---------------------------

def save_quantized(model: QuantizedModel, folder: Path,
                   derived_from: dict[str, str] | None = None) -> None:
    """model.json and weights.npz; `derived_from` records the files it was made from (their
    hashes), so that a model made before a retraining is known to be stale."""
    folder.mkdir(parents=True, exist_ok=True)
    description = model.describe() | {"model_hash": model.model_hash,
                                       "derived_from": derived_from}
    (folder / "model.json").write_text(json.dumps(description, indent=2) + "\n")
    np.savez(folder / "weights.npz", **model.arrays())


def load_quantized(folder: Path) -> QuantizedModel:
    """quantized/<variant>/ as written by save_quantized, checked before anything runs on it:
    its keys, operations, Q formats, array dtypes, ranges and shapes (RunDirectoryError)."""
    where = folder / "model.json"
    try:
        description = json.loads(where.read_text())
        with np.load(folder / "weights.npz", allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError as error:
        raise RunDirectoryError(f"{error.filename} is missing: run `harness quantize` first")\
            from error
    except (OSError, ValueError) as error:  # not JSON, not an npz, or pickled objects in it
        raise RunDirectoryError(f"{folder} holds an unreadable model ({error}): run `harness "
                                "quantize` again") from error
    if not isinstance(description, dict) or description.get("format") != FORMAT_VERSION:
        found = description.get("format") if isinstance(description, dict) else description
        raise RunDirectoryError(f"{where}: format {found!r} is not {FORMAT_VERSION!r}")
    try:
        model = _model_from(description, arrays)
        check_model(model)
    except KeyError as error:
        raise RunDirectoryError(f"{where}: missing {error} (damaged or written by another "
                                "tool): run `harness quantize` again") from error
    except (TypeError, ValueError, IndexError, AttributeError, QuantizationError) as error:
        raise RunDirectoryError(f"{folder}: {error}: run `harness quantize` again") from error
    return model


def _model_from(description: dict[str, Any], arrays: dict[str, np.ndarray]) -> QuantizedModel:
    for key, value in arrays.items():
        if value.dtype.kind not in "iu":
            raise QuantizationError(f"weights.npz: {key} holds {value.dtype}, not integers")
    arrays = {key: value.astype(np.int64) for key, value in arrays.items()}
    bits = description["word_bits"]
    ops: list[Any] = []
    for d in description["ops"]:
        name = d["name"]
        if d["op"] == "input":
            ops.append(IntInput(QFormat(d["out_bits"], d["out_frac"]), name))
        elif d["op"] == "avgpool":
            ops.append(IntPool(d["pool"], name))
        elif d["op"] == "dense":
            ops.append(IntDense(name, arrays[f"{name}.w"], arrays[f"{name}.b"],
                                QFormat(bits, d["w_frac"]), QFormat(bits, d["b_frac"]),
                                QFormat(bits, d["in_frac"]), QFormat(bits, d["out_frac"]),
                                d["relu"]))
        elif d["op"] == "gru":
            ops.append(IntGRU(name, arrays[f"{name}.w_ih"], arrays[f"{name}.w_hh"],
                              arrays[f"{name}.b"],
                              [QFormat(bits, f) for f in d["w_ih_frac"]],
                              [QFormat(bits, f) for f in d["w_hh_frac"]],
                              [QFormat(bits, f) for f in d["b_frac"]],
                              {k: QFormat(GATE_BITS, f) for k, f in d["pre_frac"].items()},
                              QFormat(bits, d["in_frac"])))
        else:
            raise QuantizationError(f"unknown operation {d['op']!r}")
    return QuantizedModel(description["kind"], bits, description["window"],
                          tuple(description["class_names"]), ops)
