"""Baselines, and the comparison of a candidate run with one: did a quantization change cost
accuracy, time or memory on the device, and which windows changed their answer?

    harness baseline save RUN_DIR|REPORT.json [--out FILE]      -> baseline.json to commit
    harness compare BASELINE CANDIDATE [--tolerance NAME=VALUE]  -> exit 1 naming regressions

A baseline is the comparable part of a report.json (schema 3): what ran (target, backend,
variant, model hash, every tensor's Q format, parameter bytes, the per-layer numeric view), the
figures (accuracy, MCC and recall per class for device and float, agreement, exactness,
latency, memory, energy) and the class the device gave every window, by window id. Either side
of a comparison can be a report, a run directory (its one report, or the one chosen by target,
backend and variant) or a baseline.

Windows are matched by id ("<bout>:<offset>" in the recording), so different models can be
compared too; a run on another recording, or on other windows of it, is refused.

Tolerances come from the target profile ([tolerances] of common.toml and the profile), then
pyproject.toml ([tool.harness.tolerances]), then the command line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from device_sim.targets import load_target
from harness.agreement import NOT_ASSESSED, RunReport, resolve_limits
from harness.errors import BaselineError, RecordingMismatchError, ReportError

BASELINE_FORMAT = "tag-baseline/1"


@dataclass(frozen=True)
class Tolerances:
    """How far a candidate may fall behind its baseline, figure by figure."""

    latency_percent: float
    flash_bytes: float
    ram_bytes: float
    stack_bytes: float
    accuracy: float
    mcc: float
    recall: float
    float_top1_agreement: float
    int_exact_fraction: float
    missed_windows: float

    @classmethod
    def resolve(cls, target: str, overrides: dict[str, float] | None = None,
                pyproject: Path | None = Path("pyproject.toml")) -> Tolerances:
        """The target profile's, then pyproject.toml's, then explicit overrides."""
        return resolve_limits(cls, dict(load_target(target).tolerances), "tolerances",
                              overrides, pyproject, f"tolerances of target {target!r}")


# --- what a comparison reads: a snapshot of one run -----------------------------------------

@dataclass
class Snapshot:
    """The comparable part of one run: from a report.json or a baseline file."""

    target: str
    backend: str
    platform: str
    variant: str
    model: dict[str, Any]
    recording: dict[str, Any]
    class_names: list[str]
    figures: dict[str, Any]
    per_class: list[dict[str, Any]]
    windows: list[dict[str, Any]]  # id, bout, animal, label, class (None: no result)
    source: str = ""  # the file it was read from

    @property
    def name(self) -> str:
        """<target>-<backend>-<variant>: a baseline's file name in a folder of baselines."""
        return f"{self.target}-{self.backend}-{self.variant}"

    @classmethod
    def of_report(cls, report: RunReport) -> Snapshot:
        lat, mem, energy = report.latency, report.memory, report.energy
        scored = report.scores_assessed  # else accuracy and MCC are not figures to compare
        figures = {
            "windows": report.windows, "missed_windows": report.missed_windows,
            "accuracy_device": report.accuracy.device if scored else None,
            "accuracy_float": report.accuracy.float if scored else None,
            "mcc_device": report.mcc.device if scored else None,
            "mcc_float": report.mcc.float if scored else None,
            "float_top1_agreement": report.float_top1_agreement,
            "int_exact_fraction": report.int_exact_fraction,
            "latency_unit": lat.unit, "latency_checked": lat.checked,
            "latency_p50": lat.p50, "latency_p99": lat.p99, "latency_max": lat.max,
            "flash_bytes": mem.flash, "ram_static_bytes": mem.ram_static,
            "stack_peak_bytes": mem.stack_peak,
            "energy_per_inference_uj": energy.energy_per_inference_uj,
            "battery_days_inference_only": energy.days_inference_only,
            "battery_days_with_sleep": energy.days_with_sleep,
        }
        windows = [{"id": w["id"], "bout": w["bout"], "animal": w["animal"],
                    "label": w["label"], "class": w["device"]} for w in report.window_results]
        return cls(report.target, report.backend, report.platform, report.variant,
                   dict(report.model), dict(report.recording), list(report.class_names),
                   figures, [asdict(c) for c in report.per_class], windows,
                   str(report.path or ""))

    def to_baseline(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("source")
        return {"format": BASELINE_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "from": self.source, **data}

    @classmethod
    def of_baseline(cls, data: dict[str, Any], source: str) -> Snapshot:
        if data.get("format") != BASELINE_FORMAT:
            raise BaselineError(f"{source}: format {data.get('format')!r} is not "
                                f"{BASELINE_FORMAT!r}: save the baseline again with this "
                                "harness (`harness baseline save`)")
        try:
            return cls(**{key: data[key] for key in (
                "target", "backend", "platform", "variant", "model", "recording",
                "class_names", "figures", "per_class", "windows")}, source=source)
        except KeyError as error:
            raise BaselineError(f"{source}: a baseline without {error}: damaged, or written "
                                "by another tool") from None


def save_baseline(snapshot: Snapshot, out: Path | None = None) -> Path:
    """Write `snapshot` as a baseline: to `out` (a file, or a folder that gets
    <target>-<backend>-<variant>.json), else to that name in the current folder. Written whole
    or not at all."""
    path = Path(out) if out is not None else Path(f"baseline-{snapshot.name}.json")
    if path.is_dir():
        path = path / f"{snapshot.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of this process's and thread's own: two writers (xdist workers) never share it.
    partial = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    partial.write_text(json.dumps(snapshot.to_baseline(), indent=2) + "\n")
    os.replace(partial, path)
    return path


def load_snapshot(path: Path, target: str | None = None, backend: str | None = None,
                  variant: str | None = None) -> Snapshot:
    """A report.json, a baseline, a report folder or a run directory (its one report, or the
    one that target, backend and variant pick)."""
    path = Path(path)
    if path.is_dir():
        path = _report_in(path, target, backend, variant)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BaselineError(f"{path} does not exist: give a report.json, a run directory or "
                            "a baseline (harness baseline save)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaselineError(f"{path} is neither a report nor a baseline (not JSON: "
                            f"{error})") from None
    if not isinstance(data, dict):
        raise BaselineError(f"{path} is neither a report nor a baseline")
    if "schema_version" in data:
        return Snapshot.of_report(RunReport.read(path))
    return Snapshot.of_baseline(data, str(path))


def _report_in(folder: Path, target: str | None, backend: str | None,
               variant: str | None) -> Path:
    if (folder / "report.json").is_file():
        return folder / "report.json"
    found = sorted((folder / "reports").glob("*/report.json"))
    wanted = [part for part in (target, backend, variant) if part]
    chosen = [p for p in found if all(part in p.parent.name.split("-") for part in wanted)]
    if len(chosen) == 1:
        return chosen[0]
    names = ", ".join(p.parent.name for p in found) or "none"
    if not chosen:
        raise ReportError(f"{folder} holds no report{' for ' + '-'.join(wanted) if wanted else ''}"
                          f" (reports: {names}): run `harness run` on it first")
    raise ReportError(f"{folder} holds several reports ({names}): say which with --target, "
                      "--backend and --variant, or give its report.json")


# --- the comparison -------------------------------------------------------------------------

REGRESSED, IMPROVED, OK = "regressed", "improved", "ok"


@dataclass(frozen=True)
class FigureChange:
    """One figure of the baseline against the candidate, and the verdict on it."""

    name: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    tolerance: str
    verdict: str  # ok, improved, regressed, or not assessed
    why: str | None = None  # why not assessed


@dataclass(frozen=True)
class ClassChange:
    name: str
    windows: int
    baseline: float | None  # device recall
    candidate: float | None
    verdict: str


# What a window whose class changed became, and how the summary says it.
WINDOW_OUTCOMES = {"right": "now right", "wrong": "now wrong",
                   "still wrong": "wrong either way", "lost": "lost (no result)",
                   "recovered": "answered again"}


@dataclass(frozen=True)
class WindowChange:
    """A window whose device class differs between the baseline and the candidate."""

    id: str
    bout: int
    animal: str
    label: str
    baseline: str  # class name, or "no result"
    candidate: str
    became: str  # right, wrong, still wrong, lost, recovered


@dataclass(frozen=True)
class FormatChange:
    tensor: str
    baseline: str | None  # None: the tensor is not in that model
    candidate: str | None


@dataclass
class Comparison:
    baseline: Snapshot
    candidate: Snapshot
    tolerances: Tolerances
    figures: list[FigureChange]
    classes: list[ClassChange]
    windows: list[WindowChange]
    formats: list[FormatChange]
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[str]:
        """Every regressed figure by name; a class's recall as recall[<class>]."""
        return ([f.name for f in self.figures if f.verdict == REGRESSED]
                + [f"recall[{c.name}]" for c in self.classes if c.verdict == REGRESSED])

    @property
    def passed(self) -> bool:
        return not self.regressions

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline.source, "candidate": self.candidate.source,
                "passed": self.passed, "regressions": self.regressions, "notes": self.notes,
                "tolerances": asdict(self.tolerances),
                "figures": [asdict(f) for f in self.figures],
                "classes": [asdict(c) for c in self.classes],
                "windows": [asdict(w) for w in self.windows],
                "formats": [asdict(f) for f in self.formats],
                "layers": layer_rows(self)}


def _higher_better(name: str, base: float | None, cand: float | None, tolerance: float,
                   why: str | None = None) -> FigureChange:
    """A score that may drop by at most `tolerance`."""
    if base is None or cand is None:
        return FigureChange(name, base, cand, None, f"-{tolerance:g}", NOT_ASSESSED,
                            why or "absent from one side")
    verdict = REGRESSED if cand < base - tolerance - 1e-12 else (
        IMPROVED if cand > base + 1e-12 else OK)
    return FigureChange(name, base, cand, cand - base, f"-{tolerance:g}", verdict)


def _lower_better(name: str, base: float | None, cand: float | None, allowed: float,
                  tolerance: str, why: str | None = None) -> FigureChange:
    """A cost that may grow by at most `allowed` (in its own unit)."""
    if base is None or cand is None or why is not None:
        return FigureChange(name, base, cand, None, tolerance, NOT_ASSESSED,
                            why or "absent from one side")
    verdict = REGRESSED if cand > base + allowed else (IMPROVED if cand < base else OK)
    return FigureChange(name, base, cand, cand - base, tolerance, verdict)


def _figures(base: dict[str, Any], cand: dict[str, Any], tol: Tolerances) -> list[FigureChange]:
    rows = [
        _higher_better("accuracy", base["accuracy_device"], cand["accuracy_device"],
                       tol.accuracy),
        _higher_better("mcc", base["mcc_device"], cand["mcc_device"], tol.mcc,
                       "windows of one class: MCC says nothing"),
        _higher_better("float_top1_agreement", base["float_top1_agreement"],
                       cand["float_top1_agreement"], tol.float_top1_agreement),
        _higher_better("int_exact_fraction", base["int_exact_fraction"],
                       cand["int_exact_fraction"], tol.int_exact_fraction,
                       "a float32 variant has no integer reference"),
        _lower_better("missed_windows", base["missed_windows"], cand["missed_windows"],
                      tol.missed_windows, f"+{tol.missed_windows:g}"),
    ]
    latency_why = None
    if base["latency_unit"] != cand["latency_unit"]:
        latency_why = (f"latency in {base['latency_unit']} against {cand['latency_unit']}: "
                       "not comparable")
    elif not (base["latency_checked"] and cand["latency_checked"]):
        latency_why = f"latency in host {base['latency_unit']} says nothing about the tag"
    for key in ("latency_p50", "latency_p99", "latency_max"):
        allowed = None if base[key] is None else base[key] * tol.latency_percent / 100.0
        rows.append(_lower_better(key, base[key], cand[key], allowed or 0.0,
                                  f"+{tol.latency_percent:g} %", latency_why))
    for key, allowed in (("flash_bytes", tol.flash_bytes), ("ram_static_bytes", tol.ram_bytes),
                         ("stack_peak_bytes", tol.stack_bytes)):
        rows.append(_lower_better(key, base[key], cand[key], allowed, f"+{allowed:g} B",
                                  None if base[key] is not None else "host builds have no ELF"))
    for key in ("energy_per_inference_uj", "battery_days_with_sleep"):
        b, c = base.get(key), cand.get(key)
        rows.append(FigureChange(key, b, c, None if b is None or c is None else c - b,
                                 "from latency", NOT_ASSESSED if b is None or c is None
                                 else "info", None if b is not None and c is not None
                                 else "no energy figures for one side"))
    return rows


def _classes(base: Snapshot, cand: Snapshot, tol: Tolerances) -> list[ClassChange]:
    theirs = {c["name"]: c for c in cand.per_class}
    changes = []
    for mine in base.per_class:
        other = theirs.get(mine["name"], {})
        b, c = mine["recall_device"], other.get("recall_device")
        if b is None or c is None:
            verdict = NOT_ASSESSED
        else:
            verdict = REGRESSED if c < b - tol.recall - 1e-12 else (
                IMPROVED if c > b + 1e-12 else OK)
        changes.append(ClassChange(mine["name"], mine["windows"], b, c, verdict))
    return changes


def _matched_windows(base: Snapshot, cand: Snapshot) -> list[WindowChange]:
    """The windows whose class changed; refused unless both ran the same windows of the same
    recording."""
    b_rec, c_rec = base.recording.get("fingerprint"), cand.recording.get("fingerprint")
    if b_rec != c_rec:
        raise RecordingMismatchError(
            f"the baseline ran on another recording than the candidate ({base.source}: "
            f"{base.recording.get('source')!r}, fingerprint {b_rec}; {cand.source}: "
            f"{cand.recording.get('source')!r}, fingerprint {c_rec}): compare runs on the "
            "same held-out recording")
    if base.class_names != cand.class_names:
        raise RecordingMismatchError(f"the baseline's classes {base.class_names} are not the "
                                     f"candidate's {cand.class_names}")
    theirs = {w["id"]: w for w in cand.windows}
    mine = {w["id"]: w for w in base.windows}
    if set(theirs) != set(mine):
        only_base, only_cand = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
        raise RecordingMismatchError(
            f"the runs streamed other windows: {len(mine)} in the baseline, {len(theirs)} in "
            f"the candidate ({len(only_base)} only in the baseline, e.g. "
            f"{only_base[:3]}; {len(only_cand)} only in the candidate, e.g. {only_cand[:3]}): "
            "run both with the same --max-windows")
    names = base.class_names

    def name(index: int | None) -> str:
        return "no result" if index is None else names[index]

    changes = []
    for w in base.windows:
        b, c = w["class"], theirs[w["id"]]["class"]
        if b == c:
            continue
        label = w["label"]
        if c is None:
            became = "lost"
        elif b is None:
            became = "recovered"
        elif c == label:
            became = "right"
        elif b == label:
            became = "wrong"
        else:
            became = "still wrong"
        changes.append(WindowChange(w["id"], w["bout"], w["animal"], names[label], name(b),
                                    name(c), became))
    return changes


def _formats(base: Snapshot, cand: Snapshot) -> list[FormatChange]:
    b, c = base.model.get("formats", {}), cand.model.get("formats", {})
    return [FormatChange(t, b.get(t), c.get(t)) for t in list(dict.fromkeys([*b, *c]))
            if b.get(t) != c.get(t)]


def _notes(base: Snapshot, cand: Snapshot) -> list[str]:
    notes = []
    for key in ("target", "backend", "platform", "variant"):
        if getattr(base, key) != getattr(cand, key):
            notes.append(f"{key}: {getattr(base, key)} -> {getattr(cand, key)}")
    b_model, c_model = base.model, cand.model
    if b_model.get("hash") != c_model.get("hash"):
        notes.append(f"model: {b_model.get('hash')} -> {c_model.get('hash')} "
                     f"({b_model.get('kind')}, {b_model.get('word_bits')}-bit, "
                     f"{b_model.get('param_bytes')} B -> {c_model.get('kind')}, "
                     f"{c_model.get('word_bits')}-bit, {c_model.get('param_bytes')} B)")
    else:
        notes.append(f"the same model ({b_model.get('hash')})")
    return notes


def compare(baseline: Snapshot, candidate: Snapshot,
            tolerances: Tolerances | None = None) -> Comparison:
    """The candidate against the baseline: a verdict per figure and per class, the windows
    whose class changed, and the tensors whose Q format changed."""
    tolerances = tolerances or Tolerances.resolve(baseline.target)
    windows = _matched_windows(baseline, candidate)
    notes = _notes(baseline, candidate)
    became = [w.became for w in windows]
    counts = [f"{became.count(kind)} {WINDOW_OUTCOMES[kind]}" for kind in WINDOW_OUTCOMES
              if kind in became]
    notes.append(f"{len(windows)} of {len(baseline.windows)} windows changed class"
                 + (": " + ", ".join(counts) if counts else ""))
    return Comparison(baseline, candidate, tolerances,
                      _figures(baseline.figures, candidate.figures, tolerances),
                      _classes(baseline, candidate, tolerances), windows,
                      _formats(baseline, candidate), notes)


def layer_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """The per-layer numeric view of both sides, when a format changed."""
    if not comparison.formats:
        return []
    theirs = {row["name"]: row for row in comparison.candidate.model.get("layers", [])}
    rows = []
    for mine in comparison.baseline.model.get("layers", []):
        other = theirs.get(mine["name"], {})
        rows.append({"name": mine["name"], "baseline_format": mine["format"],
                     "candidate_format": other.get("format"),
                     "baseline_sqnr_db": mine["sqnr_db"],
                     "candidate_sqnr_db": other.get("sqnr_db"),
                     "baseline_at_limit": mine["at_limit"],
                     "candidate_at_limit": other.get("at_limit")})
    return rows


# --- output ---------------------------------------------------------------------------------

def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()
                                  and abs(value) >= 100):
        return f"{int(value):,}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"  # scores, or days and µJ


def _delta(change: FigureChange) -> str:
    if change.delta is None:
        return "—"
    text = ("+" if change.delta > 0 else "") + _number(change.delta)
    if change.name.startswith("latency") and change.baseline:
        text += f" ({change.delta / change.baseline:+.1%})"
    return text


def _verdict(verdict: str, why: str | None) -> str:
    return f"{verdict} ({why})" if verdict == NOT_ASSESSED and why else verdict


def _sqnr(value: float | None) -> str:
    return "exact" if value is None else f"{value:.1f}"


MAX_WINDOW_ROWS = 50  # in a table a person reads; the JSON holds every window


def _tables(comparison: Comparison) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table of a comparison, for both output forms."""
    unit = comparison.baseline.figures["latency_unit"]
    tables = [("Figures", ["figure", "baseline", "candidate", "change", "tolerance", "verdict"],
               [[f.name + (f" ({unit})" if f.name.startswith("latency") else ""),
                 _number(f.baseline), _number(f.candidate), _delta(f), f.tolerance,
                 _verdict(f.verdict, f.why)] for f in comparison.figures])]
    tables.append(("Recall per class (device)",
                   ["class", "windows", "baseline", "candidate", "verdict"],
                   [[c.name, str(c.windows), _number(c.baseline), _number(c.candidate),
                     c.verdict] for c in comparison.classes]))
    tables.append((f"Windows whose class changed ({len(comparison.windows)})",
                   ["window", "animal", "label", "baseline", "candidate", "became"],
                   [[w.id, w.animal, w.label, w.baseline, w.candidate, w.became]
                    for w in comparison.windows[:MAX_WINDOW_ROWS]]
                   + ([[f"… {len(comparison.windows) - MAX_WINDOW_ROWS} more (--format json "
                        "lists them all)", "", "", "", "", ""]]
                      if len(comparison.windows) > MAX_WINDOW_ROWS else [])))
    if comparison.formats:
        tables.append((f"Q formats that changed ({len(comparison.formats)})",
                       ["tensor", "baseline", "candidate"],
                       [[f.tensor, f.baseline or "—", f.candidate or "—"]
                        for f in comparison.formats]))
        tables.append(("Per-layer numerics against the float model",
                       ["activation", "baseline format", "SQNR dB", "at limit",
                        "candidate format", "SQNR dB", "at limit"],
                       [[r["name"], r["baseline_format"], _sqnr(r["baseline_sqnr_db"]),
                         f"{r['baseline_at_limit']:,}", r["candidate_format"] or "—",
                         _sqnr(r["candidate_sqnr_db"]),
                         "—" if r["candidate_at_limit"] is None
                         else f"{r['candidate_at_limit']:,}"]
                        for r in layer_rows(comparison)]))
    return tables


def _summary(comparison: Comparison) -> str:
    if comparison.passed:
        return "no regression"
    return "REGRESSED: " + ", ".join(comparison.regressions)


def format_table(comparison: Comparison) -> str:
    """The comparison as plain-text tables for a terminal."""
    lines = [f"baseline:  {comparison.baseline.source}",
             f"candidate: {comparison.candidate.source}"]
    lines += [f"  {note}" for note in comparison.notes]
    for title, header, rows in _tables(comparison):
        lines += ["", title]
        if not rows:
            lines.append("  none")
            continue
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows,
                                                                            strict=True)]
        for row in (header, *rows):
            lines.append("  " + "  ".join(f"{cell:<{w}}" for cell, w in
                                          zip(row, widths, strict=True)).rstrip())
    lines += ["", _summary(comparison)]
    return "\n".join(lines)


def format_markdown(comparison: Comparison) -> str:
    """The comparison as Markdown, fit for a pull-request comment."""
    base, cand = comparison.baseline, comparison.candidate
    verdict = "✅ no regression" if comparison.passed else (
        "❌ regressed: " + ", ".join(f"`{name}`" for name in comparison.regressions))
    lines = [f"### {cand.target} on {cand.backend}: {base.variant} → {cand.variant}", "",
             f"**{verdict}**", ""]
    lines += [f"- {note}" for note in comparison.notes]
    for title, header, rows in _tables(comparison):
        lines += ["", f"#### {title}", ""]
        if not rows:
            lines.append("none")
            continue
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
                  for row in rows]
    return "\n".join(lines) + "\n"


def format_json(comparison: Comparison) -> str:
    return json.dumps(comparison.to_dict(), indent=2) + "\n"
