"""The model pipeline's three steps, each reading and writing one run directory
(models/rundir.py, the contract with the device half):

    harness train     -> config.json, teacher.pt, student_kd.pt, student_no_kd.pt,
                         [student_mlkd.pt], heldout.npz, calibration.npz, metrics.json
    harness quantize  -> quantized/q16/{model.json, weights.npz}, quantized/q8/..., metrics.json
    harness export    -> c/q16/, c/q8/, c/f32/ (C99 sources and manifest.json), metrics.json
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from device_sim.errors import HarnessError
from fixtures.synthetic import synthetic_recording
from models.config import WORD_LENGTHS, TrainOptions
from models.coverage import (
    class_coverage,
    coverage_problems,
    coverage_record,
    warn_about_coverage,
)
from models.errors import RecordingWarning, RunDirectoryError, TooFewSamplesError
from models.export import build_host, export_float, export_quantized, run_host
from models.fixedpoint import activation_errors
from models.metrics import classification_metrics, top1_agreement
from models.numeric import layer_numerics
from models.quantize import (
    WIRE_FULL_SCALE_G,
    as_device_input,
    counts_from_g,
    fold_student,
    quantize,
    save_quantized,
    tensor_formats,
)
from models.recordings import (
    Recording,
    TableColumns,
    Windows,
    covering_held_out,
    describe_bouts,
    gravity_outliers,
    load_bouts,
    load_table,
    make_windows,
    resample,
    signal_faults,
    split_by_animal,
    subset,
)
from models.rundir import DEPLOYED_STUDENT, RunDirectory, read_json
from models.students import build_model, count_parameters
from models.training import predict_logits, train_classifier

CALIBRATION_WINDOWS = 512
MULTI_LEVEL_STUDENT = "student_mlkd"  # trained only with TrainOptions.multi_level


@dataclass
class DataSource:
    """Where a recording comes from: a table, a folder of bouts, or the synthetic generator."""

    path: Path | None = None  # None: synthetic
    units: str | None = None  # default: g for tables, m/s2 for bouts
    scale: float | None = None  # g per count, with units "counts"
    rate_hz: float | None = None  # when the recording has no time column
    columns: TableColumns = field(default_factory=TableColumns)
    axes: tuple[str, str, str] = ("MPU9250_AX", "MPU9250_AY", "MPU9250_AZ")
    bout_pattern: str = r"^(?P<index>\d+)_(?P<label>[^_]+)_(?P<animal>[^_]+)_"
    label_from: str = "folder"
    bout_time_column: str | None = "Time"
    synthetic_animals: int = 6
    synthetic_seconds: float = 60.0
    synthetic_bouts: int = 2
    # Bouts whose median |a| is this far from 1 g are reported, and dropped when asked.
    gravity_tolerance_g: float = 0.5
    drop_implausible: bool = False

    def load(self, rate_hz: float, seed: int = 0) -> Recording:
        """The recording, resampled to rate_hz, checked for what a damaged sensor leaves
        (clipping, dropouts, a stuck axis: warned, with where) and for bouts that do not feel
        1 g (warned, or left out with drop_implausible)."""
        recording = resample(self.read(rate_hz, seed), rate_hz)
        faults, outliers = self.plausibility(recording)
        for fault in faults:
            warnings.warn(f"{recording.source}: {fault}", RecordingWarning, stacklevel=2)
        if not outliers:
            return recording
        if not self.drop_implausible:
            warnings.warn(f"{recording.source}: {self.implausible(recording, outliers)}; "
                          "--drop-implausible leaves them out", RecordingWarning, stacklevel=2)
            return recording
        return self.without(recording, outliers)

    def read(self, rate_hz: float, seed: int = 0) -> Recording:
        """The recording at its own rate, as the loader reads it (the synthetic generator
        makes it at rate_hz)."""
        if self.path is None:
            return synthetic_recording(animals=self.synthetic_animals,
                                       seconds_per_bout=self.synthetic_seconds,
                                       bouts_per_behaviour=self.synthetic_bouts,
                                       rate_hz=rate_hz, seed=seed)
        if self.path.is_dir():
            return load_bouts(self.path, pattern=self.bout_pattern, axes=self.axes,
                              time_column=self.bout_time_column, label_from=self.label_from,
                              units=self.units or "m/s2", rate_hz=self.rate_hz)
        return load_table(self.path, self.columns, units=self.units or "g",
                          rate_hz=self.rate_hz, scale=self.scale)

    def plausibility(self, recording: Recording) -> tuple[list[str], dict[int, float]]:
        """(what a damaged sensor left, each as a sentence; {bout: median |a|} of the bouts
        that do not feel 1 g)."""
        return (signal_faults(recording, WIRE_FULL_SCALE_G),
                gravity_outliers(recording, self.gravity_tolerance_g))

    def implausible(self, recording: Recording, outliers: dict[int, float]) -> str:
        """The bouts that do not feel 1 g, as one sentence."""
        return (f"{describe_bouts(recording, outliers)}, more than {self.gravity_tolerance_g:g} "
                "g from the 1 g a worn sensor always feels (other units or another full-scale "
                "range?)")

    @staticmethod
    def without(recording: Recording, outliers: dict[int, float]) -> Recording:
        """The recording without the bouts of `outliers`, its source saying so."""
        kept = subset(recording, ~np.isin(recording.bouts, list(outliers)))
        return dataclasses.replace(kept, source=f"{recording.source}, without "
                                                f"{describe_bouts(recording, outliers)}")


# --- the three steps ------------------------------------------------------------------------

def train_run(recording: Recording, out: Path, options: TrainOptions,
              teacher: torch.nn.Module | None = None, replace: bool = False) -> dict[str, Any]:
    """Train the teacher and the students with and without KD; evaluate on held-out animals.

    A `teacher` already trained on the same training animals is used as it is (the
    leave-one-animal-out evaluation shares one between the students of a fold). A run
    directory that holds a run already is refused, unless `replace`: then everything of the old
    run goes first, its quantized models, C, builds and reports too.
    """
    run = RunDirectory(out)
    if run.config_path.exists():
        if not replace:
            raise RunDirectoryError(f"{out} holds a run already: give another --out, or "
                                    "--force to replace it (its models, C and reports go)")
        run.replace()
    started = time.perf_counter()
    framing = options.framing
    windows = make_windows(recording, framing.window, options.train_hop or framing.hop)
    train, _, held_out = split_by_animal(windows, options.held_out, options.held_out_fraction,
                                         options.train.seed, options.stratify_split)
    heldout_rec = subset(recording, np.isin(recording.animals, held_out))
    test = make_windows(heldout_rec, framing.window, framing.hop)
    if len(train) == 0:
        raise TooFewSamplesError("no training windows remain after holding out "
                                 f"{', '.join(held_out)}")
    coverage = _split_coverage(recording.source, windows, train, test, held_out, options)
    n_classes = len(recording.class_names)
    out.mkdir(parents=True, exist_ok=True)
    x_train, x_test = as_device_input(train.x), as_device_input(test.x)

    # (name, teacher to distil from, multi-level); KD and no-KD students start from one seed.
    plan = [("teacher", None, False), ("student_kd", "teacher", False),
            ("student_no_kd", None, False)]
    if options.multi_level:
        plan.append((MULTI_LEVEL_STUDENT, "teacher", True))
    configs = {"teacher": teacher.config if teacher is not None
               else options.sizes.teacher_config(n_classes)}
    configs |= dict.fromkeys([name for name, _, _ in plan[1:]],
                             options.sizes.student_config(n_classes, framing.window))
    metrics: dict[str, Any] = {}
    models: dict[str, torch.nn.Module] = {}
    for name, distil_from, multi_level in plan:
        model_started = time.perf_counter()
        if name == "teacher" and teacher is not None:
            model, history = teacher, {"best_epoch": None, "shared": True}
        else:
            model = build_model(configs[name], seed=options.train.seed)
            history = train_classifier(model, x_train, train.y, n_classes, options.train,
                                       teacher=models.get(distil_from) if distil_from else None,
                                       multi_level=multi_level, description=name)
        models[name] = model.eval()
        run.save_model(name, model)
        predicted = predict_logits(model, x_test).argmax(axis=1)
        metrics[name] = classification_metrics(test.y, predicted, n_classes) | {
            "parameters": count_parameters(model), "best_epoch": history.get("best_epoch"),
            "seconds": round(time.perf_counter() - model_started, 1)}

    run.save_heldout(heldout_rec)
    rng = np.random.default_rng(options.train.seed)
    run.save_calibration(train.x[np.sort(rng.permutation(len(train))[:CALIBRATION_WINDOWS])])

    train_animals = sorted(set(train.animals.tolist()))
    config = {
        "data": {"source": recording.source, "synthetic": recording.synthetic,
                 "class_names": list(recording.class_names), "rate_hz": recording.rate_hz,
                 "train_animals": train_animals, "held_out_animals": list(held_out),
                 "train_windows": len(train), "held_out_windows": len(test),
                 "coverage": coverage},
        "framing": dataclasses.asdict(framing),
        "models": configs,
        "training": dataclasses.asdict(options.train) | {
            "multi_level": options.multi_level,
            "train_hop": options.train_hop or framing.hop, "teacher_shared": teacher is not None},
    }
    run.write_config(config)
    metrics["data"] = config["data"]
    metrics["seconds"] = {"train": round(time.perf_counter() - started, 1)}
    run.write_metrics(metrics)
    return metrics


def _split_coverage(source: str, windows: Windows, train: Windows, test: Windows,
                    held_out: tuple[str, ...], options: TrainOptions) -> dict[str, Any]:
    """The split's class coverage, for config.json; its problems warned, with a held-out set
    that covers more classes when there is one."""
    coverage = class_coverage(train, test)
    # One held-out animal (a leave-one-animal-out fold) seldom shows every behaviour.
    problems = coverage_problems(coverage, held_out_absence=len(held_out) > 1)
    hint = ""
    if problems and not options.stratify_split:
        better = covering_held_out(windows, len(held_out), options.train.seed)
        train_b, test_b, _ = split_by_animal(windows, better)
        if len(coverage_problems(class_coverage(train_b, test_b), len(better) > 1)) \
                < len(problems):
            hint = (f" (--stratify-split, or --held-out {','.join(better)}, puts more classes "
                    "on both sides)")
    warn_about_coverage(problems, source, hint)
    return coverage_record(coverage, problems)


def quantize_run(run_dir: Path, word_lengths: tuple[int, ...] = WORD_LENGTHS,
                 student: str = DEPLOYED_STUDENT) -> dict[str, Any]:
    """Quantize a trained student to each word length; compare with the float student."""
    started = time.perf_counter()
    run = RunDirectory(run_dir)
    model = run.load_model(student)
    net = fold_student(model, tuple(run.config()["data"]["class_names"]), run.framing().window)
    calibration_g = run.calibration_g()
    test = run.heldout_windows()
    counts = counts_from_g(test.x)
    float_logits = predict_logits(model, as_device_input(test.x))
    n_classes = len(test.class_names)
    results: dict[str, Any] = {}
    for bits in word_lengths:
        qmodel = quantize(net, calibration_g, bits)
        save_quantized(qmodel, run.quantized_dir(f"q{bits}"), run.derivation(student, True))
        int_logits = qmodel.run(counts)
        scores = classification_metrics(test.y, int_logits.argmax(axis=1), n_classes)
        results[str(bits)] = {
            "top1_agreement": top1_agreement(int_logits, float_logits),
            "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "mcc": scores["mcc"],
            "confusion": scores["confusion"], "param_bytes": qmodel.param_bytes,
            "model_hash": qmodel.model_hash, "windows": len(test),
            "formats": tensor_formats(qmodel),
            "layers": [layer.to_dict() for layer in layer_numerics(net, qmodel, counts)],
        }
    results["student"] = student
    results["float_param_bytes"] = 4 * count_parameters(model)
    results["activation_errors"] = activation_errors()
    return run.update_metrics("quantize", time.perf_counter() - started,
                              quantized=results)["quantized"]


def export_run(run_dir: Path, student: str = DEPLOYED_STUDENT,
               check: bool = True) -> dict[str, Any]:
    """Write the C of every quantized variant and the float32 variant, each with its manifest,
    then check each on the host: fixed point bit for bit against the integer reference, float32
    against PyTorch."""
    started = time.perf_counter()
    run = RunDirectory(run_dir)
    variants = run.quantized_variants()
    if not variants:
        raise RunDirectoryError(f"{run.path / 'quantized'} holds no model: run `harness "
                                "quantize`")
    framing = run.framing()
    test = run.heldout_windows() if check else None
    counts = counts_from_g(test.x) if test is not None else None
    results: dict[str, Any] = {}
    for name in variants:
        qmodel = run.load_quantized(name)
        derived_from = read_json(run.quantized_dir(name) / "model.json")["derived_from"]
        folder = export_quantized(qmodel, run.c_dir(name), framing, derived_from)
        results[name] = {"folder": str(folder.relative_to(run.path))}
        if test is not None:
            classes, logits = run_host(build_host(folder), counts, float_logits=False)
            reference = qmodel.run(counts)
            mismatched = np.flatnonzero((logits != reference).any(axis=1))
            results[name] |= {"windows": len(counts), "bit_exact_windows":
                              int(len(counts) - len(mismatched)),
                              "first_mismatch": int(mismatched[0]) if len(mismatched) else None,
                              "classes_match": bool((classes == reference.argmax(1)).all())}
            if len(mismatched):
                raise HarnessError(f"{folder}: host C differs from the integer reference on "
                                   f"{len(mismatched)} of {len(counts)} windows, first at "
                                   f"window {mismatched[0]}")
    model = run.load_model(student)
    net = fold_student(model, tuple(run.config()["data"]["class_names"]), framing.window)
    folder = export_float(net, run.c_dir("f32"), framing, run.derivation(student, False))
    results["f32"] = {"folder": str(folder.relative_to(run.path))}
    if test is not None:
        _, logits = run_host(build_host(folder), counts, float_logits=True)
        reference = predict_logits(model, as_device_input(test.x))
        results["f32"] |= {"windows": len(counts),
                           "max_abs_logit_error": float(np.abs(logits - reference).max()),
                           "top1_agreement": top1_agreement(logits, reference)}
    return run.update_metrics("export", time.perf_counter() - started,
                              export=results)["export"]


def make_run(recording: Recording, out: Path, options: TrainOptions, check: bool = True,
             replace: bool = False) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """train, quantize and export in one go: (training metrics, quantized, export results)."""
    metrics = train_run(recording, out, options, replace=replace)
    return metrics, quantize_run(out), export_run(out, check=check)
