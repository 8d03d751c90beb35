"""`harness report DIR`: an evaluation's figures as a Markdown page with PNG plots.

Reads DIR/evaluation.json (`harness evaluate`) and, when present, DIR/targets.json (`harness
targets`); writes report.md and its plots to DIR/report/ or --out:

    confusion.png     confusion matrices summed over the folds, rows normalised
    mcc_kd.png        fold-mean MCC of each student without KD, with KD and multi-level KD
    word_length.png   accuracy and MCC against word length (float32, 16-bit, 8-bit DQ)
    targets.png       latency as a share of the real-time deadline, flash and RAM per target

With --seeds DIR2 ..., evaluations of the same plan trained with other seeds, the page also
weighs each KD gain against how far training alone moves a fold's MCC (seeds.json).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI machine
import matplotlib.pyplot as plt
import numpy as np

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
        t = "" if d["paired_t"] is None else f"; paired t = {d['paired_t']:.2f}"
        lines.append(f"- {describe(key)} against {base}: MCC {d['mean']:+.3f} on the fold mean "
                     f"(± {d['std']:.3f} over folds{t}; better in {d['wins']} of {d['folds']}), "
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
        t = "" if d["paired_t"] is None else f", paired t = {d['paired_t']:.2f}"
        per_seed = ", ".join(f"{v:+.3f} (seed {s})" for v, s in
                             zip(gain["mean_per_seed"], seeds, strict=True))
        lines.append(f"- {describe(key)} against no KD: MCC {per_seed}; on the folds averaged "
                     f"over the seeds {d['mean']:+.3f} (± {d['std']:.3f} over folds{t}, better "
                     f"in {d['wins']} of {d['folds']}). From one seed to another a fold's gain "
                     f"moves by ± {gain['seed_spread']:.3f}.")
    return "\n".join(lines)


def targets_markdown(targets: dict[str, Any]) -> str:
    """The heterogeneous-target table (Markdown), one row per actual device run."""
    lines = ["| student | variant | device | latency p50 | max / deadline | flash | "
             "static RAM | stack peak | energy / inference | battery days | deadline holds | "
             "integer exact | run passed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in targets["rows"]:
        exact = "n/a" if r["int_exact_fraction"] is None else f"{r['int_exact_fraction']:.3f}"
        lines.append(
            f"| {r['student']} | {r['variant']} | {r['device']} | "
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


def markdown(evaluation: dict[str, Any], targets: dict[str, Any] | None,
             images: list[str], seeds: dict[str, Any] | None = None) -> str:
    data, training = evaluation["data"], evaluation["training"]
    framing = evaluation["framing"]
    classes = ", ".join(f"{name} {n}" for name, n in zip(data["class_names"],
                                                          data["class_windows"], strict=True))
    hours = sum(evaluation["fold_seconds"]) / 3600
    parts = [
        "# Leave-one-animal-out evaluation",
        f"Recording: {data['source']}. {len(data['animals'])} animals; "
        f"{len(evaluation['folds'])} folds, each holding one animal out. Windows of "
        f"{framing['window']} samples at {framing['rate_hz']:g} Hz, hop {framing['hop']} "
        f"({data['windows']} windows: {classes}); training windows every "
        f"{training['train_hop']} samples. Class imbalance: {evaluation['imbalance']}. "
        f"Training: at most {training['epochs']} epochs, early stopping after "
        f"{training['patience']} without a better validation loss on "
        f"{training['val_fraction']:.0%} of the training windows; KD with T = "
        f"{training['temperature']:g}, α = {training['alpha']:g}; multi-level KD adds the "
        f"teacher's three stage features with weight {training['feature_weight']:g}. "
        f"Compute: {hours:.2f} h of fold time in all.",
        "## Fold mean ± standard deviation", headline_table(evaluation),
        "## What the differences say", findings(evaluation),
        "## MCC per fold", fold_table(evaluation),
    ]
    if seeds is not None:
        parts += ["## Seed to seed",
                  f"The same evaluation trained with seeds {', '.join(map(str, seeds['seeds']))}"
                  f" (`{'`, `'.join(seeds['directories'])}`), over the "
                  f"{len(seeds['folds'])} folds they share.", seeds_markdown(seeds)]
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


# --- plots -------------------------------------------------------------------------------------

def plot_confusions(evaluation: dict[str, Any], path: Path) -> Path:
    """Row-normalised confusion matrices, summed over folds, of the main models."""
    keys = ["teacher"]
    for kind in evaluation["students"]:
        keys += [f"{kind}/student_kd", f"{kind}/q{min(evaluation['word_lengths'])}"]
    names = evaluation["data"]["class_names"]
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 2.9), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        cm = np.asarray(evaluation["confusion"][key], dtype=float)
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
        for (i, j), value in np.ndenumerate(share):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.6 else "black")
        ax.set_title(describe(key), fontsize=8)
        ax.set_xticks(range(len(names)), [n[:7] for n in names], fontsize=7, rotation=45)
        ax.set_yticks(range(len(names)), [n[:7] for n in names], fontsize=7)
        ax.set_xlabel("predicted", fontsize=7)
    axes[0][0].set_ylabel("true", fontsize=7)
    return _save(fig, path)


def plot_kd(evaluation: dict[str, Any], path: Path) -> Path:
    """Fold-mean MCC ± std per student: without KD, with KD, multi-level KD; folds as dots."""
    names = [n for n in FLOAT_MODELS if evaluation["multi_level"] or n != MULTI_LEVEL_STUDENT]
    kinds = evaluation["students"]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        x = np.arange(len(kinds)) + (i - (len(names) - 1) / 2) * width
        stats = [evaluation["summary"][f"{k}/{name}"]["mcc"] for k in kinds]
        ax.bar(x, [s["mean"] for s in stats], width, yerr=[s["std"] for s in stats],
               capsize=3, label=FLOAT_MODELS[name])
        for xi, kind in zip(x, kinds, strict=True):
            folds = evaluation["per_fold"][f"{kind}/{name}"]["mcc"]
            ax.plot([xi] * len(folds), folds, ".", color="black", markersize=3)
    teacher = evaluation["summary"]["teacher"]["mcc"]["mean"]
    ax.axhline(teacher, color="grey", linestyle="--", label=f"teacher {teacher:.3f}")
    ax.set_xticks(range(len(kinds)), [describe(f"{k}/student_kd").split(",")[0] for k in kinds])
    ax.set_ylabel("MCC (fold mean ± std; dots: folds)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_word_length(evaluation: dict[str, Any], path: Path) -> Path:
    """Accuracy and MCC of each KD student at float32, 16 and 8 bits (fold mean ± std)."""
    bits = [32, *sorted(evaluation["word_lengths"], reverse=True)]
    fig, axes = plt.subplots(1, 2, figsize=(6.5, 2.8))
    for ax, metric in zip(axes, ("accuracy", "mcc"), strict=True):
        for i, kind in enumerate(evaluation["students"]):
            keys = [f"{kind}/student_kd"] + [f"{kind}/q{b}" for b in bits[1:]]
            stats = [evaluation["summary"][k][metric] for k in keys]
            ax.errorbar(np.arange(len(bits)) + 0.05 * i, [s["mean"] for s in stats],
                        yerr=[s["std"] for s in stats], marker="o", capsize=3,
                        label=describe(keys[0]).split(",")[0])
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
