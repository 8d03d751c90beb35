"""`harness inspect`: what the loader sees in a recording, before any training.

The files and bouts read, the rate found and the rate it is resampled to, a table of classes
by animals (bouts, windows, minutes), the classes recorded on one animal, the plausibility
checks that `harness train` runs (each says "ran, nothing found" when it finds nothing) and the
animal split the same options give, with its class coverage.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device_sim.errors import HarnessError
from device_sim.targets import Framing
from models.coverage import (
    ClassCoverage,
    class_coverage,
    coverage_problems,
    single_animal_classes,
)
from models.pipeline import DataSource
from models.recordings import Recording, bout_files, make_windows, resample, split_by_animal

NOTHING_FOUND = "ran, nothing found"


@dataclass(frozen=True)
class Cell:
    """One class of one animal."""

    bouts: int
    windows: int
    minutes: float


@dataclass
class Inspection:
    source: str
    layout: str  # "bout folder", "table" or "synthetic"
    files: int
    bouts_read: int
    samples_read: int
    rate_found_hz: float
    rate_hz: float  # what it is resampled to: the target's
    seconds: float
    framing: Framing
    class_names: tuple[str, ...]
    animals: tuple[str, ...]
    cells: dict[tuple[str, str], Cell]  # (class, animal) -> its bouts, windows, minutes
    single_animal_classes: dict[str, str]
    gravity: str  # the gravity check's finding, or NOTHING_FOUND
    sensor_faults: list[str]  # clipping, dropouts, stuck axes; empty: nothing found
    loader_warnings: list[str]  # gaps, drifting clocks
    split: str  # how the held-out animals were chosen
    held_out: tuple[str, ...] = ()
    coverage: list[ClassCoverage] = field(default_factory=list)
    coverage_problems: list[str] = field(default_factory=list)
    split_error: str | None = None  # why no split could be made (one animal, ...)

    def total(self, name: str | None = None, animal: str | None = None) -> Cell:
        """The sum over every cell of a class, of an animal, or of the whole recording."""
        chosen = [c for (k, a), c in self.cells.items()
                  if name in (None, k) and animal in (None, a)]
        return Cell(sum(c.bouts for c in chosen), sum(c.windows for c in chosen),
                    sum(c.minutes for c in chosen))


def inspect_recording(source: DataSource, framing: Framing,
                      held_out: tuple[str, ...] | None = None, fraction: float = 0.25,
                      seed: int = 0, stratify: bool = False) -> Inspection:
    """Read the recording as `harness train` would with the same options, and describe it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = source.read(framing.rate_hz, seed)
    recording = resample(raw, framing.rate_hz)
    faults, outliers = source.plausibility(recording)
    gravity = NOTHING_FOUND
    if outliers:
        gravity = source.implausible(recording, outliers) + (
            "; left out (--drop-implausible)" if source.drop_implausible
            else "; kept: --drop-implausible leaves them out")
    if outliers and source.drop_implausible:  # the table and the split are what train gets
        recording = source.without(recording, outliers)
    windows = make_windows(recording, framing.window, framing.hop)
    if source.path is None:
        layout, files = "synthetic", 0
    elif source.path.is_dir():
        layout, files = "bout folder", len(bout_files(source.path))
    else:
        layout, files = "table", 1
    found = Inspection(
        source=raw.source, layout=layout, files=files, bouts_read=_count_bouts(raw),
        samples_read=len(raw), rate_found_hz=raw.rate_hz, rate_hz=recording.rate_hz,
        seconds=len(raw) / raw.rate_hz, framing=framing, class_names=recording.class_names,
        animals=tuple(sorted({str(a) for a in recording.animals})),
        cells=_cells(recording, windows), single_animal_classes=single_animal_classes(windows),
        gravity=gravity, sensor_faults=faults,
        loader_warnings=[str(w.message) for w in caught],
        split=("--held-out" if held_out else
               f"{'--stratify-split' if stratify else 'a seeded draw'} of "
               f"{100 * fraction:g} % of the animals, seed {seed}"))
    try:
        train, test, found.held_out = split_by_animal(windows, held_out, fraction, seed,
                                                      stratify)
    except (HarnessError, ValueError) as error:  # a split that cannot be made is a finding
        found.split_error = str(error)
        return found
    found.coverage = class_coverage(train, test)
    found.coverage_problems = coverage_problems(found.coverage)
    return found


def _count_bouts(recording: Recording) -> int:
    return int(recording.bouts[-1]) + 1 if len(recording) else 0


def _cells(recording: Recording, windows) -> dict[tuple[str, str], Cell]:
    first = np.r_[True, recording.bouts[1:] != recording.bouts[:-1]]
    cells = {}
    for label, name in enumerate(recording.class_names):
        for animal in sorted({str(a) for a in recording.animals[recording.labels == label]}):
            mine = (recording.labels == label) & (recording.animals == animal)
            cells[(name, animal)] = Cell(
                bouts=int((mine & first).sum()),
                windows=int(((windows.y == label) & (windows.animals == animal)).sum()),
                minutes=float(mine.sum()) / recording.rate_hz / 60.0)
    return cells


def format_inspection(found: Inspection) -> str:
    """The report `harness inspect` prints."""
    f = found.framing
    what = {"bout folder": f" (a folder of {found.files} bout files)", "table": " (a table)",
            "synthetic": ""}[found.layout]  # a synthetic source says so itself
    lines = [f"recording: {found.source}{what}",
             f"read: {found.bouts_read:,} bouts, {found.samples_read:,} samples at "
             f"{found.rate_found_hz:g} Hz ({_duration(found.seconds)})",
             f"resampled to {found.rate_hz:g} Hz for target {f.target or '-'}: windows of "
             f"{f.window} samples ({f.window / f.rate_hz:.2f} s), hop {f.hop}",
             f"classes: {len(found.class_names)} ({', '.join(found.class_names)}); animals: "
             f"{len(found.animals)} ({', '.join(found.animals)})",
             "", "bouts / windows / minutes, per animal and class:"]
    lines += _table(found)
    single = found.single_animal_classes
    lines += ["", "classes recorded on one animal: " + (
        ", ".join(f"{name} (animal {animal})" for name, animal in single.items())
        if single else "none")]
    lines += ["", "plausibility:",
              f"  gravity (median |a| of every bout near 1 g): {found.gravity}",
              "  sensor faults (clipping, dropouts, stuck axes): "
              + ("; ".join(found.sensor_faults) if found.sensor_faults else NOTHING_FOUND),
              "  time column (gaps, drifting clocks): "
              + ("; ".join(found.loader_warnings) if found.loader_warnings else NOTHING_FOUND)]
    lines += ["", f"split, as `harness train` makes it with these options ({found.split}):"]
    if found.split_error is not None:
        lines.append(f"  none: {found.split_error}")
        return "\n".join(lines)
    train = [a for a in found.animals if a not in found.held_out]
    lines += [f"  held out: {', '.join(found.held_out)}; training: {', '.join(train)}"]
    width = max(len(c.name) for c in found.coverage)
    lines.append(f"  {'class':<{width}}  {'train windows (animals)':>24}  "
                 f"{'held-out windows (animals)':>27}")
    for c in found.coverage:
        lines.append(f"  {c.name:<{width}}  {f'{c.train_windows:,} ({len(c.train_animals)})':>24}"
                     f"  {f'{c.held_out_windows:,} ({len(c.held_out_animals)})':>27}")
    lines += [f"  warning: {p}" for p in found.coverage_problems] or [
        "  every class has windows on both sides"]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _table(found: Inspection) -> list[str]:
    """Rows: animals and their total; columns: classes and the total."""
    columns = [*found.class_names, "all"]

    def text(cell: Cell) -> str:
        return f"{cell.bouts}/{cell.windows}/{cell.minutes:.1f}" if cell.bouts else "-"

    rows = [[animal, *[text(found.total(k, animal)) for k in found.class_names],
             text(found.total(animal=animal))] for animal in found.animals]
    rows.append(["all", *[text(found.total(k)) for k in found.class_names],
                 text(found.total())])
    widths = [max(len(str(r[i])) for r in [["animal", *columns], *rows])
              for i in range(len(columns) + 1)]
    return ["  " + "  ".join(f"{cell:>{w}}" if i else f"{cell:<{w}}"
                             for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
            for row in [["animal", *columns], *rows]]


def plot_inspection(found: Inspection, path: Path) -> Path:
    """Minutes of every class per animal (a grid, bouts written in each cell) beside the
    minutes per class: what the recording holds, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = np.array([[found.cells.get((k, a), Cell(0, 0, 0.0)).minutes
                         for k in found.class_names] for a in found.animals])
    height = max(3.0, 0.35 * len(found.animals) + 1.5)
    figure, (grid, bars) = plt.subplots(
        1, 2, figsize=(4 + 1.1 * len(found.class_names) + 4, height),
        gridspec_kw={"width_ratios": [max(len(found.class_names), 2), 3]})
    image = grid.imshow(np.where(minutes > 0, minutes, np.nan), aspect="auto", cmap="viridis")
    grid.set_xticks(range(len(found.class_names)), found.class_names, rotation=30, ha="right")
    grid.set_yticks(range(len(found.animals)), found.animals)
    grid.set_xlabel("class")
    grid.set_ylabel("animal")
    grid.set_title("minutes per animal and class (bouts in the cell; blank: none)")
    for i, animal in enumerate(found.animals):
        for j, name in enumerate(found.class_names):
            cell = found.cells.get((name, animal))
            if cell is not None:
                bright = cell.minutes > 0.6 * np.nanmax(minutes)  # viridis is yellow up there
                grid.text(j, i, str(cell.bouts), ha="center", va="center", fontsize=8,
                          color="black" if bright else "white")
    figure.colorbar(image, ax=grid, label="minutes")
    totals = [found.total(k).minutes for k in found.class_names]
    bars.barh(range(len(found.class_names)), totals, color="tab:blue")
    bars.set_yticks(range(len(found.class_names)), found.class_names)
    bars.invert_yaxis()
    bars.set_xlabel("minutes")
    bars.set_title("time per class")
    for i, (name, value) in enumerate(zip(found.class_names, totals, strict=True)):
        animals = sum(1 for a in found.animals if (name, a) in found.cells)
        bars.text(value, i, f" {value:.0f} min, {animals} animal{'s' * (animals != 1)}",
                  va="center", fontsize=8)
    bars.set_xlim(0, max(totals) * 1.5 if totals and max(totals) > 0 else 1)
    figure.suptitle(f"{Path(found.source).name}: {len(found.animals)} animals, "
                    f"{len(found.class_names)} classes, {_duration(found.seconds)}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
