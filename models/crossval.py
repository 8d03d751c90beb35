"""Leave-one-animal-out (LOAO) evaluation: the whole model pipeline once per held-out animal.

    OUT/folds/<animal>/<student>/   one run directory per student kind (README, "Run
                                    directory"); the students of a fold share its teacher
    OUT/folds/<animal>/fold.json    the fold's scores, written last: a fold that has it is done
    OUT/evaluation.json             per-fold scores and mean ± std over the finished folds

<animal> is the animal id when it is a plain name (letters, digits, `.`, `_`, `-`), else a
readable part and a hash of it (device_sim.names.folder_name): an id is data and never leaves
OUT. A fold that has its fold.json is not run again, so an interrupted evaluation resumes, and two
processes may share one OUT if they hold out different animals (`folds`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.errors import HarnessError
from device_sim.names import folder_name
from models.config import EvaluationOptions, TrainOptions
from models.coverage import single_animal_classes, warn_about_coverage
from models.errors import RunDirectoryError
from models.pipeline import MULTI_LEVEL_STUDENT, quantize_run, train_run
from models.recordings import Recording, Windows, make_windows, merge_classes
from models.rundir import RunDirectory, read_json, write_json

METRICS = ("accuracy", "macro_f1", "mcc")
OTHER_CLASS = "other"  # the name of the classes merge_rare_classes merges
# The float models of a fold, by their name in the run directory, and how the tables call them.
FLOAT_MODELS = {"student_no_kd": "no KD", "student_kd": "KD", MULTI_LEVEL_STUDENT: "multi-level KD"}


def model_keys(students: tuple[str, ...], multi_level: bool,
               word_lengths: tuple[int, ...]) -> list[str]:
    """Row keys of the tables: teacher, then per student kind its float and quantized models."""
    keys = ["teacher"]
    for kind in students:
        keys += [f"{kind}/{name}" for name in FLOAT_MODELS
                 if multi_level or name != MULTI_LEVEL_STUDENT]
        keys += [f"{kind}/q{bits}" for bits in word_lengths]
    return keys


def describe(key: str) -> str:
    """A row key as a person reads it: 'gru_mlp/student_kd' -> 'GRU-MLP, KD'."""
    if key == "teacher":
        return "ResNet teacher"
    kind, name = key.split("/")
    student = {"gru_mlp": "GRU-MLP", "mlp": "MLP"}.get(kind, kind)
    if name in FLOAT_MODELS:
        return f"{student}, {FLOAT_MODELS[name]}"
    return f"{student}, KD, {name[1:]}-bit DQ"


def merge_rare_classes(recording: Recording, min_fraction: float,
                       other: str = OTHER_CLASS) -> Recording:
    """Classes holding less than `min_fraction` of the samples become `other`."""
    counts = np.bincount(recording.labels, minlength=len(recording.class_names))
    keep = [name for name, n in zip(recording.class_names, counts, strict=True)
            if n >= min_fraction * counts.sum() and name != other]
    return merge_classes(recording, keep, other) if len(keep) < len(counts) else recording


def fold_dir_of(out: Path, animal: str) -> Path:
    """OUT/folds/<folder>: the animal id made a folder name that cannot leave OUT."""
    return out / "folds" / folder_name(animal)


def _fold_scores(fold_dir: Path, animal: str, options: EvaluationOptions) -> dict[str, Any]:
    """The fold's figures, gathered from its run directories' metrics.json."""
    models: dict[str, Any] = {}
    for kind in options.students:
        metrics = RunDirectory(fold_dir / kind).metrics()
        if "teacher" not in models:
            models["teacher"] = _scores(metrics["teacher"])
        for name in FLOAT_MODELS:
            if name in metrics:
                models[f"{kind}/{name}"] = _scores(metrics[name])
        for bits in options.word_lengths:
            q = metrics["quantized"][str(bits)]
            models[f"{kind}/q{bits}"] = _scores(q) | {"top1_agreement": q["top1_agreement"],
                                                      "param_bytes": q["param_bytes"]}
    data = RunDirectory(fold_dir / options.students[0]).metrics()["data"]
    return {"animal": animal, "train_windows": data["train_windows"],
            "held_out_windows": data["held_out_windows"], "models": models}


def _scores(metrics: dict[str, Any]) -> dict[str, Any]:
    keep = (*METRICS, "confusion", "parameters", "best_epoch", "seconds")
    return {k: metrics[k] for k in keep if k in metrics}


def run_fold(recording: Recording, animal: str, fold_dir: Path,
             options: EvaluationOptions) -> dict[str, Any]:
    """Hold out `animal`: train the teacher once, then each student kind with and without KD
    (and by multi-level KD), quantize its KD student, and write fold.json."""
    started = time.perf_counter()
    teacher = None
    for kind in options.students:
        run_dir = fold_dir / kind
        train_options = TrainOptions(
            options.framing, dataclasses.replace(options.sizes, student=kind), options.train,
            held_out=(animal,), multi_level=options.multi_level, train_hop=options.train_hop)
        # A fold without fold.json is unfinished: what an interrupted run left is replaced.
        train_run(recording, run_dir, train_options, teacher=teacher, replace=True)
        quantize_run(run_dir, options.word_lengths)
        teacher = teacher or RunDirectory(run_dir).load_model("teacher")
    seconds = round(time.perf_counter() - started, 1)
    fold = _fold_scores(fold_dir, animal, options) | {"seconds": seconds}
    write_json(fold_dir / "fold.json", fold)
    return fold


def leave_one_animal_out(recording: Recording, out: Path, options: EvaluationOptions,
                         on_fold: Callable[[dict[str, Any]], None] | None = None
                         ) -> dict[str, Any]:
    """Run every fold not yet done (of `options.folds`, or all animals), then summarize."""
    animals = sorted(set(recording.animals.tolist()))
    if len(animals) < 2:
        raise HarnessError(f"{recording.source}: leave-one-animal-out needs at least two "
                           f"animals, found {len(animals)}")
    folds = options.folds or tuple(animals)
    if unknown := sorted(set(folds) - set(animals)):
        raise HarnessError(f"{recording.source} has no animal(s) {', '.join(unknown)}; its "
                           f"animals are {', '.join(animals)}")
    out.mkdir(parents=True, exist_ok=True)
    _write_plan(out, recording, options)
    for animal in folds:
        fold_dir = fold_dir_of(out, animal)
        if (fold_dir / "fold.json").exists():
            continue
        fold = run_fold(recording, animal, fold_dir, options)
        if on_fold:
            on_fold(fold)
    return summarize(out)


def _write_plan(out: Path, recording: Recording, options: EvaluationOptions) -> None:
    """evaluation.json's fixed part; a second process on the same OUT must agree with it."""
    windows = make_windows(recording, options.framing.window, options.framing.hop)
    plan = {
        "data": {"source": recording.source, "synthetic": recording.synthetic,
                 "class_names": list(recording.class_names), "rate_hz": recording.rate_hz,
                 "animals": sorted(set(recording.animals.tolist())),
                 "windows": len(windows),
                 "class_windows": np.bincount(windows.y,
                                              minlength=len(recording.class_names)).tolist(),
                 "coverage": fold_coverage(windows, recording.source)},
        "framing": dataclasses.asdict(options.framing),
        "sizes": dataclasses.asdict(options.sizes),
        "training": {k: v for k, v in dataclasses.asdict(options.train).items()
                     if k != "progress"} | {"train_hop": options.train_hop or options.framing.hop},
        "students": list(options.students), "multi_level": options.multi_level,
        "word_lengths": list(options.word_lengths),
        "imbalance": ("inverse-frequency class weights in the cross-entropy"
                      if options.train.class_weights else "none"),
    }
    path = out / "plan.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != json.loads(json.dumps(plan, default=list)):
            raise HarnessError(f"{out} holds an evaluation with other data or options "
                               f"(see {path}); choose another --out or delete it")
    write_json(path, plan)


def fold_coverage(windows: Windows, source: str) -> dict[str, Any]:
    """The classes recorded on one animal, warned: the fold that holds that animal out trains
    without them, and no other fold measures them."""
    single = single_animal_classes(windows)
    problems = [f"class {name!r} comes from animal {animal} only: fold {animal} trains without "
                "it and no other fold measures its recall" for name, animal in single.items()]
    warn_about_coverage(problems, source)
    return {"single_animal_classes": single, "problems": problems}


def summarize(out: Path) -> dict[str, Any]:
    """Per-fold scores and mean ± sample std over the finished folds -> evaluation.json."""
    plan = read_json(out / "plan.json")
    folds = [json.loads(p.read_text()) for p in sorted((out / "folds").glob("*/fold.json"))]
    if not folds:
        raise HarnessError(f"{out} holds no finished fold: run `harness evaluate` first")
    keys = model_keys(tuple(plan["students"]), plan["multi_level"],
                      tuple(plan["word_lengths"]))
    per_fold = {key: {m: [f["models"][key][m] for f in folds] for m in METRICS} for key in keys}
    summary = {key: {m: _mean_std(v) for m, v in metrics.items()}
               for key, metrics in per_fold.items()}
    for kind in plan["students"]:
        for bits in plan["word_lengths"]:
            agreement = [f["models"][f"{kind}/q{bits}"]["top1_agreement"] for f in folds]
            summary[f"{kind}/q{bits}"]["top1_agreement"] = _mean_std(agreement)
    confusion = {key: np.sum([f["models"][key]["confusion"] for f in folds], axis=0).tolist()
                 for key in keys}
    comparisons = {}
    for kind in plan["students"]:
        for key, base in kd_pairs((kind,), keys):
            comparisons[key] = paired_difference(per_fold[key]["mcc"], per_fold[base]["mcc"])
        for bits in plan["word_lengths"]:
            comparisons[f"{kind}/q{bits}"] = paired_difference(
                per_fold[f"{kind}/q{bits}"]["mcc"], per_fold[f"{kind}/student_kd"]["mcc"])
    evaluation = plan | {
        "folds": [f["animal"] for f in folds],
        "fold_windows": [f["held_out_windows"] for f in folds],
        "fold_seconds": [f["seconds"] for f in folds],
        "per_fold": per_fold, "summary": summary, "confusion": confusion,
        "mcc_differences": comparisons,
    }
    write_json(out / "evaluation.json", evaluation)
    return evaluation


def kd_pairs(students: tuple[str, ...], keys: list[str]) -> list[tuple[str, str]]:
    """(distilled student, the same kind without KD) for each of `students` among `keys`."""
    return [(f"{kind}/{name}", f"{kind}/student_no_kd") for kind in students
            for name in ("student_kd", MULTI_LEVEL_STUDENT) if f"{kind}/{name}" in keys]


def _mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single fold)."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std}


def paired_difference(a: list[float], b: list[float]) -> dict[str, Any]:
    """a - b fold by fold: mean and std of the differences, the paired t statistic
    (mean / (std / sqrt(folds)); None for fewer than two folds or no spread), how many folds a
    wins, and the fold-to-fold spread of b (std over folds) to weigh the mean against."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    stats = _mean_std(diff.tolist())
    t = (stats["mean"] / (stats["std"] / np.sqrt(len(diff)))
         if len(diff) > 1 and stats["std"] > 0 else None)
    spread = _mean_std(b)["std"]
    return stats | {"paired_t": t, "wins": int((diff > 0).sum()), "folds": len(diff),
                    "fold_spread": spread, "exceeds_spread": bool(abs(diff.mean()) > spread)}


def compare_seeds(directories: list[Path]) -> dict[str, Any]:
    """Evaluations that differ only in the training seed (`harness evaluate --seed`), over the
    folds they share: how far each model's per-fold MCC moves from seed to seed, and the KD gain
    with each seed and on the seed-averaged folds, so that a gain can be weighed against the
    noise of training itself."""
    if len(directories) < 2:
        raise HarnessError("comparing seeds needs at least two evaluation directories")
    evaluations = [load_evaluation(d) for d in directories]
    first = _plan_without_seed(directories[0])
    for directory in directories[1:]:
        if _plan_without_seed(directory) != first:
            raise HarnessError(f"{directory} is not the evaluation of {directories[0]} with "
                               f"another seed: its data or options differ (see plan.json)")
    seeds = [e["training"]["seed"] for e in evaluations]
    if len(set(seeds)) < len(seeds):
        raise HarnessError(f"the evaluations repeat a seed ({seeds}): give each its own --seed")
    folds = [a for a in evaluations[0]["folds"] if all(a in e["folds"] for e in evaluations)]
    if len(folds) < 2:
        raise HarnessError(f"the evaluations share {len(folds)} finished fold(s); at least two "
                           f"are needed to compare seeds")

    def mcc(key: str) -> np.ndarray:  # [seed, fold]
        return np.array([[e["per_fold"][key]["mcc"][e["folds"].index(a)] for a in folds]
                         for e in evaluations])

    def seed_spread(values: np.ndarray) -> float:  # pooled within-fold std over the seeds
        return float(np.sqrt(values.var(axis=0, ddof=1).mean()))

    keys = model_keys(tuple(first["students"]), first["multi_level"],
                      tuple(first["word_lengths"]))
    scores = {key: mcc(key) for key in keys}
    models = {key: {"fold_mean_per_seed": s.mean(axis=1).tolist(), "seed_spread": seed_spread(s)}
              for key, s in scores.items()}
    kd = {}
    for key, base in kd_pairs(tuple(first["students"]), keys):
        gain = scores[key] - scores[base]
        kd[key] = {"mean_per_seed": gain.mean(axis=1).tolist(),
                   "seed_spread": seed_spread(gain),
                   "over_seeds": paired_difference(scores[key].mean(axis=0).tolist(),
                                                   scores[base].mean(axis=0).tolist())}
    return {"directories": [str(d) for d in directories], "seeds": seeds, "folds": folds,
            "models": models, "kd": kd}


def load_evaluation(directory: Path) -> dict[str, Any]:
    """DIR/evaluation.json, or an error that says which command writes it."""
    if not (directory / "evaluation.json").exists():
        raise RunDirectoryError(f"{directory} holds no evaluation.json: run `harness evaluate "
                                f"--out {directory}` first")
    return read_json(directory / "evaluation.json")


def _plan_without_seed(directory: Path) -> dict[str, Any]:
    plan = read_json(directory / "plan.json")
    return plan | {"training": {k: v for k, v in plan["training"].items() if k != "seed"}}
