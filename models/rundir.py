"""The run directory: the contract between the model half and the device half.

Every path of it, and the loader of every file, is here; no other module spells a file name of
a run directory.

    config.json            data source, classes, framing, animals, model configurations
    teacher.pt, student_kd.pt, student_no_kd.pt, [student_mlkd.pt]   state dicts
    heldout.npz            the held-out animals' recording, int16 wire counts and labels
    calibration.npz        training windows that choose the Q formats
    quantized/q16/, q8/    model.json (Q formats, ops, hash) and weights.npz (integers)
    c/q16/, q8/, f32/      the exported C99 with its manifest.json
    metrics.json           what each step measured, and how long it took
    build/<target>-<backend>-<variant>/     firmware built by `harness run`
    build/<target>-<backend>-<variant>-trace/   the layer-trace firmware of `harness trace`
    reports/<target>-<backend>-<variant>[-realtime][-bulk]/report.json
    reports/targets/<target>-<backend>-<variant>/report.json   a run of `harness targets`

Checkpoints are loaded with weights_only=True; everything else is JSON or npz of plain arrays.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from device_sim.errors import ModelSourcesError
from device_sim.model_sources import VARIANTS, ModelSources
from device_sim.names import is_identifier
from device_sim.targets import Framing
from models.errors import RunDirectoryError
from models.quantize import QuantizedModel, counts_from_g, g_from_counts, load_quantized
from models.recordings import Recording, Windows, make_windows
from models.students import build_model

FIXED_POINT_VARIANTS = tuple(v for v in VARIANTS if v != "f32")
DEPLOYED_STUDENT = "student_kd"  # the student quantized and exported unless told otherwise


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object the harness wrote; RunDirectoryError if it is missing or damaged."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise RunDirectoryError(f"{path} is missing: is {Path(path).parent} a run directory "
                                "written by `harness train`?") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDirectoryError(f"{path} is damaged (not JSON: {error}); run the step that "
                                "writes it again") from error
    if not isinstance(data, dict):
        raise RunDirectoryError(f"{path} is damaged: it holds a {type(data).__name__}, not an "
                                "object")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_recording(path: Path, rec: Recording) -> None:
    """A recording as int16 wire counts plus labels: what a device would be fed."""
    np.savez_compressed(path, counts=counts_from_g(rec.accel_g).astype(np.int16),
                        labels=rec.labels, bouts=rec.bouts,
                        animals=np.asarray(rec.animals, dtype=str),
                        class_names=np.asarray(rec.class_names, dtype=str),
                        rate_hz=np.float64(rec.rate_hz), source=np.asarray(rec.source))


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError as error:
        raise RunDirectoryError(f"{path} is missing: run `harness train` first") from error


def load_recording_npz(path: Path) -> Recording:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return Recording(
                accel_g=g_from_counts(npz["counts"]),
                labels=npz["labels"].astype(np.int64), bouts=npz["bouts"].astype(np.int64),
                animals=npz["animals"].astype(object),
                class_names=tuple(str(c) for c in npz["class_names"]),
                rate_hz=float(npz["rate_hz"]), source=str(npz["source"]))
    except FileNotFoundError as error:
        raise RunDirectoryError(f"{path} is missing: run `harness train` first") from error


def _known(variant: str, variants: tuple[str, ...]) -> str:
    if variant not in variants:
        raise RunDirectoryError(f"unknown model variant {variant!r}; choose one of "
                                f"{', '.join(variants)}")
    return variant


def _run_name(target: str, backend: str, variant: str) -> str:
    """<target>-<backend>-<variant>; each part a name the project chose, checked as such."""
    for part in (target, backend):
        if not is_identifier(part):
            raise RunDirectoryError(f"{part!r} is not a target or backend name")
    return f"{target}-{backend}-{_known(variant, VARIANTS)}"


class RunDirectory:
    """One run directory; `RunDirectory(path)` reads nothing until asked."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.json"
        self.heldout_path = self.path / "heldout.npz"
        self.calibration_path = self.path / "calibration.npz"

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # --- paths ---------------------------------------------------------------------------

    def checkpoint(self, name: str) -> Path:
        return self.path / f"{name}.pt"

    def checkpoints(self) -> list[Path]:
        return sorted(self.path.glob("*.pt"))

    def quantized_dir(self, variant: str) -> Path:
        """quantized/<variant>/, e.g. variant "q16"."""
        return self.path / "quantized" / _known(variant, FIXED_POINT_VARIANTS)

    def c_dir(self, variant: str) -> Path:
        """c/<variant>/: the exported C of "q16", "q8" or "f32"."""
        return self.path / "c" / _known(variant, VARIANTS)

    def build_dir(self, target: str, backend: str, variant: str) -> Path:
        return self.path / "build" / _run_name(target, backend, variant)

    def trace_build_dir(self, target: str, backend: str, variant: str) -> Path:
        """Where `harness trace` builds: never the folder of the normal firmware."""
        return self.path / "build" / f"{_run_name(target, backend, variant)}-trace"

    def report_dir(self, target: str, backend: str, variant: str,
                   realtime: bool = False, bulk: bool = False) -> Path:
        suffix = ("-realtime" if realtime else "") + ("-bulk" if bulk else "")
        return self.path / "reports" / f"{_run_name(target, backend, variant)}{suffix}"

    def targets_report_dir(self, target: str, backend: str, variant: str) -> Path:
        """Where `harness targets` writes a run's report: never over a `harness run` report
        of the same target, backend and variant."""
        return self.path / "reports" / "targets" / _run_name(target, backend, variant)

    # --- config and metrics --------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return read_json(self.config_path)

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.config_path, config)

    def framing(self) -> Framing:
        """The framing the run was trained for (config.json)."""
        try:
            return Framing(**self.config()["framing"])
        except (KeyError, TypeError) as error:
            raise RunDirectoryError(f"{self.config_path} has no readable 'framing' section")\
                from error

    def metrics(self) -> dict[str, Any]:
        return read_json(self.metrics_path) if self.metrics_path.exists() else {}

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics_path, metrics)

    def update_metrics(self, step: str, seconds: float, **sections: Any) -> dict[str, Any]:
        """Add a step's sections and its time (under `seconds`) to metrics.json."""
        metrics = self.metrics() | sections
        metrics["seconds"] = metrics.get("seconds", {}) | {step: round(seconds, 1)}
        self.write_metrics(metrics)
        return metrics

    def deployed_student(self) -> str:
        """The float student the quantized models were made from."""
        return self.metrics().get("quantized", {}).get("student", DEPLOYED_STUDENT)

    # --- models --------------------------------------------------------------------------

    def save_model(self, name: str, model: torch.nn.Module) -> None:
        torch.save(model.state_dict(), self.checkpoint(name))

    def load_model(self, name: str) -> torch.nn.Module:
        """A trained model, rebuilt from config.json and its state dict. Only plain tensors
        are read (weights_only): a checkpoint that holds pickled objects is refused."""
        try:
            model = build_model(self.config()["models"][name])
        except (KeyError, TypeError, ValueError) as error:
            raise RunDirectoryError(f"{self.config_path} describes no model {name!r} it can "
                                    f"build ({type(error).__name__}: {error})") from error
        path = self.checkpoint(name)
        try:
            state = torch.load(path, weights_only=True)
        except FileNotFoundError as error:
            raise RunDirectoryError(f"{path} is missing: run `harness train` first") from error
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError):
            raise RunDirectoryError(f"{path} was refused: it is not a plain state dict of "
                                    "tensors (it holds other pickled objects, or is damaged). "
                                    "For safety the harness loads nothing else; train the "
                                    "model again with `harness train`") from None
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as error:
            why = " ".join(str(error).split())[:400]
            raise RunDirectoryError(f"{path} does not fit the {name} that {self.config_path} "
                                    f"describes: {why}") from None
        return model.eval()

    def quantized_variants(self) -> list[str]:
        """The quantized models present, e.g. ["q16", "q8"]."""
        return sorted(p.parent.name for p in (self.path / "quantized").glob("q*/model.json"))

    def load_quantized(self, variant: str) -> QuantizedModel:
        """A quantized model, refused if it was made from other weights than the run's now."""
        folder = self.quantized_dir(variant)
        model = load_quantized(folder)
        self._check_fresh(folder, read_json(folder / "model.json").get("derived_from"),
                          ("quantize",))
        return model

    def model_sources(self, variant: str) -> ModelSources:
        """The exported C of `variant`, checked to be there and made from what the run holds
        now (its checkpoint and, for fixed point, its quantized model)."""
        try:
            model = ModelSources.load(self.c_dir(variant))
        except ModelSourcesError as error:
            raise RunDirectoryError(f"{self.c_dir(variant)} holds no exported model of variant "
                                    f"{variant!r}: run `harness export` on {self.path} first "
                                    f"({error})") from error
        steps = ("quantize", "export") if variant in FIXED_POINT_VARIANTS else ("export",)
        self._check_fresh(model.folder, model.manifest.derived_from, steps)
        if variant in FIXED_POINT_VARIANTS:
            quantized = read_json(self.quantized_dir(variant) / "model.json")["model_hash"]
            if quantized != model.manifest.model_hash:
                raise RunDirectoryError(f"{model.folder} holds another model than "
                                        f"{self.quantized_dir(variant)} (quantized again since):"
                                        f" run `harness export` on {self.path}")
        return model

    # --- what derived files were made from -----------------------------------------------

    def derivation(self, student: str, calibrated: bool) -> dict[str, str]:
        """The files a quantized model (calibrated) or exported C is made from, with their
        SHA-256: recorded in it, and compared when it is loaded."""
        found = {"checkpoint": self.checkpoint(student).name,
                 "sha256": _sha256(self.checkpoint(student))}
        if calibrated:
            found["calibration_sha256"] = _sha256(self.calibration_path)
        return found

    def _check_fresh(self, what: Path, recorded: dict[str, str] | None,
                     steps: tuple[str, ...]) -> None:
        again = ", then ".join(f"`harness {step}`" for step in steps) + f" on {self.path}"
        if not recorded or "checkpoint" not in recorded:
            raise RunDirectoryError(f"{what} does not say what it was made from (made by an "
                                    f"older harness?): run {again}")
        student = Path(recorded["checkpoint"]).stem
        current = self.derivation(student, "calibration_sha256" in recorded)
        if current != recorded:
            raise RunDirectoryError(f"{what} was made from another {recorded['checkpoint']} or "
                                    f"calibration than the run holds now (trained again "
                                    f"since?): run {again}")

    def replace(self) -> None:
        """Remove a previous run's files, so that nothing of it can pass for the new run's."""
        for folder in ("quantized", "c", "build", "reports", "retargeted"):
            shutil.rmtree(self.path / folder, ignore_errors=True)
        for path in (self.config_path, self.metrics_path, self.heldout_path,
                     self.calibration_path, *self.checkpoints()):
            path.unlink(missing_ok=True)

    # --- recordings ----------------------------------------------------------------------

    def save_heldout(self, recording: Recording) -> None:
        save_recording(self.heldout_path, recording)

    def heldout(self) -> Recording:
        return load_recording_npz(self.heldout_path)

    def heldout_windows(self) -> Windows:
        framing = self.framing()
        return make_windows(self.heldout(), framing.window, framing.hop)

    def save_calibration(self, windows_g: np.ndarray) -> None:
        np.savez_compressed(self.calibration_path, counts=counts_from_g(windows_g))

    def calibration_g(self) -> np.ndarray:
        try:
            with np.load(self.calibration_path, allow_pickle=False) as npz:
                return g_from_counts(npz["counts"])
        except FileNotFoundError as error:
            raise RunDirectoryError(f"{self.calibration_path} is missing: run `harness train` "
                                    "first") from error
