"""`harness report DIR`: an evaluation's figures as a Markdown page with PNG plots.

Reads DIR/evaluation.json (`harness evaluate`) and, when present, DIR/targets.json (`harness
targets`); writes report.md and its plots to DIR/report/ or --out:

    confusion.png     confusion matrices summed over the folds: each cell the share of its
                      row and the window count; a class with no evaluated window marked absent
    mcc_kd.png        fold-mean MCC of each student without KD, with KD and multi-level KD
    word_length.png   accuracy and MCC against word length (float32, 16-bit, 8-bit DQ)
    targets.png       latency as a share of the real-time deadline, flash and RAM per target

Every mean ± std over folds is drawn clipped to the metric's range, each fold's value a point
on it. With fewer than MIN_FOLDS_FOR_PAIRED_T folds the page says that its paired t values are
no evidence.

With --seeds DIR2 ..., evaluations of the same plan trained with other seeds, the page also
weighs each KD gain against how far training alone moves a fold's MCC (seeds.json).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI machine
import matplotlib.pyplot as plt
import numpy as np

from harness.agreement import NOT_ASSESSED
from models.crossval import (
    FLOAT_MODELS,
    MULTI_LEVEL_STUDENT,
    compare_seeds,
    describe,
    load_evaluation,
    model_keys,
)
from models.rundir import read_json, write_json

DPI = 80  # small PNGs: they are committed as the example in docs/
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "mcc": "MCC"}
# The range each metric can take: a mean ± std drawn past it would show impossible values.
METRIC_BOUNDS = {"accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0), "mcc": (-1.0, 1.0)}
# Below this many folds a paired t over folds is no evidence: it has at most 3 degrees of
# freedom, so only |t| above 3.18 (12.7 with 2 folds) reaches 5 % two-sided, and 4 differences
# or fewer cannot show whether they are near normal, which the test assumes.
MIN_FOLDS_FOR_PAIRED_T = 5
LABEL_WIDTH = 12  # characters per line of a wrapped class name on a plot axis


def write_report(directory: Path, out: Path | None = None,
                 seeds: tuple[Path, ...] = ()) -> Path:
    """Render DIR's evaluation (and targets table; and, given `seeds`, the same evaluation with
    other seeds) to OUT/report.md; returns its path."""
    evaluation = load_evaluation(directory)
    targets = read_json(directory / "targets.json") if (directory / "targets.json").exists() \
        else None
    comparison = compare_seeds([directory, *seeds]) if seeds else None
    out = out or directory / "report"
    out.mkdir(parents=True, exist_ok=True)
    if comparison is not None:
        write_json(out / "seeds.json", comparison)
    images = [plot_confusions(evaluation, out / "confusion.png"),
              plot_kd(evaluation, out / "mcc_kd.png"),
              plot_word_length(evaluation, out / "word_length.png")]
    if targets is not None:
        images.append(plot_targets(targets, out / "targets.png"))
    page = out / "report.md"
    page.write_text(markdown(evaluation, targets, [image.name for image in images], comparison))
    return page


# --- tables ------------------------------------------------------------------------------------

def _keys(evaluation: dict[str, Any]) -> list[str]:
    return model_keys(tuple(evaluation["students"]), evaluation["multi_level"],
                      tuple(evaluation["word_lengths"]))


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def headline_table(evaluation: dict[str, Any]) -> str:
    """Fold-mean ± std of accuracy, macro-F1 and MCC for every model (Markdown)."""
    lines = ["| model | accuracy | macro-F1 | MCC | top-1 agreement with float |",
             "|---|---|---|---|---|"]
    for key in _keys(evaluation):
        row = evaluation["summary"][key]
        agreement = _cell(row["top1_agreement"]) if "top1_agreement" in row else ""
        lines.append(f"| {describe(key)} | " + " | ".join(_cell(row[m]) for m in METRIC_NAMES)
                     + f" | {agreement} |")
    return "\n".join(lines)


def fold_table(evaluation: dict[str, Any]) -> str:
    """MCC of every model in every fold (Markdown)."""
    folds = evaluation["folds"]
    lines = ["| model | " + " | ".join(folds) + " |", "|---" * (len(folds) + 1) + "|",
             "| held-out windows | " + " | ".join(map(str, evaluation["fold_windows"])) + " |"]
    for key in _keys(evaluation):
        values = evaluation["per_fold"][key]["mcc"]
        lines.append(f"| {describe(key)} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines)


def findings(evaluation: dict[str, Any]) -> str:
    """What the differences say, fold by fold, against the fold-to-fold spread."""
    lines = []
    for key, d in evaluation["mcc_differences"].items():
        name = key.split("/")[1]
        base = "the same student without KD" if name in FLOAT_MODELS else "its float32 model"
        verdict = ("larger than" if d["exceeds_spread"] else "within")
        lines.append(f"- {describe(key)} against {base}: MCC {d['mean']:+.3f} on the fold mean "
                     f"(± {d['std']:.3f} over folds{paired_t_text(d)}; better in {d['wins']} of "
                     f"{d['folds']}), "
                     f"{verdict} the fold-to-fold spread of {d['fold_spread']:.3f}.")
    return "\n".join(lines)


def seeds_markdown(comparison: dict[str, Any]) -> str:
    """Fold-mean MCC per seed, the seed-to-seed spread within a fold, and each KD gain per seed
    and over the seed-averaged folds (Markdown)."""
    seeds = comparison["seeds"]
    lines = ["| model | " + " | ".join(f"fold-mean MCC, seed {s}" for s in seeds)
             + " | seed-to-seed std in a fold |", "|---" * (len(seeds) + 2) + "|"]
    for key, row in comparison["models"].items():
        lines.append(f"| {describe(key)} | "
                     + " | ".join(f"{v:.3f}" for v in row["fold_mean_per_seed"])
                     + f" | {row['seed_spread']:.3f} |")
    lines.append("")
    for key, gain in comparison["kd"].items():
        d = gain["over_seeds"]
        t = paired_t_text(d, lead=", ")
        per_seed = ", ".join(f"{v:+.3f} (seed {s})" for v, s in
                             zip(gain["mean_per_seed"], seeds, strict=True))
        lines.append(f"- {describe(key)} against no KD: MCC {per_seed}; on the folds averaged "
                     f"over the seeds {d['mean']:+.3f} (± {d['std']:.3f} over folds{t}, better "
                     f"in {d['wins']} of {d['folds']}). From one seed to another a fold's gain "
                     f"moves by ± {gain['seed_spread']:.3f}.")
    return "\n".join(lines)


def targets_markdown(targets: dict[str, Any]) -> str:
    """The heterogeneous-target table (Markdown), one row per actual device run."""
    lines = ["| student | variant | device | accuracy | MCC | top-1 agreement with float | "
             "latency p50 | max / deadline | flash | static RAM | stack peak | "
             "energy / inference | battery days | deadline holds | integer exact | run passed |",
             "|---" * 16 + "|"]
    for r in targets["rows"]:
        exact = "n/a" if r["int_exact_fraction"] is None else f"{r['int_exact_fraction']:.3f}"
        lines.append(
            f"| {r['student']} | {r['variant']} | {r['device']} | {_score(r, 'accuracy')} | "
            f"{_score(r, 'mcc')} | {r['float_top1_agreement']:.3f} | "
            f"{_latency(r['latency_p50'], r['latency_unit'])} | "
            f"{_percent(r['share_of_deadline'])} | "
            f"{_bytes(r['flash'], r['flash_limit'])} | {_bytes(r['ram_static'], r['ram_limit'])} "
            f"| {_bytes(r['stack_peak'])} | {_energy(r.get('energy_per_inference_uj'))} | "
            f"{_days(r.get('battery_days'))} | {'yes' if r['deadline_holds'] else 'NO'} | "
            f"{exact} | "
            f"{'yes' if r['passed'] else 'no (' + ', '.join(_checks(r['failures'])) + ')'} |")
    lines += [f"\nNot run: {entry['device']}, which needs {entry['needs']}"
              for entry in targets.get("left_out", [])]
    return "\n".join(lines)


def _score(row: dict[str, Any], name: str) -> str:
    """A row's accuracy or MCC; None is a figure not assessed (windows of one class), a
    missing key a table written before the column existed."""
    if name not in row:
        return "–"
    return NOT_ASSESSED if row[name] is None else f"{row[name]:.3f}"


def _energy(microjoules: float | None) -> str:
    return "–" if microjoules is None else f"{microjoules / 1000:,.2f} mJ"


def _days(days: float | None) -> str:
    return "–" if days is None else f"{days:,.0f}"


def _percent(share: float) -> str:
    return "< 0.01 %" if share < 1e-4 else f"{100 * share:.3g} %"


def _checks(failures: list[str]) -> list[str]:
    """The names of the failed checks ('latency_budget: p99 ...' -> 'latency_budget')."""
    return [failure.split(":")[0] for failure in failures]


def _latency(value: int, unit: str) -> str:
    if unit == "nanoseconds":
        return f"{value / 1e3:,.1f} µs (host)"
    return f"{value / 1e6:,.2f} M {unit}"


def _bytes(value: int | None, limit: int | None = None) -> str:
    if value is None:
        return "–"
    return f"{value / 1024:,.1f} KB" + (f" of {limit // 1024:,}" if limit else "")


def evaluated_class_windows(evaluation: dict[str, Any]) -> list[int]:
    """Held-out windows per class over the finished folds: the rows of a summed confusion
    matrix (every model of a fold is scored on the same windows)."""
    return np.asarray(evaluation["confusion"]["teacher"]).sum(axis=1).tolist()


def header(evaluation: dict[str, Any]) -> str:
    """What was evaluated: the finished folds only (evaluation.json lists no other), their
    held-out windows per class, and the training settings."""
    data, training = evaluation["data"], evaluation["training"]
    framing = evaluation["framing"]
    folds, animals = evaluation["folds"], data["animals"]
    names = data["class_names"]
    held_out = ", ".join(f"{name} {n}" for name, n in zip(
        names, evaluated_class_windows(evaluation), strict=True))
    if len(folds) == len(animals):
        scope = f"{len(animals)} animals; {len(folds)} folds, each holding one animal out"
    else:  # a partial evaluation (--folds, --max-folds, or still running)
        rest = [a for a in animals if a not in folds]
        scope = (f"{len(animals)} animals, {len(folds)} of them held out, one fold each "
                 f"({', '.join(folds)}); {len(rest)} animal{'s' if len(rest) > 1 else ''} "
                 f"held out in no evaluated fold ({', '.join(rest)}), only trained on")
    recording = ", ".join(f"{name} {n}" for name, n in zip(names, data["class_windows"],
                                                           strict=True))
    hours = sum(evaluation["fold_seconds"]) / 3600
    return (
        f"Recording: {data['source']}. {scope}. Windows of {framing['window']} samples at "
        f"{framing['rate_hz']:g} Hz, hop {framing['hop']}: the {len(folds)} evaluated folds "
        f"hold out {sum(evaluation['fold_windows'])} windows ({held_out}) of the recording's "
        f"{data['windows']} ({recording}); training windows every {training['train_hop']} "
        f"samples. Class imbalance: {evaluation['imbalance']}. "
        f"Training: at most {training['epochs']} epochs, early stopping after "
        f"{training['patience']} without a better validation loss on "
        f"{training['val_fraction']:.0%} of the training windows; KD with T = "
        f"{training['temperature']:g}, α = {training['alpha']:g}; multi-level KD adds the "
        f"teacher's three stage features with weight {training['feature_weight']:g}. "
        f"Compute: {hours:.2f} h of fold time in all.")


def few_folds_note(folds: int) -> str | None:
    """What a paired t over `folds` folds is worth, when that is nothing; None otherwise."""
    if folds >= MIN_FOLDS_FOR_PAIRED_T:
        return None
    return (f"With {folds} fold{'s' if folds != 1 else ''}, too few for a paired t-test to "
            f"mean anything (it needs at least {MIN_FOLDS_FOR_PAIRED_T}): the t values below "
            "are not evidence of a difference. Read the folds won and the fold-to-fold spread, "
            "and evaluate more animals for a test.")


def paired_t_text(difference: dict[str, Any], lead: str = "; ") -> str:
    """'; paired t = 2.43', marked as no evidence over fewer than MIN_FOLDS_FOR_PAIRED_T folds;
    '' where there is no t (one fold, or no spread)."""
    if difference["paired_t"] is None:
        return ""
    text = f"{lead}paired t = {difference['paired_t']:.2f}"
    if difference["folds"] < MIN_FOLDS_FOR_PAIRED_T:
        text += f", not evidence over {difference['folds']} folds"
    return text


def markdown(evaluation: dict[str, Any], targets: dict[str, Any] | None,
             images: list[str], seeds: dict[str, Any] | None = None) -> str:
    differences = ["## What the differences say", findings(evaluation)]
    if note := few_folds_note(len(evaluation["folds"])):
        differences.insert(1, note)
    parts = [
        "# Leave-one-animal-out evaluation", header(evaluation),
        "## Fold mean ± standard deviation", headline_table(evaluation),
        *differences,
        "## MCC per fold", fold_table(evaluation),
    ]
    if seeds is not None:
        parts += ["## Seed to seed",
                  f"The same evaluation trained with seeds {', '.join(map(str, seeds['seeds']))}"
                  f" (`{'`, `'.join(seeds['directories'])}`), over the "
                  f"{len(seeds['folds'])} folds they share."]
        if note := few_folds_note(len(seeds["folds"])):
            parts.append(note)
        parts.append(seeds_markdown(seeds))
    if targets is not None:
        fold = f" (models of fold {targets['fold']})" if targets["fold"] else ""
        parts += [f"## The same students on every target{fold}",
                  "Latency is host nanoseconds on the host and QEMU instructions on the tags "
                  "(`-icount shift=0`; not cycles). The deadline is one hop at the target's "
                  "clock; on the host, one hop of wall-clock time. Flash and RAM are read from "
                  "the firmware ELF against the real device's memory; the stack peak comes from "
                  "the device.", targets_markdown(targets)]
    parts += ["## Plots", *[f"![{name}]({name})" for name in images]]
    return "\n\n".join(parts) + "\n"


# --- what the plots draw ----------------------------------------------------------------------
# Each plot is drawn from a function that returns what it shows (cell texts, bars, error
# ranges), so the tests read the figures' content rather than pixels.

@dataclass(frozen=True)
class ConfusionPanel:
    """One confusion matrix as drawn: true classes down, predicted across."""

    title: str
    share: np.ndarray  # each row over its windows; NaN on an absent row
    cells: list[list[str]]  # "0.82\n(123)": the share and the window count; "" on absent rows
    row_labels: list[str]  # full class names; "name (absent)" for a class with no window
    column_labels: list[str]
    absent: list[int]  # rows of classes with no evaluated window: no recall to show


def confusion_panel(title: str, confusion: list[list[int]],
                    names: list[str]) -> ConfusionPanel:
    counts = np.asarray(confusion, dtype=np.int64)
    windows = counts.sum(axis=1)
    absent = [i for i, n in enumerate(windows) if n == 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(windows[:, None] > 0, counts / windows[:, None], np.nan)
    cells = [["" if i in absent else f"{share[i, j]:.2f}\n({counts[i, j]})"
              for j in range(len(names))] for i in range(len(names))]
    rows = [f"{name} (absent)" if i in absent else name for i, name in enumerate(names)]
    return ConfusionPanel(title, share, cells, rows, list(names), absent)


def confusion_panels(evaluation: dict[str, Any]) -> list[ConfusionPanel]:
    """The teacher's and, per student kind, the KD student's float and narrowest DQ model's
    confusion matrices summed over the folds."""
    keys = ["teacher"]
    for kind in evaluation["students"]:
        keys += [f"{kind}/student_kd", f"{kind}/q{min(evaluation['word_lengths'])}"]
    names = evaluation["data"]["class_names"]
    return [confusion_panel(describe(key), evaluation["confusion"][key], names) for key in keys]


def clipped_errors(stats: list[dict[str, float]], metric: str) -> np.ndarray:
    """(2, n) error bar lengths below and above each mean: ± std, cut at the metric's range."""
    low, high = METRIC_BOUNDS[metric]
    mean = np.array([s["mean"] for s in stats])
    std = np.array([s["std"] for s in stats])
    return np.stack([mean - np.maximum(mean - std, low), np.minimum(mean + std, high) - mean])


@dataclass(frozen=True)
class Series:
    """Fold means of one group of models, their clipped error bars and every fold's value."""

    label: str
    keys: list[str]
    means: list[float]
    errors: np.ndarray  # (2, len(keys)): below, above
    folds: list[list[float]]  # per key, the value of each fold


def series(evaluation: dict[str, Any], label: str, keys: list[str], metric: str) -> Series:
    stats = [evaluation["summary"][key][metric] for key in keys]
    return Series(label, keys, [s["mean"] for s in stats], clipped_errors(stats, metric),
                  [evaluation["per_fold"][key][metric] for key in keys])


def kd_series(evaluation: dict[str, Any]) -> list[Series]:
    """plot_kd's bars: per float model (no KD, KD, multi-level KD), the MCC of each student."""
    names = [n for n in FLOAT_MODELS if evaluation["multi_level"] or n != MULTI_LEVEL_STUDENT]
    return [series(evaluation, FLOAT_MODELS[name],
                   [f"{kind}/{name}" for kind in evaluation["students"]], "mcc")
            for name in names]


def word_length_bits(evaluation: dict[str, Any]) -> list[int]:
    return [32, *sorted(evaluation["word_lengths"], reverse=True)]


def word_length_series(evaluation: dict[str, Any], metric: str) -> list[Series]:
    """plot_word_length's lines: per student kind, its KD student at float32 and each DQ."""
    bits = word_length_bits(evaluation)
    return [series(evaluation, describe(f"{kind}/student_kd").split(",")[0],
                   [f"{kind}/student_kd"] + [f"{kind}/q{b}" for b in bits[1:]], metric)
            for kind in evaluation["students"]]


# --- plots -------------------------------------------------------------------------------------

def wrapped_label(label: str) -> str:
    """A class name on lines of LABEL_WIDTH characters, broken at spaces only: all of it shows."""
    return "\n".join(textwrap.wrap(label, LABEL_WIDTH, break_long_words=False)) or label


def plot_confusions(evaluation: dict[str, Any], path: Path) -> Path:
    """Confusion matrices of the main models, summed over folds: the share of each true class
    and its window count per cell; absent classes hatched."""
    panels = confusion_panels(evaluation)
    n = len(evaluation["data"]["class_names"])
    side = max(2.8, 0.75 * n)  # room for two lines of text per cell
    fig, axes = plt.subplots(1, len(panels), figsize=(side * len(panels) + 1.2, side + 1.4),
                             squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        ax.imshow(np.ma.masked_invalid(panel.share), vmin=0, vmax=1, cmap="Blues")
        for (i, j), text in np.ndenumerate(np.array(panel.cells, dtype=object)):
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if panel.share[i, j] > 0.6 else "black")
        for i in panel.absent:  # not a recall of 0: there was nothing to recall
            ax.add_patch(plt.Rectangle((-0.5, i - 0.5), n, 1, facecolor="0.88", hatch="///",
                                       edgecolor="0.6", linewidth=0))
        ax.set_title(panel.title, fontsize=8)
        ax.set_xticks(range(n), [wrapped_label(c) for c in panel.column_labels], fontsize=7,
                      rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n), [wrapped_label(r) for r in panel.row_labels]
                      if ax is axes[0][0] else [], fontsize=7)
        ax.set_xlabel("predicted", fontsize=7)
    axes[0][0].set_ylabel("true", fontsize=7)
    return _save(fig, path)


def _fold_points(ax: plt.Axes, x: np.ndarray, folds: list[list[float]]) -> None:
    """Each fold's value as a point over its bar or mean."""
    for xi, values in zip(x, folds, strict=True):
        ax.plot([xi] * len(values), values, "o", color="black", markerfacecolor="white",
                markersize=3, markeredgewidth=0.8, zorder=3)


def plot_kd(evaluation: dict[str, Any], path: Path) -> Path:
    """Fold-mean MCC ± std (clipped to [-1, 1]) per student: without KD, with KD, multi-level
    KD; each fold a point."""
    groups = kd_series(evaluation)
    kinds = evaluation["students"]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    width = 0.8 / len(groups)
    for i, group in enumerate(groups):
        x = np.arange(len(kinds)) + (i - (len(groups) - 1) / 2) * width
        ax.bar(x, group.means, width, yerr=group.errors, capsize=3, label=group.label,
               error_kw={"ecolor": "0.3", "linewidth": 1})
        _fold_points(ax, x, group.folds)
    teacher = evaluation["summary"]["teacher"]["mcc"]["mean"]
    ax.axhline(teacher, color="grey", linestyle="--", label=f"teacher {teacher:.3f}")
    ax.set_xticks(range(len(kinds)), [describe(f"{k}/student_kd").split(",")[0] for k in kinds])
    ax.set_ylabel("MCC (fold mean ± std; points: folds)", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def plot_word_length(evaluation: dict[str, Any], path: Path) -> Path:
    """Accuracy and MCC of each KD student at float32, 16 and 8 bits (fold mean ± std, clipped
    to the metric's range; each fold a point)."""
    bits = word_length_bits(evaluation)
    fig, axes = plt.subplots(1, 2, figsize=(6.5, 2.8))
    for ax, metric in zip(axes, ("accuracy", "mcc"), strict=True):
        for i, line in enumerate(word_length_series(evaluation, metric)):
            x = np.arange(len(bits)) + 0.08 * i
            ax.errorbar(x, line.means, yerr=line.errors, marker="s", capsize=3,
                        label=line.label)
            _fold_points(ax, x, line.folds)
        ax.set_xticks(range(len(bits)), ["float32" if b == 32 else f"{b}-bit" for b in bits])
        ax.set_title(METRIC_NAMES[metric], fontsize=9)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def plot_targets(targets: dict[str, Any], path: Path) -> Path:
    """Per device and variant: worst latency as a share of the deadline (log scale), and flash
    and RAM of each tag firmware against the device's memory."""
    rows = targets["rows"]
    labels = [f"{r['student']} {r['variant']}" for r in rows if r["device"] == rows[0]["device"]]
    devices = list(dict.fromkeys(r["device"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    width = 0.8 / len(devices)
    for i, device in enumerate(devices):
        mine = [r for r in rows if r["device"] == device]
        x = np.arange(len(mine)) + (i - (len(devices) - 1) / 2) * width
        axes[0].bar(x, [100 * r["share_of_deadline"] for r in mine], width, label=device)
    axes[0].axhline(100, color="red", linestyle="--", linewidth=1)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("worst latency, % of deadline")
    axes[0].set_xticks(range(len(labels)), labels, rotation=45, fontsize=7, ha="right")
    axes[0].legend(fontsize=7)
    tags = [d for d in devices if any(r["flash"] is not None for r in rows if r["device"] == d)]
    width = 0.8 / (2 * len(tags))
    for i, device in enumerate(tags):
        mine = [r for r in rows if r["device"] == device]
        for j, (field, limit) in enumerate((("flash", "flash_limit"), ("ram_static", "ram_limit"))):
            x = np.arange(len(mine)) + (2 * i + j - (2 * len(tags) - 1) / 2) * width
            axes[1].bar(x, [100 * r[field] / r[limit] for r in mine], width,
                        label=f"{device}: {'flash' if field == 'flash' else 'static RAM'}")
    axes[1].axhline(100, color="red", linestyle="--", linewidth=1)
    axes[1].set_ylabel("% of the device's memory")
    axes[1].set_xticks(range(len(labels)), labels, rotation=45, fontsize=7, ha="right")
    axes[1].legend(fontsize=6)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
