"""What a device run asserts, against the float model and the integer reference on the same
windows (DESIGN.md, "Agreement"), and the report that carries it.

Four checks, each usable on its own: exactness (device logits against the integer reference),
agreement (top-1 against the float model, missed windows, accuracy and MCC against the labels),
latency (against the budget and the real-time deadline) and memory (flash, RAM, stack). Each
returns its section of the report and the failures it found, as "name: detail"; `evaluate` runs
all four, and a run passes when no check failed.

Thresholds come from the target profile (common.toml, then the profile's [thresholds] and
[budget]), overridden by pyproject.toml ([tool.harness.thresholds]) and the command line, in
that order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import tomllib
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.targets import TargetProfile
from harness.errors import AssessmentWarning, ReportError, ThresholdError
from models.metrics import classification_metrics

SCHEMA_VERSION = 3  # of report.json; bump when a field changes meaning or goes away
NOT_ASSESSED = "not assessed"


@dataclass(frozen=True)
class Thresholds:
    """What a run must reach to pass, and the budget its latency is held to."""

    min_int_exact_fraction: float
    max_missed_windows: float
    min_float_top1_agreement_q16: float
    min_float_top1_agreement_q8: float
    min_float_top1_agreement_f32: float
    latency_share_of_hop: float
    cycles_per_instruction: float

    def min_float_agreement(self, variant: str) -> float:
        return getattr(self, f"min_float_top1_agreement_{variant}")

    @classmethod
    def resolve(cls, profile: TargetProfile, overrides: dict[str, float] | None = None,
                pyproject: Path | None = Path("pyproject.toml")) -> Thresholds:
        """The profile's thresholds, then pyproject.toml's, then explicit overrides."""
        defaults = dict(profile.thresholds) | {
            "latency_share_of_hop": profile.latency_share_of_hop,
            "cycles_per_instruction": profile.cycles_per_instruction}
        return resolve_limits(cls, defaults, "thresholds", overrides, pyproject,
                              f"thresholds of target {profile.name!r}")


def resolve_limits(kind: type, defaults: dict[str, Any], section: str,
                   overrides: dict[str, float] | None, pyproject: Path | None, what: str) -> Any:
    """A dataclass of numbers (thresholds, tolerances): `defaults` from the target profile,
    then pyproject.toml's [tool.harness.<section>], then `overrides` from the command line."""
    merged = dict(defaults)
    if pyproject is not None and pyproject.is_file():
        table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("harness", {})
        merged |= _known(kind, table.get(section, {}), f"{pyproject} [tool.harness.{section}]")
    merged |= _known(kind, overrides or {}, f"--{section.rstrip('s')}")
    try:
        return kind(**{name: float(value) for name, value in merged.items()})
    except (TypeError, ValueError) as error:
        raise ThresholdError(f"{what}: {error}") from error


def _known(kind: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(kind)]
    if unknown := sorted(set(values) - set(names)):
        raise ThresholdError(f"{where}: unknown name(s) {', '.join(unknown)}; known: "
                             f"{', '.join(names)}")
    return values


@dataclass
class DeviceRun:
    """What came back from the device for windows[i] (None where the result was lost)."""

    variant: str  # "q16", "q8" or "f32"
    backend: str
    platform: str  # what the firmware was built for: a profile's platform, or "host"
    counter_unit: str
    class_index: list[int | None]
    logits: list[np.ndarray | None]
    latency: list[int | None]
    stack_peak: int | None  # bytes, from the painted stack; None where unknown
    memory: dict[str, int] | None  # from the ELF; None for host-native builds
    realtime: bool
    deadline_misses: int
    seconds: float
    link: dict[str, Any]
    device: dict[str, Any]
    bulk: bool = False  # replayed from guest memory (harness run --bulk), not streamed

    @property
    def received(self) -> np.ndarray:
        """Which windows got a result."""
        return np.array([c is not None for c in self.class_index], dtype=bool)

    @property
    def classes(self) -> np.ndarray:
        """The device's class per window, -1 where none came back."""
        return np.array([c if c is not None else -1 for c in self.class_index])


@dataclass(frozen=True)
class WindowSet:
    """The windows a run streamed, named so that runs of other models on the same recording
    can be matched window by window."""

    ids: list[str]  # "<bout>:<offset>": the recording's bout id, the first sample within it
    bouts: list[int]
    animals: list[str]
    labels: np.ndarray
    class_names: tuple[str, ...]
    recording: dict[str, Any]  # source, fingerprint (of the whole recording), rate_hz
    selection: dict[str, Any] = field(default_factory=dict)  # how they were chosen (plan_stream)


# --- the report's sections -----------------------------------------------------------------------

@dataclass(frozen=True)
class Scores:
    """One figure for the device's classes and for the float model's, on the same windows."""

    device: float
    float: float


@dataclass(frozen=True)
class Exactness:
    int_exact_fraction: float | None  # None for the float32 variant
    first_mismatch: int | None
    float_max_abs_logit_error: float | None  # float32 variant only


@dataclass(frozen=True)
class Agreement:
    windows: int
    missed_windows: int
    float_top1_agreement: float
    accuracy: Scores
    mcc: Scores


@dataclass(frozen=True)
class Latency:
    unit: str
    p50: int
    p99: int
    max: int
    budget: int | None  # None where the unit says nothing about the tag (host nanoseconds)
    deadline: int | None
    checked: bool
    share_of_deadline: float | None = None
    mean: float | None = None


@dataclass(frozen=True)
class EnergyFigures:
    """What inference alone costs the battery, from the mean latency and the datasheet's
    currents (the target profile's [energy]); None everywhere but `why_not` where the latency
    says nothing about the tag."""

    assessed: bool
    why_not: str | None = None
    cycles_per_inference: float | None = None
    assumption: str | None = None  # how cycles were had from what the counter counts
    active_ms_per_hop: float | None = None
    share_of_hop: float | None = None
    charge_per_inference_uc: float | None = None
    energy_per_inference_uj: float | None = None
    inference_mah_per_day: float | None = None
    sleep_mah_per_day: float | None = None
    days_inference_only: float | None = None
    days_with_sleep: float | None = None
    battery_mah: float | None = None
    source: str | None = None


@dataclass(frozen=True)
class ClassScores:
    """Recall of one class, for the device and the float model, over its windows."""

    name: str
    windows: int
    recall_device: float | None  # None: no window of this class came back
    recall_float: float | None


@dataclass(frozen=True)
class Memory:
    flash: int | None  # None for host programs
    ram_static: int | None
    stack_peak: int | None
    flash_budget: int
    ram_budget: int
    stack_reserved: int | None = None
    ram_used: int | None = None


@dataclass
class RunReport:
    """report.json of one device run; every reader of a run's figures reads this."""

    target: str
    backend: str
    platform: str
    variant: str
    counter_unit: str
    realtime: bool
    windows: int
    missed_windows: int
    int_exact_fraction: float | None
    first_mismatch: int | None
    float_max_abs_logit_error: float | None
    float_top1_agreement: float
    accuracy: Scores
    mcc: Scores
    latency: Latency
    memory: Memory
    deadline_misses: int | None
    seconds: float
    windows_per_second: float | None
    link: dict[str, Any]
    device: dict[str, Any]
    thresholds: Thresholds
    passed: bool
    failures: list[str]
    model: dict[str, Any] = field(default_factory=dict)  # hash, kind, word_bits, formats, ...
    recording: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    per_class: list[ClassScores] = field(default_factory=list)
    energy: EnergyFigures = field(default_factory=lambda: EnergyFigures(False, "not computed"))
    # One per window: id, bout, animal, label, device, float (classes; device None if lost),
    # exact (None for float32) and latency.
    window_results: list[dict[str, Any]] = field(default_factory=list)
    trace_command: str | None = None  # what traces the first mismatching window layer by layer
    selection: dict[str, Any] = field(default_factory=dict)  # all windows, or a sample of them
    windows_per_class: dict[str, int] = field(default_factory=dict)  # every class, 0 if absent
    windows_per_animal: dict[str, int] = field(default_factory=dict)
    # What this run could not check, and why: a pass says nothing about these.
    not_assessed: list[str] = field(default_factory=list)
    bulk: bool = False  # the recording was replayed from guest memory, not streamed (--bulk)
    # Attempts before this run's that failed for infrastructure reasons (--retries), each
    # {"error": class name, "message": ...}; empty when the first attempt ran.
    attempts: list[dict[str, str]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    path: Path | None = field(default=None, compare=False)  # where it was written

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        return data

    def write(self, path: Path) -> Path:
        """Written whole or not at all: a reader never sees half a report."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # Of this process and thread: two writers never share it.
        partial = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
        partial.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(partial, path)
        self.path = path
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ReportError(f"a report of schema {data.get('schema_version')!r}; this "
                              f"harness reads schema {SCHEMA_VERSION}: run it again")
        nested = {"accuracy": Scores, "mcc": Scores, "latency": Latency, "memory": Memory,
                  "thresholds": Thresholds, "energy": EnergyFigures}
        return cls(**data | {key: kind(**data[key]) for key, kind in nested.items()}
                   | {"per_class": [ClassScores(**c) for c in data.get("per_class", [])]})

    @property
    def scores_assessed(self) -> bool:
        """Accuracy and MCC say something about a model only over windows of two classes or
        more: over one class, a model that always answers it scores 1.0, one that never does
        0.0."""
        return scores_assessed(self.per_class)

    @classmethod
    def read(cls, path: Path) -> RunReport:
        try:
            report = cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as error:
            raise ReportError(f"{path} is not a readable report.json: {error}") from error
        report.path = Path(path)
        return report


# --- the four checks -----------------------------------------------------------------------------

def exact_windows(run: DeviceRun, int_reference: np.ndarray | None) -> list[bool | None]:
    """Per window, whether the device's logits equal the integer reference bit for bit; None
    where no result came back or there is no integer reference (float32)."""
    return [None if int_reference is None or logits is None
            else bool(np.array_equal(logits, int_reference[i]))
            for i, logits in enumerate(run.logits)]


def check_exactness(run: DeviceRun, int_reference: np.ndarray | None, float_logits: np.ndarray,
                    limits: Thresholds) -> tuple[Exactness, list[str]]:
    """Fixed point: the share of windows whose logits equal the integer reference bit for bit.
    Float32: the largest logit error against the float model (reported, not checked)."""
    got = run.received
    if int_reference is None:
        device_logits = np.stack([run.logits[i] for i in np.flatnonzero(got)])
        error = float(np.abs(device_logits - float_logits[got]).max())
        return Exactness(None, None, error), []
    exact = np.array([bool(e) for e in exact_windows(run, int_reference)])
    fraction = float(exact[got].mean()) if got.any() else 0.0
    wrong = np.flatnonzero(got & ~exact)
    first = int(wrong[0]) if len(wrong) else None
    failures = [] if fraction >= limits.min_int_exact_fraction else [
        f"int_exact: {fraction:.4f} of windows equal the integer reference (first mismatch at "
        f"window {first})"]
    return Exactness(fraction, first, None), failures


def check_agreement(run: DeviceRun, float_logits: np.ndarray, labels: np.ndarray,
                    n_classes: int, limits: Thresholds) -> tuple[Agreement, list[str]]:
    """Top-1 agreement with the float model, missed windows, and accuracy and MCC against the
    labels for the device and the float model side by side."""
    got, device_class = run.received, run.classes
    float_class = float_logits.argmax(axis=1)
    agreement = float(np.mean(device_class[got] == float_class[got])) if got.any() else 0.0
    missed = int(len(got) - got.sum())
    failures = []
    minimum = limits.min_float_agreement(run.variant)
    if agreement < minimum:
        failures.append(f"float_top1_agreement: {agreement:.4f} < {minimum} top-1 agreement "
                        "with the float model")
    if missed > limits.max_missed_windows:
        failures.append(f"missed_windows: {missed} of {len(got)} windows got no result")

    def scores(metric: str) -> Scores:
        device = classification_metrics(labels[got], device_class[got], n_classes)
        float_model = classification_metrics(labels[got], float_class[got], n_classes)
        return Scores(device[metric], float_model[metric])

    return Agreement(len(got), missed, agreement, scores("accuracy"), scores("mcc")), failures


def _percentile(values: np.ndarray, q: float) -> int:
    return int(np.percentile(values, q, method="higher"))


def check_latency(run: DeviceRun, profile: TargetProfile,
                  limits: Thresholds) -> tuple[Latency, list[str]]:
    """p50, p99 and max per inference in the counter's unit, against the budget (a share of
    the hop) and the deadline (one hop) at the target clock; real-time runs also against the
    arrival of the next window. Host nanoseconds are reported, not checked."""
    unit = run.counter_unit
    latencies = np.array([v for v in run.latency if v is not None])
    deadline = profile.in_unit(profile.deadline_cycles, unit)
    budget = profile.in_unit(profile.deadline_cycles * limits.latency_share_of_hop, unit)
    p50, p99, worst = _percentile(latencies, 50), _percentile(latencies, 99), int(latencies.max())
    failures = []
    if budget is not None and deadline is not None:
        if p99 > budget:
            failures.append(f"latency_budget: p99 {p99} {unit} > budget {int(budget)} "
                            f"({limits.latency_share_of_hop:.0%} of the hop)")
        if worst > deadline:
            failures.append(f"deadline: max {worst} {unit} > deadline {int(deadline)} (one hop, "
                            f"{profile.hop_seconds:.3f} s at {profile.clock_hz / 1e6:g} MHz)")
    if run.realtime and run.deadline_misses:
        failures.append(f"realtime: {run.deadline_misses} results arrived after the next "
                        "window was due")
    latency = Latency(
        unit, p50, p99, worst, None if budget is None else int(budget),
        None if deadline is None else int(deadline), checked=budget is not None,
        share_of_deadline=None if deadline is None else worst / deadline,
        mean=round(float(latencies.mean()), 1))
    return latency, failures


def energy_figures(latency: Latency, profile: TargetProfile) -> EnergyFigures:
    """Charge and battery life of inference alone, one inference per hop, from the mean
    latency at the target clock and the profile's datasheet currents."""
    energy = profile.energy
    if energy is None:
        return EnergyFigures(False, f"target {profile.name!r} has no [energy] in its profile")
    if latency.unit == "cycles":
        cycles, assumption = latency.mean, "cycles counted on the device (DWT)"
    elif latency.unit == "instructions":
        cycles = latency.mean * profile.cycles_per_instruction
        assumption = (f"{profile.cycles_per_instruction:g} cycle(s) per instruction, as "
                      "emulators count instructions (cycles_per_instruction in the profile)")
    else:
        return EnergyFigures(False, f"latency in {latency.unit} of the host says nothing about "
                                    "the tag")
    active_s = cycles / profile.clock_hz
    active_ma, sleep_ma = energy.active_ma(profile.clock_hz), energy.sleep_ua / 1000.0
    hops_per_day = 86_400.0 / profile.hop_seconds
    share = active_s / profile.hop_seconds
    inference_mah = active_ma * active_s * hops_per_day / 3600.0
    sleep_mah = sleep_ma * (1.0 - min(share, 1.0)) * 24.0
    return EnergyFigures(
        True, cycles_per_inference=round(cycles, 1), assumption=assumption,
        active_ms_per_hop=round(active_s * 1000.0, 3), share_of_hop=round(share, 5),
        charge_per_inference_uc=round(active_ma * active_s * 1000.0, 3),
        energy_per_inference_uj=round(active_ma * active_s * energy.supply_v * 1000.0, 3),
        inference_mah_per_day=round(inference_mah, 4), sleep_mah_per_day=round(sleep_mah, 4),
        days_inference_only=round(energy.battery_mah / inference_mah, 1),
        days_with_sleep=round(energy.battery_mah / (inference_mah + sleep_mah), 1),
        battery_mah=energy.battery_mah, source=energy.source)


def per_class_scores(run: DeviceRun, float_logits: np.ndarray, windows: WindowSet
                     ) -> list[ClassScores]:
    """Recall per class over the windows that came back, device and float side by side."""
    got = run.received
    labels, device, float_class = windows.labels[got], run.classes[got], \
        float_logits.argmax(axis=1)[got]
    scores = []
    for index, name in enumerate(windows.class_names):
        mine = labels == index
        n = int(mine.sum())
        scores.append(ClassScores(
            name, n, float(np.mean(device[mine] == index)) if n else None,
            float(np.mean(float_class[mine] == index)) if n else None))
    return scores


def window_results(run: DeviceRun, float_logits: np.ndarray, windows: WindowSet,
                   int_reference: np.ndarray | None) -> list[dict[str, Any]]:
    """What each window got: the device's class beside the float model's and the label."""
    float_class = float_logits.argmax(axis=1)
    return [{"id": window_id, "bout": windows.bouts[i], "animal": windows.animals[i],
             "label": int(windows.labels[i]), "device": run.class_index[i],
             "float": int(float_class[i]), "exact": exact, "latency": run.latency[i]}
            for i, (window_id, exact) in enumerate(zip(windows.ids,
                                                       exact_windows(run, int_reference),
                                                       strict=True))]


def check_memory(run: DeviceRun, profile: TargetProfile) -> tuple[Memory, list[str]]:
    """Flash and static RAM from the ELF, the stack peak from the device, against the real
    device's flash and RAM and the stack the firmware reserved."""
    if run.memory is None:
        return Memory(None, None, run.stack_peak, profile.flash_bytes, profile.ram_bytes), []
    flash, static = run.memory["flash"], run.memory["ram_static"]
    reserved, ram_used = run.memory["stack_reserved"], static + (run.stack_peak or 0)
    failures = []
    if flash > profile.flash_bytes:
        failures.append(f"flash: {flash} B > {profile.flash_bytes} B of flash")
    if ram_used > profile.ram_bytes:
        failures.append(f"ram: {ram_used} B (static + stack peak) > {profile.ram_bytes} B of "
                        "RAM")
    if run.stack_peak is not None and run.stack_peak > reserved:
        failures.append(f"stack: stack peak {run.stack_peak} B > {reserved} B reserved")
    return Memory(flash, static, run.stack_peak, profile.flash_bytes, profile.ram_bytes,
                  reserved, ram_used), failures


def evaluate(run: DeviceRun, profile: TargetProfile, windows: WindowSet,
             float_logits: np.ndarray, int_reference: np.ndarray | None,
             limits: Thresholds, model: dict[str, Any] | None = None) -> RunReport:
    """The report of one device run: all four checks; `passed` when none failed. `model`
    describes what ran (hash, formats, parameter bytes): a baseline compares it."""
    exactness, exact_failures = check_exactness(run, int_reference, float_logits, limits)
    agreement, agreement_failures = check_agreement(run, float_logits, windows.labels,
                                                    len(windows.class_names), limits)
    latency, latency_failures = check_latency(run, profile, limits)
    memory, memory_failures = check_memory(run, profile)
    failures = [*exact_failures, *agreement_failures, *latency_failures, *memory_failures]
    energy = energy_figures(latency, profile)
    per_class = per_class_scores(run, float_logits, windows)
    unassessed = not_assessed(per_class, exactness, latency, energy)
    if not scores_assessed(per_class):  # the one that makes a pass look like more than it is
        warnings.warn(f"{profile.name} {run.variant}: {unassessed[0]}", AssessmentWarning,
                      stacklevel=2)
    return RunReport(
        target=profile.name, backend=run.backend, platform=run.platform, variant=run.variant,
        counter_unit=run.counter_unit, realtime=run.realtime,
        windows=agreement.windows, missed_windows=agreement.missed_windows,
        int_exact_fraction=exactness.int_exact_fraction,
        first_mismatch=exactness.first_mismatch,
        float_max_abs_logit_error=exactness.float_max_abs_logit_error,
        float_top1_agreement=agreement.float_top1_agreement,
        accuracy=agreement.accuracy, mcc=agreement.mcc, latency=latency, memory=memory,
        deadline_misses=run.deadline_misses if run.realtime else None,
        seconds=round(run.seconds, 2),
        windows_per_second=(round(agreement.windows / run.seconds, 2) if run.seconds > 0
                            else None),
        link=run.link, device=run.device, thresholds=limits,
        passed=not failures, failures=failures, model=model or {},
        recording=windows.recording, class_names=list(windows.class_names),
        per_class=per_class, energy=energy,
        window_results=window_results(run, float_logits, windows, int_reference),
        selection=windows.selection,
        windows_per_class={name: int(np.sum(windows.labels == i))
                           for i, name in enumerate(windows.class_names)},
        windows_per_animal=dict(sorted(Counter(windows.animals).items())),
        not_assessed=unassessed, bulk=run.bulk)


def scores_assessed(per_class: list[ClassScores]) -> bool:
    """Whether the windows that came back hold two classes or more (RunReport.scores_assessed)."""
    return sum(1 for c in per_class if c.windows) >= 2


def not_assessed(per_class: list[ClassScores], exactness: Exactness, latency: Latency,
                 energy: EnergyFigures) -> list[str]:
    """What a run could not check, each with why; the scores over windows of one class first."""
    scored = [c for c in per_class if c.windows]
    found = []
    if not scores_assessed(per_class):
        which = f"class {scored[0].name!r}" if scored else "no class (no window came back)"
        found.append(f"accuracy and MCC: every window that came back is of {which}, so they "
                     "say nothing about the model; stream windows of two classes or more "
                     "(a --max-windows sample is stratified by class)")
    if exactness.int_exact_fraction is None:
        found.append("integer exactness: the float32 variant has no integer reference")
    if not latency.checked:
        found.append(f"latency budget and deadline: {latency.unit} of the host say nothing "
                     "about the tag")
    if not energy.assessed:
        found.append(f"energy: {energy.why_not}")
    return found


def format_report(report: RunReport) -> str:
    """The agreement table a person reads at the end of a run."""
    lat, mem = report.latency, report.memory
    unit = lat.unit

    def kb(value: int | None) -> str:
        return "n/a" if value is None else f"{value / 1024:.1f} KB"

    exact = ("n/a (float)" if report.int_exact_fraction is None
             else f"{report.int_exact_fraction:.4f}")
    rows = [
        ("windows (missed)", f"{report.windows} ({report.missed_windows})"),
        ("integer exactness", exact),
        ("top-1 agreement with float", f"{report.float_top1_agreement:.4f}"),
        ("accuracy device / float",
         f"{report.accuracy.device:.3f} / {report.accuracy.float:.3f}"
         if report.scores_assessed else f"{NOT_ASSESSED} (windows of one class)"),
        ("MCC device / float", f"{report.mcc.device:.3f} / {report.mcc.float:.3f}"
         if report.scores_assessed else f"{NOT_ASSESSED} (windows of one class)"),
        ("windows per class", _counts(report.windows_per_class)),
        ("windows per animal", _counts(report.windows_per_animal)),
        (f"latency p50 / p99 / max ({unit})", f"{lat.p50:,} / {lat.p99:,} / {lat.max:,}"),
    ]
    if lat.checked:
        rows.append((f"budget / deadline ({unit})",
                     f"{lat.budget:,} / {lat.deadline:,} "
                     f"(max is {lat.share_of_deadline:.1%} of the deadline)"))
    if mem.flash is not None:
        rows += [("flash used / budget", f"{kb(mem.flash)} / {kb(mem.flash_budget)}"),
                 ("RAM static + stack peak / budget",
                  f"{kb(mem.ram_static)} + {kb(mem.stack_peak)} / {kb(mem.ram_budget)}")]
    energy = report.energy
    if energy.assessed:
        rows += [("energy per inference", f"{energy.energy_per_inference_uj:,.1f} µJ "
                  f"({energy.active_ms_per_hop:,.2f} ms active per hop)"),
                 ("battery, inference alone / with sleep",
                  f"{energy.days_inference_only:,.0f} / {energy.days_with_sleep:,.0f} days "
                  f"of {energy.battery_mah:,.0f} mAh")]
    else:
        rows.append(("energy", f"{NOT_ASSESSED}: {energy.why_not}"))
    rows.append(("windows per second", f"{report.windows_per_second}"))
    title = (f"{report.target} on {report.backend} ({report.platform}), {report.variant}"
             f"{' (real time)' if report.realtime else ''}"
             f"{' (bulk replay)' if report.bulk else ''}")
    width = max(len(name) for name, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    if report.first_mismatch is not None:
        window = report.window_results[report.first_mismatch]["id"] \
            if report.window_results else "?"
        lines.append(f"first mismatch with the integer reference: window "
                     f"{report.first_mismatch} (bout:offset {window})"
                     + (f"; trace it layer by layer: {report.trace_command}"
                        if report.trace_command else ""))
    if report.selection.get("method", "all") != "all":
        chosen = report.selection
        lines.append(f"windows: {chosen['windows']:,} of {chosen['of']:,}, {chosen['method']} "
                     f"(seed {chosen['seed']})")
    lines += [f"{NOT_ASSESSED}: {what}" for what in report.not_assessed]
    if report.attempts:
        lines.append(f"retried: {len(report.attempts)} attempt(s) failed before this one ("
                     + "; ".join(f"{a['error']}: {a['message'].splitlines()[0]}"
                                 for a in report.attempts) + ")")
    lines.append("PASSED" if report.passed else "FAILED: " + "; ".join(report.failures))
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    """'Grazing 12, Resting 0 (absent), Walking 9'."""
    return ", ".join(f"{name} {n}" + (" (absent)" if n == 0 else "")
                     for name, n in counts.items()) or "none"
