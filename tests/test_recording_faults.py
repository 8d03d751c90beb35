"""Faults in a recording: what a damaged sensor or a drifting clock leaves is warned about,
with where it is and what it does, and nothing of it can crash the firmware."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from harness.run import RunOptions, run_on_device
from models.errors import RecordingWarning
from models.pipeline import DataSource
from models.quantize import WIRE_FULL_SCALE_G
from models.recordings import TableColumns, load_table, signal_faults
from models.rundir import RunDirectory

EARTAG = pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")


@pytest.fixture(scope="module")
def clean():
    recording = DataSource(synthetic_animals=2, synthetic_seconds=20.0,
                           synthetic_bouts=1).load(62.5)
    assert signal_faults(recording, WIRE_FULL_SCALE_G) == []
    return recording


def damaged(recording, change):
    accel = recording.accel_g.copy()
    change(accel)
    return dataclasses.replace(recording, accel_g=accel)


def saturate(accel):
    accel[1000:1010] = [9.0, -12.0, 8.5]


def drop_out(accel):
    accel[2000:2050] = 0.0


def stick(accel):
    accel[3000:3300, 1] = -0.25


@pytest.mark.parametrize(("change", "expected"), [
    (saturate, ["10 samples", "full scale", "clipped", "animal A01, bout 0"]),
    (drop_out, ["1 runs of samples read 0 g on every axis (0.8 s", "dropouts"]),
    (stick, ["axis y holds one value", "-0.25 g for 4.8 s", "stuck or disconnected"]),
])
def test_a_damaged_signal_is_found_and_located(clean, change, expected):
    (fault,) = signal_faults(damaged(clean, change), WIRE_FULL_SCALE_G)
    assert all(part in fault for part in expected), fault


def _table(path, seconds: np.ndarray) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"time": seconds, "x": rng.normal(0, 0.1, len(seconds)),
                          "y": rng.normal(0, 0.1, len(seconds)), "z": 1.0,
                          "label": "graze", "animal": "A1"})
    frame.to_csv(path, index=False)
    return frame


def test_a_gap_in_time_is_said_and_splits_the_bout(tmp_path):
    seconds = np.arange(1000) / 50.0
    seconds[600:] += 3.0  # three seconds without samples
    _table(tmp_path / "gap.csv", seconds)
    with pytest.warns(RecordingWarning, match=r"1 gaps in the time column \(3\.0 s without "
                                              r"samples.*before sample 600.*bouts are split"):
        recording = load_table(tmp_path / "gap.csv", TableColumns())
    assert len(np.unique(recording.bouts)) == 2


def test_a_drifting_clock_is_said_with_its_effect(tmp_path):
    steady = np.arange(2000) / 50.0
    fast = steady[-1] + 0.02 + np.arange(2000) / 52.0  # another animal's clock: 4 % fast
    frame = pd.concat([_table(tmp_path / "a.csv", steady).assign(animal="A1"),
                       _table(tmp_path / "b.csv", fast).assign(animal="B2")])
    frame.to_csv(tmp_path / "drift.csv", index=False)
    with pytest.warns(RecordingWarning, match=r"clock of 1 part.*animal B2's.*52 Hz \(\+4\.0 "
                                              r"%\).*windows span \-3\.8 % more time"):
        load_table(tmp_path / "drift.csv", TableColumns(), rate_hz=50.0)


def test_loading_warns_about_each_fault_of_the_sensor(tmp_path, clean):
    frame = pd.DataFrame({"time": np.arange(len(clean)) / 62.5 + clean.bouts * 5.0,
                          "x": clean.accel_g[:, 0], "y": clean.accel_g[:, 1],
                          "z": clean.accel_g[:, 2],
                          "label": np.asarray(clean.class_names)[clean.labels],
                          "animal": clean.animals})
    frame.loc[500:520, ["x", "y", "z"]] = 0.0
    frame.to_csv(tmp_path / "herd.csv", index=False)
    with pytest.warns(RecordingWarning, match="dropouts"):
        DataSource(path=tmp_path / "herd.csv").load(62.5)


@EARTAG
@pytest.mark.requires("gcc")
def test_nothing_of_it_crashes_the_firmware(hil_run_dir, tmp_path):
    """Clipped, zero and stuck samples streamed through the device: every window bit-exact."""
    heldout = RunDirectory(hil_run_dir).heldout()
    bout = np.flatnonzero(heldout.bouts == heldout.bouts[0])
    worst = heldout.accel_g.copy()
    worst[bout[:300]] = [16.0, -16.0, 8.0]  # beyond full scale: clipped to the int16 rails
    worst[bout[300:500]] = 0.0
    worst[bout[500:800], 2] = 1.0
    report = run_on_device(hil_run_dir, RunOptions(
        target="eartag", backend="native", max_windows=8, report=tmp_path / "report"),
        recording=dataclasses.replace(heldout, accel_g=worst))
    assert report.windows >= 8 and report.missed_windows == 0
    assert report.int_exact_fraction == 1.0
