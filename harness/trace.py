"""`harness trace`: which layer of the model on the device went wrong first, for one window.

When a device's logits differ from the integer reference, the trace build of the firmware
(TAG_MODEL_TRACE, device_sim.appbuild) says what every operation computed: a TRACE_CRC frame per
tensor, per time step for the GRU-MLP's per-step operations (models/tracing.py numbers them).
trace_window streams one held-out window through it, compares those CRCs with the integer
reference's in the order the operations ran, and for every layer that differs asks the device
(a second pass, TRACE_REQUEST DUMP) for its first differing tensor in full, so that the report
names the element and both values:

    report = trace_window(run_dir, "eartag", "qemu", "q16", window_index=17)
    print(report.format())        # one row per layer: equal, or where it first diverges

Windows are numbered as `harness run` numbers them: the held-out recording's bouts streamed one
after the other (harness/run.py), so the window a run report names is the window traced here.
harness.run.trace_command() spells the command line that does it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device_sim.appbuild import build_info, check_framing
from device_sim.backends import DeviceOptions, prepare_device
from device_sim.model_sources import ModelSources
from device_sim.protocol import Message
from device_sim.targets import TargetProfile, load_target
from harness.errors import (
    DeviceError,
    DeviceMismatchError,
    HarnessError,
    NothingToStreamError,
    ProtocolError,
)
from harness.run import (
    check_device,
    faulty,
    plan_stream,
)
from harness.session import DeviceSession
from models.quantize import QuantizedModel, counts_from_g
from models.rundir import FIXED_POINT_VARIANTS, RunDirectory
from models.tracing import TracedLayer, TracedTensor, reference_tensors, traced_layers

PASSES = 5  # a window whose trace lost frames on the line is streamed again: this often in all


@dataclass
class LayerTrace:
    """One layer of the trace: equal to the reference, or where it first diverges."""

    layer: TracedLayer
    tensors: int  # traced per window: one per time step, or one
    diverging: int = 0  # tensors whose CRC differs from the reference's
    first_step: int | None = None
    element: int | None = None  # from the dump of the first diverging tensor
    device_value: int | None = None
    reference_value: int | None = None
    dumped: bool = False  # the first diverging tensor came back in full

    @property
    def equal(self) -> bool:
        return self.diverging == 0

    def describe(self) -> str:
        if self.equal:
            return "equal"
        where = (f"diverges from step {self.first_step} ({self.diverging} of {self.tensors} "
                 "steps)" if self.layer.per_step else "diverges")
        if self.element is None:
            return (f"{where}: CRC differs, yet the dumped values equal the reference (a CRC "
                    "fault in the firmware?)" if self.dumped else f"{where}: CRC differs")
        return (f"{where}: element {self.element}, device {_value(self.device_value)}, "
                f"reference {_value(self.reference_value)}")


def _value(value: int | None) -> str:
    return "absent" if value is None else str(value)


@dataclass
class TraceReport:
    """What `harness trace` found for one window."""

    run_dir: Path | None  # None: a window given by the caller (trace_device)
    target: str
    backend: str
    variant: str
    window_index: int | None
    build_id: str
    layers: list[LayerTrace]
    first: tuple[int, int] | None  # (layer, step) of the first divergence in execution order
    device_logits: list[int] | None  # None if the RESULT was lost
    reference_logits: list[int]
    frames: int  # trace frames of the CRC pass
    seconds: float  # the CRC pass: the window streamed and its trace received
    passes: int = 1  # windows streamed in all (CRC passes and dumps)

    @property
    def equal(self) -> bool:
        return self.first is None

    def layer(self, name: str) -> LayerTrace:
        return next(trace for trace in self.layers if trace.layer.name == name)

    def format(self) -> str:
        window = "a window" if self.run_dir is None else \
            f"window {self.window_index} of {self.run_dir}"
        lines = [f"{window} on {self.target}/{self.backend} {self.variant} (trace build "
                 f"{self.build_id}): {self.frames} trace frames in {self.seconds:.2f} s",
                 f"{'layer':>5s}  {'name':12s} {'steps':>5s}  result"]
        for trace in self.layers:
            mark = "   <- first" if self.first and self.first[0] == trace.layer.index else ""
            lines.append(f"{trace.layer.index:5d}  {trace.layer.name:12s} {trace.tensors:5d}  "
                         f"{trace.describe()}{mark}")
        device = "lost" if self.device_logits is None else str(self.device_logits)
        lines.append(f"logits: device {device}, reference {self.reference_logits}")
        if self.first is None:
            lines.append("every layer equals the integer reference")
        else:
            name = self.layers[self.first[0]].layer.name
            lines.append(f"first divergence: layer {self.first[0]} ({name}) at step "
                         f"{self.first[1]}")
        return "\n".join(lines)


# --- what the host expects -----------------------------------------------------------------

def heldout_window(run: RunDirectory, profile: TargetProfile, index: int) -> np.ndarray:
    """Window `index` of the held-out recording as int16 wire counts (L, 3), numbered as
    `harness run` numbers the windows it streams (every bout long enough, in turn)."""
    recording = run.heldout()
    window, hop = profile.window, profile.hop
    windows = plan_stream(recording, window, hop).windows
    if not 0 <= index < len(windows.x):
        raise NothingToStreamError(f"{run.path}: the held-out recording has {len(windows.x)} "
                                   f"windows (0 to {len(windows.x) - 1}), not a window {index}")
    return counts_from_g(windows.x[index])


def compare(layers: Sequence[TracedLayer], reference: Sequence[TracedTensor],
            crcs: dict[tuple[int, int], tuple[int, int]]) -> tuple[list[LayerTrace],
                                                                   tuple[int, int] | None]:
    """Per layer, the device's (count, crc32) per (layer, step) against the reference's; and
    the first (layer, step) that differs in the order the operations ran."""
    traces = [LayerTrace(layer, sum(1 for t in reference if t.layer == layer.index))
              for layer in layers]
    first = None
    for tensor in reference:
        if crcs[(tensor.layer, tensor.step)] == (len(tensor.values), tensor.crc32):
            continue
        trace = traces[tensor.layer]
        trace.diverging += 1
        if trace.first_step is None:
            trace.first_step = tensor.step
        first = first or (tensor.layer, tensor.step)
    return traces, first


def first_difference(device: Sequence[int], reference: Sequence[int]
                     ) -> tuple[int, int | None, int | None] | None:
    """(element, device value, reference value) of the first difference; a value is None where
    one tensor is shorter than the other. None when they are equal."""
    for i in range(max(len(device), len(reference))):
        ours = int(device[i]) if i < len(device) else None
        theirs = int(reference[i]) if i < len(reference) else None
        if ours != theirs:
            return i, ours, theirs
    return None


# --- what the device says ------------------------------------------------------------------

def device_crcs(frames: Sequence[Message], window_index: int = 0
                ) -> dict[tuple[int, int], tuple[int, int]]:
    """(layer, step) -> (count, crc32) of the TRACE_CRC frames of one window."""
    found: dict[tuple[int, int], tuple[int, int]] = {}
    for m in frames:
        f = m.fields
        if m.name == "TRACE_CRC" and f["window_index"] == window_index:
            found.setdefault((f["layer"], f["step"]), (f["count"], f["crc32"]))
    return found


def device_tensor(frames: Sequence[Message], layer: int, step: int,
                  window_index: int = 0) -> list[int] | None:
    """The tensor of (layer, step) from its TRACE_TENSOR chunks; None if a chunk is missing."""
    values: list[int | None] | None = None
    for m in frames:
        f = m.fields
        if m.name != "TRACE_TENSOR" or (f["window_index"], f["layer"], f["step"]) != (
                window_index, layer, step):
            continue
        values = values if values is not None else [None] * f["total"]
        chunk = f["values"]
        if f["offset"] + len(chunk) > len(values):
            raise ProtocolError(f"TRACE_TENSOR of layer {layer} step {step}: chunk at "
                                f"{f['offset']} runs past its total of {len(values)} values")
        values[f["offset"]:f["offset"] + len(chunk)] = chunk
    if values is None or any(v is None for v in values):
        return None
    return [int(v) for v in values]  # type: ignore[arg-type]


class _Tracer:
    """One open session to a trace build, streaming the same window pass after pass."""

    def __init__(self, session: DeviceSession, counts: np.ndarray) -> None:
        self.session, self.counts, self.passes = session, counts, 0

    def request(self, mode: str, layer: int = 0, step: int = 0) -> None:
        try:
            self.session.trace_request(mode, layer, step)
        except DeviceError as error:
            if error.code != "BAD_MESSAGE":
                raise
            raise DeviceMismatchError(
                f"the device on {self.session.url} does not trace layers: its firmware was "
                "built without TAG_MODEL_TRACE (build with trace=True; `harness trace` does)"
            ) from error

    def stream(self) -> list:
        self.session.traces.clear()
        self.passes += 1
        return self.session.stream(self.counts)

    def crc_pass(self, keys: list[tuple[int, int]]):
        """(device CRCs, RESULTs, frames, seconds) of the window: the frames and seconds of its
        first pass. The same window gives the same trace, so the CRCs a noisy line lost in one
        pass are taken from the next, up to PASSES passes in all."""
        crcs: dict[tuple[int, int], tuple[int, int]] = {}
        first: tuple[list, int, float] | None = None
        for _ in range(PASSES):
            start = time.monotonic()
            results = self.stream()
            seconds = time.monotonic() - start
            first = first or (results, len(self.session.traces), seconds)
            for key, value in device_crcs(self.session.traces).items():
                if crcs.setdefault(key, value) != value:
                    raise ProtocolError(f"the device sent two CRCs for layer {key[0]} step "
                                        f"{key[1]} of the same window: it does not compute "
                                        "the same twice (uninitialised memory?)")
            missing = [key for key in keys if key not in crcs]
            if not missing:
                return crcs, *first
        raise ProtocolError(
            f"{len(missing)} of {len(keys)} TRACE_CRC frames (the first: layer {missing[0][0]} "
            f"step {missing[0][1]}) never arrived in {PASSES} passes: check the line "
            f"({self.session.link.lost_device_frames} device frames lost on it)")

    def dump(self, layer: int, step: int) -> list[int]:
        """The device's tensor of (layer, step), in full; chunks lost in one pass are taken
        from the next."""
        self.request("DUMP", layer, step)
        chunks: list[Message] = []
        for _ in range(PASSES):
            self.stream()
            chunks += [m for m in self.session.traces if m.name == "TRACE_TENSOR"]
            values = device_tensor(chunks, layer, step)
            if values is not None:
                return values
        raise ProtocolError(f"the dump of layer {layer} step {step} lost TRACE_TENSOR frames in "
                            f"{PASSES} passes: check the line")


def _dump_divergences(tracer: _Tracer, traces: list[LayerTrace],
                      reference: dict[tuple[int, int], TracedTensor]) -> None:
    """For each diverging layer, its first diverging tensor from the device, element by element."""
    for trace in traces:
        if trace.equal:
            continue
        key = (trace.layer.index, trace.first_step)
        found = first_difference(tracer.dump(*key), reference[key].values)
        trace.dumped = True
        if found is not None:
            trace.element, trace.device_value, trace.reference_value = found
    tracer.request("CRC_ONLY")  # the device as it booted


def trace_device(model: QuantizedModel, sources: ModelSources, profile: TargetProfile,
                 backend: str, counts: np.ndarray, build_dir: Path,
                 options: DeviceOptions | None = None, link_faults: str | None = None,
                 ) -> TraceReport:
    """Trace one window of wire counts (L, 3) through the trace build of `sources` on `backend`
    against `model`'s integer reference; the build goes to `build_dir`. The report names no
    run directory or window index: trace_window fills them in."""
    if sources.variant not in FIXED_POINT_VARIANTS:
        raise HarnessError(f"variant {sources.variant!r} has no layer trace: only fixed point "
                           f"({', '.join(FIXED_POINT_VARIANTS)}) runs the integer reference")
    if sources.manifest.model_hash != model.model_hash:
        raise HarnessError(f"{sources.folder} holds model {sources.manifest.model_hash}, the "
                           f"reference is model {model.model_hash}: trace the C exported from it")
    check_framing(sources, profile)
    options = options or DeviceOptions()
    timeouts = profile.timeouts_for(backend, options.timeout)
    layers = traced_layers(model.ops)
    reference = reference_tensors(model, counts)
    by_key = {(t.layer, t.step): t for t in reference}
    prepared = prepare_device(backend, sources, profile, build_dir, options, trace=True)
    build_id = build_info(prepared.firmware.path)["build_id"]
    with prepared.device as device, DeviceSession(
            faulty(device.url, link_faults), timeouts.reply,
            baudrate=prepared.firmware.baudrate, check_alive=device.check_alive,
            hello_timeout=timeouts.start) as session:
        check_device(session.info, sources, profile, device.url)
        if session.info.build_id != build_id:
            raise DeviceMismatchError(
                f"the device on {device.url} runs build {session.info.build_id}, not the trace "
                f"build {build_id}: flash {prepared.firmware.path}")
        tracer = _Tracer(session, counts)
        tracer.request("CRC_ONLY")
        crcs, results, frames, seconds = tracer.crc_pass(list(by_key))
        traces, first = compare(layers, reference, crcs)
        if first is not None:
            _dump_divergences(tracer, traces, by_key)
    result = next((r for r in results if r.index == 0), None)
    return TraceReport(None, profile.name, backend, sources.variant, None, build_id, traces,
                       first, None if result is None else [int(v) for v in result.logits],
                       [int(v) for v in reference[-1].values], frames, seconds, tracer.passes)


def trace_window(run_dir: Path, target: str, backend: str, variant: str = "q16",
                 window_index: int = 0, timeout: float | None = None,
                 port: str | None = None, link_faults: str | None = None) -> TraceReport:
    """Trace window `window_index` of the run's held-out recording (numbered as `harness run`
    numbers it) through the trace build for `backend`, into RUN_DIR/build/<...>-trace/."""
    if variant not in FIXED_POINT_VARIANTS:
        raise HarnessError(f"variant {variant!r} has no layer trace: trace a fixed-point "
                           f"variant ({', '.join(FIXED_POINT_VARIANTS)})")
    run = RunDirectory(run_dir)
    profile = load_target(target)
    model = run.load_quantized(variant)
    sources = run.model_sources(variant)
    counts = heldout_window(run, profile, window_index)
    report = trace_device(model, sources, profile, backend, counts,
                          run.trace_build_dir(target, backend, variant),
                          DeviceOptions(port=port, timeout=timeout), link_faults)
    report.run_dir, report.window_index = Path(run_dir), window_index
    return report


