"""A user's own recording on the first try: `harness inspect`, the class coverage of a split,
and device runs whose sample of windows cannot pass by accident."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from device_sim.targets import Framing, load_target
from harness.agreement import format_report
from harness.baseline import Snapshot
from harness.cli import main
from harness.errors import AssessmentWarning
from harness.run import RunOptions, plan_stream, run_on_device, stratified_sample
from models.config import ModelSizes, TrainConfig, TrainOptions
from models.coverage import class_coverage, coverage_problems
from models.crossval import fold_coverage
from models.errors import CoverageWarning
from models.inspection import NOTHING_FOUND, format_inspection, inspect_recording
from models.pipeline import DataSource, train_run
from models.recordings import make_windows, split_by_animal, subset
from models.rundir import RunDirectory

EARTAG = pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
AXES = ("MPU9250_ax_body", "MPU9250_ay_body", "MPU9250_az_body")
# Each class of this layout by the animals that show it; "head nodding" comes from one.
LAYOUT = {"active mount": ("2321", "2322", "2323"), "head nodding": ("2323",),
          "standing": ("2321", "2322", "2323")}


def _own_layout(folder: Path, g_per_unit: float = 9.80665) -> Path:
    """Bouts laid out unlike db-cow-walking: label folders with spaces, the animal after the
    label in the file name, a header of other names, 20 s at 10 Hz per bout in m/s²."""
    rng = np.random.default_rng(0)
    for label, animals in LAYOUT.items():
        for animal in animals:
            path = folder / label / f"{label.replace(' ', '_')}_{animal}_20231007_73640.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            accel = (rng.normal(0.0, 0.05, (200, 3)) + np.array([0.0, 0.0, 1.0])) * g_per_unit
            rows = "".join(f"{k / 10:.1f},{x:.4f},{y:.4f},{z:.4f}\n"
                           for k, (x, y, z) in enumerate(accel))
            path.write_text(f"TIME,{','.join(AXES)},temp\n" + rows)
    return folder


OWN_OPTIONS = ["--label-from", "folder", "--bout-pattern", r"_(?P<animal>\d{2,6})[_.]",
               "--bout-time-column", "TIME", "--axes", ",".join(AXES)]


def _own_source(folder: Path) -> DataSource:
    return DataSource(path=folder, label_from="folder", bout_pattern=r"_(?P<animal>\d{2,6})[_.]",
                      bout_time_column="TIME", axes=AXES)


# --- harness inspect -------------------------------------------------------------------------

def test_inspect_first_names_the_bout_pattern_then_every_class_and_animal(tmp_path, capsys):
    folder = _own_layout(tmp_path / "own recording")
    assert main(["inspect", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "does not match --bout-pattern" in error and "--label-from folder" in error

    plot = tmp_path / "inspect.png"
    assert main(["inspect", str(folder), *OWN_OPTIONS, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "a folder of 7 bout files" in out
    assert "7 bouts, 1,400 samples at 10 Hz" in out
    assert "resampled to 62.5 Hz for target eartag" in out
    for name in LAYOUT:
        assert name in out
    for animal in ("2321", "2322", "2323"):
        assert re.search(rf"^  {animal} ", out, re.MULTILINE), out
    assert "classes recorded on one animal: head nodding (animal 2323)" in out
    assert f"gravity (median |a| of every bout near 1 g): {NOTHING_FOUND}" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_counts_every_cell_and_shows_the_split_that_train_would_make(tmp_path):
    folder = _own_layout(tmp_path / "own")
    framing = Framing.of(load_target("eartag"))
    found = inspect_recording(_own_source(folder), framing, held_out=("2323",))
    per_bout = len(make_windows(_own_source(folder).load(framing.rate_hz), framing.window,
                                framing.hop)) // 7
    for name, animals in LAYOUT.items():
        for animal in animals:
            cell = found.cells[(name, animal)]
            assert (cell.bouts, cell.windows) == (1, per_bout)
            assert cell.minutes == pytest.approx(20 / 60, rel=0.02)
    assert ("head nodding", "2321") not in found.cells
    assert found.total().windows == 7 * per_bout
    # Holding out the one animal of "head nodding" leaves the model without it.
    assert found.held_out == ("2323",)
    assert any("'head nodding' is absent from the training animals" in p
               for p in found.coverage_problems)
    assert "warning: class 'head nodding' is absent from the training" in \
        format_inspection(found)


def test_inspect_reports_bouts_that_do_not_feel_one_g(tmp_path):
    folder = _own_layout(tmp_path / "own", g_per_unit=1.0)  # g, read as m/s²
    found = inspect_recording(_own_source(folder), Framing.of(load_target("eartag")))
    assert found.gravity != NOTHING_FOUND
    assert "7 bouts" in found.gravity and "median |a| 0.10 to 0.10 g" in found.gravity
    assert "kept: --drop-implausible leaves them out" in found.gravity


# --- class coverage of a split ---------------------------------------------------------------

def _windows_of(folder: Path):
    framing = Framing.of(load_target("eartag"))
    return make_windows(_own_source(folder).load(framing.rate_hz), framing.window, framing.hop)


def test_a_stratified_split_keeps_a_one_animal_class_on_the_training_side(tmp_path):
    windows = _windows_of(_own_layout(tmp_path / "own"))
    for seed in range(6):
        train, test, held_out = split_by_animal(windows, fraction=0.34, seed=seed, stratify=True)
        assert held_out != ("2323",)
        coverage = {c.name: c for c in class_coverage(train, test)}
        assert coverage["head nodding"].train_windows > 0
        assert coverage["active mount"].held_out_windows > 0
    problems = coverage_problems(class_coverage(*split_by_animal(windows, ("2323",))[:2]))
    assert problems[0].startswith("class 'head nodding' comes from one animal (2323)")


def test_train_warns_of_a_class_it_never_sees_and_records_it(tmp_path):
    folder = _own_layout(tmp_path / "own")
    framing = Framing.of(load_target("eartag"))
    recording = _own_source(folder).load(framing.rate_hz)
    options = TrainOptions(framing, ModelSizes(hidden=8, perceptron=8, head=8,
                                               teacher_filters=(4, 4, 4)),
                           TrainConfig(epochs=1, progress=False), held_out=("2323",))
    with pytest.warns(CoverageWarning) as caught:
        train_run(recording, tmp_path / "run", options)
    said = [str(warning.message) for warning in caught]
    assert any("'head nodding' is absent from the training animals" in s for s in said)
    assert any("'head nodding' comes from one animal (2323)" in s for s in said)
    assert all("--held-out" in s for s in said)  # each names a split that does better
    coverage = RunDirectory(tmp_path / "run").config()["data"]["coverage"]
    assert any("absent from the training animals" in p for p in coverage["problems"])
    nodding = next(c for c in coverage["classes"] if c["name"] == "head nodding")
    assert nodding["train_windows"] == 0 and nodding["held_out_animals"] == ["2323"]


def test_evaluate_warns_of_classes_from_one_animal(tmp_path):
    windows = _windows_of(_own_layout(tmp_path / "own"))
    with pytest.warns(CoverageWarning, match="fold 2323 trains without it"):
        coverage = fold_coverage(windows, "own")
    assert coverage["single_animal_classes"] == {"head nodding": "2323"}


# --- a sample of windows that spans the classes ----------------------------------------------

def test_the_stratified_sample_spreads_over_classes_and_animals():
    labels = np.repeat([0, 1, 2], [900, 60, 40])  # one class holds most windows
    animals = np.array([f"A{i % 4}" for i in range(1000)], dtype=object)
    chosen = stratified_sample(labels, animals, 30, seed=3)
    assert len(set(chosen.tolist())) == 30 and np.all(np.diff(chosen) > 0)
    assert np.bincount(labels[chosen]).tolist() == [10, 10, 10]
    for label in range(3):
        assert len(set(animals[chosen][labels[chosen] == label])) == 4
    np.testing.assert_array_equal(chosen, stratified_sample(labels, animals, 30, seed=3))
    assert not np.array_equal(chosen, stratified_sample(labels, animals, 30, seed=4))
    # A class with fewer windows than its share gives them all; the others fill the rest.
    few = stratified_sample(labels, animals, 150, seed=0)
    assert np.bincount(labels[few]).tolist() == [55, 55, 40]


def test_a_stream_plan_streams_exactly_the_sampled_windows(hil_run_dir):
    recording = RunDirectory(hil_run_dir).heldout()
    profile = load_target("eartag")
    every = plan_stream(recording, profile.window, profile.hop)
    plan = plan_stream(recording, profile.window, profile.hop, max_windows=40, seed=1)
    assert len(plan.windows) == 40 and every.selection["method"] == "all"
    np.testing.assert_array_equal(plan.windows.x, every.windows.x[plan.heldout_index])
    np.testing.assert_array_equal(plan.windows.y, every.windows.y[plan.heldout_index])
    assert len(set(plan.windows.y.tolist())) >= 3
    assert plan.selection == {"method": "stratified by class and animal", "windows": 40,
                              "of": len(every.windows), "seed": 1}


@pytest.mark.requires("gcc")
@EARTAG
def test_a_40_window_run_streams_several_classes_and_reports_them(run_copy, capsys):
    assert main(["run", str(run_copy), "--backend", "native", "--max-windows", "40"]) == 0
    out = capsys.readouterr().out
    report = json.loads(Path(re.search(r"^report: (.+)$", out, re.MULTILINE)[1]).read_text())
    per_class = report["windows_per_class"]
    assert sum(per_class.values()) == 40 and sum(1 for n in per_class.values() if n) >= 3
    assert sum(report["windows_per_animal"].values()) == 40
    assert report["selection"]["method"] == "stratified by class and animal"
    assert "windows per class" in out and "accuracy and MCC" not in out


@pytest.mark.requires("gcc")
@EARTAG
def test_scores_over_one_class_are_not_assessed_and_never_pass(run_copy, tmp_path):
    heldout = RunDirectory(run_copy).heldout()
    one_class = subset(heldout, heldout.labels == heldout.labels[0])
    options = RunOptions(target="eartag", backend="native", max_windows=6,
                         report=tmp_path / "report")
    with pytest.warns(AssessmentWarning, match="accuracy and MCC: every window"):
        report = run_on_device(run_copy, options, one_class)
    assert report.not_assessed[0].startswith("accuracy and MCC")
    assert not report.scores_assessed
    table = format_report(report)
    assert re.search(r"accuracy device / float\s+not assessed", table)
    assert re.search(r"MCC device / float\s+not assessed", table)
    figures = Snapshot.of_report(report).figures
    assert figures["accuracy_device"] is None and figures["mcc_device"] is None
    # Two classes: assessed, and no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssessmentWarning)
        both = run_on_device(run_copy, options)
    assert both.scores_assessed and not any(n.startswith("accuracy") for n in both.not_assessed)


# --- retargeting from the error --------------------------------------------------------------

@pytest.mark.requires("gcc")
@EARTAG
def test_a_run_for_another_rate_says_how_to_retarget_and_retarget_does_it(run_copy, capsys):
    collar = load_target("collar")
    command = ["run", str(run_copy), "--target", "collar", "--backend", "native",
               "--max-windows", "4"]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert f"target 'collar' takes {collar.sample_rate_hz:g} Hz" in error
    assert "add --retarget" in error and "--target collar" in error
    assert main([*command, "--retarget"]) in (0, 1)  # a verdict, whichever it is
    captured = capsys.readouterr()
    assert f"retargeted to collar: {run_copy / 'retargeted' / 'collar'}" in captured.err
    report = json.loads(Path(re.search(r"^report: (.+)$", captured.out, re.MULTILINE)[1])
                        .read_text())
    assert report["target"] == "collar" and report["windows"] == 4
    assert report["recording"]["rate_hz"] == collar.sample_rate_hz
