"""`harness train | quantize | export` end to end on a tiny synthetic run, and its errors."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from device_sim import toolchain
from device_sim.model_sources import ModelSources
from harness.cli import demo_note, main
from models.metrics import classification_metrics
from models.quantize import counts_from_g, g_from_counts
from models.rundir import RunDirectory
from models.training import predict_logits

# `harness export` checks the C on the host: every test of the exported run needs host gcc.
needs_gcc = pytest.mark.requires("gcc")

TINY = ["--synthetic", "--synthetic-animals", "3", "--synthetic-seconds", "12",
        "--window", "32", "--hop", "16", "--epochs", "2", "--teacher-filters", "4,8,8",
        "--hidden", "8", "--perceptron", "8", "--head", "6", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--out", str(out)]) == 0
    assert main(["quantize", str(out)]) == 0
    assert main(["export", str(out)]) == 0
    return out


@needs_gcc
def test_metrics_hold_every_section_the_contract_names(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("teacher", "student_kd", "student_no_kd"):
        assert set(metrics[name]) >= {"accuracy", "macro_f1", "mcc", "confusion"}
        assert 0.0 <= metrics[name]["accuracy"] <= 1.0
        assert -1.0 <= metrics[name]["mcc"] <= 1.0
    for bits in ("16", "8"):
        assert set(metrics["quantized"][bits]) >= {"top1_agreement", "accuracy", "mcc",
                                                   "param_bytes"}
    assert metrics["quantized"]["16"]["param_bytes"] == 2 * metrics["quantized"]["8"]["param_bytes"]
    for variant in ("q16", "q8"):
        export = metrics["export"][variant]
        assert export["windows"] > 0
        assert export["bit_exact_windows"] == export["windows"]


@needs_gcc
def test_the_demo_says_a_short_synthetic_run_shows_nothing_of_distillation(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    note = " ".join(demo_note(metrics, epochs=2).split())  # as one line, unwrapped
    assert "2 epochs" in note and "synthetic" in note
    assert "`harness evaluate --data RECORDING --out DIR`" in note and "harness report" in note
    recorded = metrics | {"data": metrics["data"] | {"synthetic": False}}
    assert demo_note(recorded, epochs=2) is None


@needs_gcc
def test_run_directory_says_the_data_is_synthetic_and_held_out_by_animal(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"]["synthetic"] is True
    assert config["data"]["source"].startswith("SYNTHETIC")
    held_out = set(config["data"]["held_out_animals"])
    assert held_out and not held_out & set(config["data"]["train_animals"])
    assert set(RunDirectory(run_dir).heldout_windows().animals.tolist()) == held_out


@needs_gcc
def test_checkpoints_reload_safely_and_reproduce_the_metrics(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = RunDirectory(run_dir).heldout_windows()
    for name in ("teacher", "student_kd", "student_no_kd"):
        torch.load(run_dir / f"{name}.pt", weights_only=True)  # plain tensors only
        predicted = predict_logits(RunDirectory(run_dir).load_model(name), test.x).argmax(axis=1)
        again = classification_metrics(test.y, predicted, len(test.class_names))
        assert again["confusion"] == metrics[name]["confusion"]


@needs_gcc
def test_exported_c_folders_compile_on_their_own(run_dir, tmp_path):
    """Each variant folder, copied alone, builds with a ten-line main and classifies a window
    as its reference does: nothing outside the folder is needed."""
    run = RunDirectory(run_dir)
    window = counts_from_g(np.tile([0.0, 0.0, 1.0], (run.framing().window, 1)))  # lying still
    for variant in ("q16", "q8", "f32"):
        folder = tmp_path / variant
        shutil.copytree(run.c_dir(variant), folder)
        main_c = folder / "main.c"
        main_c.write_text(MAIN_C.replace("WINDOW_VALUES", ", ".join(map(str, window.ravel()))))
        exe = toolchain.compile_host(sorted(folder.glob("*.c")), tmp_path / f"{variant}.exe",
                                     [folder])
        printed = int(subprocess.run([str(exe)], capture_output=True, text=True, timeout=30,
                                     check=True).stdout)
        manifest = ModelSources.load(folder).manifest
        assert manifest.variant == variant and manifest.window == len(window)
        assert manifest.framing == run.framing()
        if variant == "f32":
            student = run.load_model(run.deployed_student())
            expected = predict_logits(student, g_from_counts(window[None])).argmax(axis=1)[0]
        else:
            expected = run.load_quantized(variant).run(window[None]).argmax(axis=1)[0]
        assert printed == expected, variant


MAIN_C = """#include <stdio.h>
#include "tag_model.h"

static const int16_t window[] = {WINDOW_VALUES};

int main(void)
{
    static tag_model_t model;
    tag_model_init(&model);
    printf("%d\\n", tag_model_run(&model, window));
    return 0;
}
"""


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_a_malformed_csv_is_named_with_line_and_column(tmp_path, capsys):
    table = tmp_path / "herd.csv"
    rows = ["time,x,y,z,label,animal"]
    rows += [f"{i / 10},0.1,0.2,0.9,grazing,A1" for i in range(50)]
    rows[30] = "2.9,0.1,oops,0.9,grazing,A1"
    table.write_text("\n".join(rows) + "\n")
    message = _error(capsys, ["train", "--data", str(table), "--out", str(tmp_path / "o")])
    assert "herd.csv" in message and "line 31" in message and "'y'" in message


def test_a_missing_column_is_named(tmp_path, capsys):
    table = tmp_path / "herd.csv"
    table.write_text("time,x,y,z,animal\n0,0,0,1,A1\n")
    message = _error(capsys, ["train", "--data", str(table), "--out", str(tmp_path / "o")])
    assert "label" in message and "herd.csv" in message


def test_a_recording_shorter_than_one_window_says_so(tmp_path, capsys):
    table = tmp_path / "short.csv"
    rows = ["time,x,y,z,label,animal"] + [f"{i / 50},0,0,1,grazing,A{i // 20}" for i in range(40)]
    table.write_text("\n".join(rows) + "\n")
    message = _error(capsys, ["train", "--data", str(table), "--out", str(tmp_path / "o"),
                              "--rate", "50"])
    assert "256" in message


def test_quantize_before_train_says_which_step_is_missing(tmp_path, capsys):
    message = _error(capsys, ["quantize", str(tmp_path)])
    assert "harness train" in message


@pytest.mark.parametrize("argv", [
    ["train", "--synthetic", "--out", "x", "--student", "transformer"],
    ["train", "--synthetic", "--out", "x", "--target", "smartwatch"],
    ["quantize", "x", "--bits", "12"],
])
def test_unknown_option_values_are_refused_with_the_choices(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "says"), [
    (["--realtime"], "choose one"),
    (["--backend", "serial", "--port", "/dev/null"], "physical board"),
])
def test_bulk_is_refused_in_real_time_and_on_a_board(extra, says, tmp_path, capsys):
    message = _error(capsys, ["run", str(tmp_path / "run"), "--bulk", *extra,
                              "--report", str(tmp_path / "report")])
    assert says in message and "--bulk" in message


@needs_gcc
def test_held_out_figures_are_those_of_the_held_out_windows(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = RunDirectory(run_dir).heldout_windows()
    confusion = np.array(metrics["teacher"]["confusion"])
    assert confusion.sum() == len(test) == metrics["data"]["held_out_windows"]
