"""`harness run`: a run directory's model on a device, a recording streamed through it as the
accelerometer would deliver it, and the agreement with the references checked and reported."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.backends import prepare_device
from device_sim.firmware_build import check_framing
from device_sim.targets import load_target
from harness.agreement import DeviceRun, evaluate, thresholds
from harness.errors import HarnessError
from harness.session import DeviceSession, WindowResult
from models.pipeline import (
    load_model,
    load_recording_npz,
    read_json,
    write_json,
)
from models.quantize import as_device_input, counts_from_g, load_quantized
from models.recordings import Recording, make_windows
from models.training import predict_logits


@dataclass
class RunOptions:
    target: str = "eartag"
    backend: str = "qemu"
    variant: str = "q16"
    realtime: bool = False
    port: str | None = None  # serial backend
    max_windows: int | None = None  # stream only enough bouts for this many windows
    timeout: float = 20.0
    overrides: dict[str, float] = field(default_factory=dict)
    report: Path | None = None  # default: RUN_DIR/reports/<target>-<backend>-<variant>/


def _bouts_to_stream(recording: Recording, window: int, hop: int,
                     max_windows: int | None) -> list[np.ndarray]:
    """Sample indices of each bout long enough for a window, up to max_windows windows."""
    chosen, windows = [], 0
    for bout in np.unique(recording.bouts):
        index = np.flatnonzero(recording.bouts == bout)
        if len(index) < window:
            continue
        n = (len(index) - window) // hop + 1
        if max_windows is not None and windows + n > max_windows:
            if windows == 0:  # at least one window, even from a long bout
                keep = window + (max_windows - 1) * hop
                chosen.append(index[:keep])
            break
        chosen.append(index)
        windows += n
    if not chosen:
        raise HarnessError(f"{recording.source}: no bout holds one window of {window} samples")
    return chosen


def run_on_device(run_dir: Path, options: RunOptions, recording: Recording | None = None,
                  progress=None) -> dict[str, Any]:
    """Stream the held-out recording (or `recording`) through the device; return the report."""
    profile = load_target(options.target)
    framing = check_framing(run_dir, profile)
    window, hop = framing["window"], framing["hop"]
    recording = recording or load_recording_npz(run_dir / "heldout.npz")
    limits = thresholds(profile, options.overrides)
    bouts = _bouts_to_stream(recording, window, hop, options.max_windows)
    streamed = np.concatenate(bouts)
    sub = Recording(accel_g=recording.accel_g[streamed], labels=recording.labels[streamed],
                    class_names=recording.class_names, animals=recording.animals[streamed],
                    bouts=np.repeat(np.arange(len(bouts)), [len(b) for b in bouts]),
                    rate_hz=recording.rate_hz, source=recording.source)
    windows = make_windows(sub, window, hop)

    build_dir = run_dir / "build" / f"{options.target}-{options.backend}-{options.variant}"
    prepared = prepare_device(options.backend, run_dir, options.variant, profile, build_dir,
                              options.port, options.timeout)
    results: list[WindowResult | None] = []
    deadline_misses = 0
    seconds = 0.0  # streaming only: start-up and HELLO are not the device's throughput
    with prepared.device as device, DeviceSession(device.url, options.timeout,
                                                  check_alive=device.check_alive) as session:
        info = session.info
        for bout in bouts:
            counts = counts_from_g(recording.accel_g[bout])
            rate = profile.sample_rate_hz if options.realtime else None
            t0 = time.monotonic()
            got = {r.index: r for r in session.stream(counts, rate, on_result=progress)}
            seconds += time.monotonic() - t0
            for k in range((len(bout) - window) // hop + 1):
                result = got.get(k)
                results.append(result)
                # Late when it arrives after the next window's last sample was due.
                due = t0 + (window - 1 + (k + 1) * hop) / profile.sample_rate_hz
                if options.realtime and result is not None and result.received_at > due:
                    deadline_misses += 1
        stats = session.stats()
        link = asdict(session.link)

    int_reference = None
    if options.variant != "f32":
        int_reference = load_quantized(run_dir / "quantized" / options.variant).run(
            counts_from_g(windows.x))
    student = read_json(run_dir / "metrics.json").get("quantized", {}).get("student",
                                                                            "student_kd")
    float_logits = predict_logits(load_model(run_dir, student), as_device_input(windows.x))
    run = DeviceRun(
        variant=options.variant, backend=options.backend, counter_unit=info.counter_unit,
        class_index=[r.class_index if r else None for r in results],
        logits=[r.logits if r else None for r in results],
        latency=[r.latency if r else None for r in results],
        stack_peak=stats["stack_peak"] or None, memory=prepared.memory,
        realtime=options.realtime, deadline_misses=deadline_misses, seconds=seconds,
        link=link | {"device_bad_frames": stats["bad_frames"], "overruns": stats["overruns"]},
        device={"target": info.target, "build_id": info.build_id,
                "model_hash": info.model_hash, "model_variant": info.model_variant,
                "artefact": str(prepared.artefact)})
    report = evaluate(run, profile, windows.y, len(windows.class_names), float_logits,
                      int_reference, limits)
    folder = options.report or run_dir / "reports" / (
        f"{options.target}-{options.backend}-{options.variant}"
        f"{'-realtime' if options.realtime else ''}")
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "report.json", report)
    report["path"] = str(folder / "report.json")
    return report

