"""Damaged inputs are refused before anything streams: one line, exit status 2, no traceback.

Each case damages one thing of a good run directory or recording, as a bad copy, a disk error
or somebody else's tool would, and runs the command a user would run next.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from harness.cli import main
from models.rundir import RunDirectory
from models.students import build_model

EARTAG = pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")


def one_line_error(capsys, argv: list[str]) -> str:
    """The command fails as a user error: status 2, one line on stderr, no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def damage_json(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def run_native(run_dir) -> list[str]:
    return ["run", str(run_dir), "--backend", "native", "--max-windows", "2"]


# --- run directories ---------------------------------------------------------------------------

@EARTAG
def test_garbage_metrics(run_copy, capsys):
    (run_copy / "metrics.json").write_bytes(b"\x00\xffnot json")
    assert "metrics.json is damaged (not JSON" in one_line_error(capsys, run_native(run_copy))


def _first_dense(model_json: dict) -> dict:
    return next(op for op in model_json["ops"] if op["op"] == "dense")


@EARTAG
@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(word_bits=99), "word length 99 is none of (8, 16)"),
    (lambda d: _first_dense(d).update(w_frac=40), "fractional bits must be 0..31"),
    (lambda d: _first_dense(d).update(out_frac=-3), "fractional bits must be 0..31"),
    (lambda d: d.pop("ops"), "missing 'ops'"),
    (lambda d: d.update(kind="transformer"), "unknown model kind 'transformer'"),
    (lambda d: d.update(class_names=[]), "0 class names; 1 to 32"),
], ids=["word_bits", "frac_40", "frac_negative", "missing_key", "kind", "no_classes"])
def test_a_damaged_quantized_model(run_copy, capsys, change, message):
    damage_json(run_copy / "quantized" / "q16" / "model.json", change)
    assert message in one_line_error(capsys, run_native(run_copy))


def damage_weights(run_dir, change) -> None:
    """Rewrite quantized/q16/weights.npz with `change(arrays, name of a weight matrix)`."""
    path = run_dir / "quantized" / "q16" / "weights.npz"
    with np.load(path) as npz:
        arrays = dict(npz)
    change(arrays, next(key for key in arrays if key.endswith(".w")))
    np.savez(path, **arrays)


@EARTAG
@pytest.mark.parametrize(("change", "message"), [
    (lambda a, w: a.update({w: a[w][:, :-1]}), "shapes do not fit the operations"),
    (lambda a, w: a.update({w: a[w] * 0 + 40_000}), "outside 16-bit words"),
    (lambda a, w: a.update({w: a[w].astype(np.float32)}), "holds float32, not integers"),
], ids=["one_column_short", "outside_the_word", "floats"])
def test_damaged_weights(run_copy, capsys, change, message):
    damage_weights(run_copy, change)
    assert message in one_line_error(capsys, run_native(run_copy))


@EARTAG
def test_a_state_dict_of_the_wrong_shape(run_copy, capsys):
    config = RunDirectory(run_copy).config()["models"]["student_kd"]
    torch.save(build_model(config | {"hidden": config["hidden"] * 2}).state_dict(),
               run_copy / "student_kd.pt")
    err = one_line_error(capsys, ["quantize", str(run_copy)])
    assert "student_kd.pt does not fit the student_kd" in err and "size mismatch" in err


@EARTAG
def test_a_pickled_checkpoint_is_refused_for_safety(run_copy, capsys):
    config = RunDirectory(run_copy).config()["models"]["student_kd"]
    torch.save(build_model(config), run_copy / "student_kd.pt")  # the whole object, pickled
    err = one_line_error(capsys, ["quantize", str(run_copy)])
    assert "refused" in err and "For safety the harness loads nothing else" in err
    assert "weights_only=False" not in err


# --- recordings and options --------------------------------------------------------------------

def _table(tmp_path, rows: int = 400) -> pd.DataFrame:
    t = np.arange(rows) / 50.0
    return pd.DataFrame({"time": t, "x": 0.0, "y": 0.0, "z": 1.0,
                         "label": np.where(t < rows / 100, "rest", "walk"), "animal": "A1"})


def train(path, *extra: str) -> list[str]:
    return ["train", "--data", str(path), "--out", str(path.parent / "run"), "--quiet", *extra]


def test_a_parquet_list_column(tmp_path, capsys):
    frame = _table(tmp_path)
    frame["x"] = [[0.1, 0.2]] * len(frame)
    path = tmp_path / "herd.parquet"
    frame.to_parquet(path)
    err = one_line_error(capsys, train(path))
    assert "column 'x'" in err and "holds a ndarray of values; one number per cell" in err


def test_repeated_time_stamps_are_named_not_cut_into_bouts(tmp_path, capsys):
    frame = _table(tmp_path)
    frame.loc[100:, "time"] = frame["time"][100:] - 1 / 50.0  # row 100 repeats row 99's time
    path = tmp_path / "herd.csv"
    frame.to_csv(path, index=False)
    err = one_line_error(capsys, train(path))
    assert "line 102, column 'time'" in err and "repeats the previous sample's" in err
    assert "--time-column '' and --source-rate" in err


def test_an_infinite_value_is_quoted_as_a_number(tmp_path, capsys):
    frame = _table(tmp_path)
    frame.loc[5, "y"] = np.inf
    path = tmp_path / "herd.parquet"
    frame.to_parquet(path)
    err = one_line_error(capsys, train(path))
    assert "row 6: inf is not a finite number" in err and "np.float64" not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--synthetic", "--out", "x", "--window", "-3"], "--window: -3 is not at least 1"),
    (["train", "--synthetic", "--out", "x", "--hop", "100000"], "--hop 100000 is longer than"),
    (["train", "--synthetic", "--out", "x", "--rate", "0"], "--rate: 0 is not above 0"),
    (["train", "--synthetic", "--out", "x", "--alpha", "1.5"], "--alpha: 1.5 is not at least 0 "
                                                               "and at most 1"),
    (["run", "x", "--max-windows", "-5"], "--max-windows: -5 is not at least 1"),
    (["run", "x", "--timeout", "nan"], "--timeout: nan is not above 0"),
])
def test_option_values_out_of_range(argv, message, capsys):
    try:
        status = main(argv)
    except SystemExit as exit_info:  # argparse refuses the value itself
        status = exit_info.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err
