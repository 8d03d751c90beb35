"""`harness train | quantize | export` end to end on a tiny synthetic run, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.cli import main
from models.metrics import classification_metrics
from models.pipeline import heldout_windows, load_model
from models.training import predict_logits

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


def test_run_directory_says_the_data_is_synthetic_and_held_out_by_animal(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"]["synthetic"] is True
    assert config["data"]["source"].startswith("SYNTHETIC")
    held_out = set(config["data"]["held_out_animals"])
    assert held_out and not held_out & set(config["data"]["train_animals"])
    assert set(heldout_windows(run_dir).animals.tolist()) == held_out


def test_checkpoints_reload_safely_and_reproduce_the_metrics(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = heldout_windows(run_dir)
    for name in ("teacher", "student_kd", "student_no_kd"):
        torch.load(run_dir / f"{name}.pt", weights_only=True)  # plain tensors only
        predicted = predict_logits(load_model(run_dir, name), test.x).argmax(axis=1)
        again = classification_metrics(test.y, predicted, len(test.class_names))
        assert again["confusion"] == metrics[name]["confusion"]


def test_exported_c_folders_compile_on_their_own(run_dir):
    for variant in ("q16", "q8", "f32"):
        folder = run_dir / "c" / variant
        assert (folder / "tag_model.h").is_file() and (folder / "tag_model.c").is_file()
        assert "#include" in (folder / "tag_model.c").read_text()


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


def test_held_out_figures_are_those_of_the_held_out_windows(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = heldout_windows(run_dir)
    confusion = np.array(metrics["teacher"]["confusion"])
    assert confusion.sum() == len(test) == metrics["data"]["held_out_windows"]
