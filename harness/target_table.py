"""The same students on heterogeneous targets: host CPU, emulated ear tag, emulated collar.

    harness targets DIR    (an evaluation directory or a single run directory)

Every row comes from an actual `harness run` of the device pipeline: firmware built for the
target, the held-out recording streamed through it, the agreement checked. The rows are made
from the backend registry: each host backend runs the same application natively (its counter is
host nanoseconds), and each emulator backend runs every target whose profile names a platform
for it (under QEMU the counter is instructions).

A model trained for one target runs on another of the same window and hop through a
*retargeted* copy of its run directory: the same weights and C, the held-out recording
resampled to the other sensor's rate, and `config.json` saying where it came from.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_sim import toolchain
from device_sim.backends import registry
from device_sim.model_sources import VARIANTS
from device_sim.targets import (
    DEFAULT_TARGET,
    Framing,
    TargetProfile,
    load_target,
    target_names,
)
from harness.agreement import RunReport
from harness.run import RunOptions, check_run_window, run_on_device
from models.crossval import fold_dir_of
from models.errors import RunDirectoryError
from models.pipeline import export_run
from models.recordings import resample
from models.rundir import RunDirectory, read_json, write_json

# Held-out windows streamed per run: float32 fewer, as software float on the collar costs about
# a second of QEMU per window.
FIXED_POINT_WINDOWS = 64
FLOAT_WINDOWS = 8


@dataclass(frozen=True)
class Device:
    """One column of the comparison: a backend running a target's firmware."""

    name: str
    backend: str
    target: str


def devices(run_target: str) -> tuple[Device, ...]:
    """Every host backend with the run's own target, then every target (the run's first) on
    every emulator its profile names a platform for."""
    backends = registry().values()
    rows = [Device(b.label, b.name, run_target) for b in backends if b.kind == "host"]
    for name in sorted(target_names(), key=lambda name: name != run_target):
        profile = load_target(name)
        rows += [Device(f"{profile.label} ({b.label})", b.name, name) for b in backends
                 if b.kind == "emulator" and b.name in profile.backends]
    return tuple(rows)


def left_out(run_target: str) -> list[dict[str, str]]:
    """The devices of `devices` whose backend's tools are not installed here, and why: they
    are not run, and the table says so rather than leave them out silently."""
    backends = registry()
    out = []
    for device in devices(run_target):
        absent = toolchain.missing(backends[device.backend].tools)
        if absent:
            out.append({"device": device.name,
                        "needs": f"{', '.join(t.name for t in absent)}: "
                                 f"{toolchain.install_hint(absent)}"})
    return out


def retarget(run_dir: Path, profile: TargetProfile) -> Path:
    """`run_dir` itself if it is framed for `profile`, else a copy framed for it, under
    RUN_DIR/retargeted/<target>/: same weights and C, held-out recording resampled."""
    run = RunDirectory(run_dir)
    config = run.config()
    framing = run.framing()
    wanted = Framing.of(profile)
    if framing.cuts_like(wanted):
        return run_dir
    check_run_window(run, profile)
    moved = RunDirectory(run_dir / "retargeted" / profile.name)
    moved.path.mkdir(parents=True, exist_ok=True)
    for path in (run.metrics_path, run.calibration_path, *run.checkpoints()):
        shutil.copy2(path, moved.path / path.name)
    shutil.copytree(run.path / "quantized", moved.path / "quantized", dirs_exist_ok=True)
    moved.save_heldout(resample(run.heldout(), wanted.rate_hz))
    moved.write_config(config | {"framing": dataclasses.asdict(wanted),
                                 "retargeted_from": dataclasses.asdict(framing)})
    export_run(moved.path, check=False)  # the same C, with the manifest of the new framing
    return moved.path


def compare_targets(run_dir: Path, variants: tuple[str, ...] = VARIANTS,
                    max_windows: int = FIXED_POINT_WINDOWS, float_windows: int = FLOAT_WINDOWS,
                    on_report: Callable[[RunReport], None] | None = None
                    ) -> list[dict[str, Any]]:
    """Run each variant of the run's student on each device; one table row per run.

    Fixed point streams `max_windows` held-out windows, float32 `float_windows` (software float
    on the collar costs about a second of QEMU per window). Exports the C first if needed.
    """
    run = RunDirectory(run_dir)
    if not run.c_dir(variants[0]).is_dir():
        export_run(run_dir)
    rows = []
    run_target = run.framing().target or DEFAULT_TARGET
    absent = {entry["device"] for entry in left_out(run_target)}
    for variant in variants:
        for device in devices(run_target):
            if device.name in absent:
                continue
            profile = load_target(device.target)
            target_dir = retarget(run_dir, profile)
            windows = float_windows if variant == "f32" else max_windows
            report_dir = RunDirectory(target_dir).targets_report_dir(
                device.target, device.backend, variant)
            report = run_on_device(target_dir, RunOptions(
                target=device.target, backend=device.backend, variant=variant,
                max_windows=windows, report=report_dir))
            if on_report:
                on_report(report)
            rows.append(_row(device, profile, report))
    return rows


def _row(device: Device, profile: TargetProfile, report: RunReport) -> dict[str, Any]:
    latency, memory = report.latency, report.memory
    row = {
        "device": device.name, "backend": device.backend, "target": device.target,
        "variant": report.variant, "windows": report.windows,
        "latency_unit": latency.unit, "latency_p50": latency.p50,
        "latency_max": latency.max, "deadline": latency.deadline,
        "flash": memory.flash, "ram_static": memory.ram_static,
        "stack_peak": memory.stack_peak, "flash_limit": profile.flash_bytes,
        "ram_limit": profile.ram_bytes, "int_exact_fraction": report.int_exact_fraction,
        "float_top1_agreement": report.float_top1_agreement,
        # None: not assessed (windows of one class), printed so rather than as a number.
        "accuracy": report.accuracy.device if report.scores_assessed else None,
        "mcc": report.mcc.device if report.scores_assessed else None,
        "passed": report.passed,
        "failures": report.failures, "report": str(report.path),
        "energy_per_inference_uj": report.energy.energy_per_inference_uj,
        "battery_days": report.energy.days_with_sleep,
    }
    if latency.deadline is not None:
        row["share_of_deadline"] = latency.max / latency.deadline
    else:  # host nanoseconds against the hop in wall-clock time: can the host keep up?
        row["deadline"] = int(profile.hop_seconds * 1e9)
        row["share_of_deadline"] = latency.max / row["deadline"]
    row["deadline_holds"] = row["share_of_deadline"] <= 1.0
    return row


def student_runs(directory: Path, fold: str | None = None) -> tuple[str | None,
                                                                  dict[str, Path]]:
    """(fold, {student kind: run directory}) to compare: one fold of an evaluation (the given
    one, or the first finished), or (None, {kind: directory}) for a single run directory."""
    if RunDirectory(directory).config_path.exists():
        kind = RunDirectory(directory).config()["models"]["student_kd"]["kind"]
        return None, {kind: directory}
    if not (directory / "evaluation.json").exists():
        raise RunDirectoryError(f"{directory} is neither an evaluation directory (`harness "
                                "evaluate`) nor a run directory (`harness train`)")
    evaluation = read_json(directory / "evaluation.json")
    fold = fold or evaluation["folds"][0]
    if fold not in evaluation["folds"]:
        raise RunDirectoryError(f"{directory} has no finished fold {fold!r}; its folds are "
                                f"{', '.join(evaluation['folds'])}")
    return fold, {kind: fold_dir_of(directory, fold) / kind for kind in evaluation["students"]}


def targets_table(directory: Path, fold: str | None = None, **options: Any) -> dict[str, Any]:
    """compare_targets for every student of `directory`; written to DIR/targets.json."""
    fold, runs = student_runs(directory, fold)
    rows = [{"student": kind} | row for kind, run_dir in runs.items()
            for row in compare_targets(run_dir, **options)]
    run_targets = {RunDirectory(run_dir).framing().target or DEFAULT_TARGET
                   for run_dir in runs.values()}
    table = {"fold": fold, "rows": rows,
             "left_out": [entry for target in sorted(run_targets) for entry in left_out(target)]}
    write_json(directory / "targets.json", table)
    return table
