"""Loading, resampling, windowing and splitting recordings (models/recordings.py)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.synthetic import synthetic_recording, write_csv
from harness.errors import (
    HarnessError,
    MissingColumnError,
    RecordingError,
    RecordingWarning,
    SampleRateError,
    TooFewSamplesError,
)
from models.pipeline import DataSource
from models.recordings import (
    G,
    Recording,
    TableColumns,
    describe_bouts,
    gravity_outliers,
    load_bouts,
    load_recording,
    load_table,
    make_windows,
    merge_classes,
    resample,
    split_by_animal,
)

CUSTOM = TableColumns(time="t_s", x="ax", y="ay", z="az", label="behaviour", animal="cow")
RENAME = {"time": "t_s", "x": "ax", "y": "ay", "z": "az", "label": "behaviour", "animal": "cow"}


def _recording(lengths: list[int], labels: list[int], animals: list[str],
               rate_hz: float = 10.0) -> Recording:
    """A recording whose bout i has lengths[i] samples, label labels[i], animal animals[i];
    sample values encode their own index so windows can be traced back."""
    n = sum(lengths)
    return Recording(
        accel_g=np.arange(3 * n, dtype=np.float32).reshape(n, 3),
        labels=np.repeat(np.array(labels, dtype=np.int64), lengths),
        class_names=("a", "b", "c"),
        animals=np.repeat(np.array(animals, dtype=object), lengths),
        bouts=np.repeat(np.arange(len(lengths), dtype=np.int64), lengths),
        rate_hz=rate_hz,
        source="test",
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def small() -> Recording:
    return synthetic_recording(animals=3, seconds_per_bout=4.0, bouts_per_behaviour=2,
                               rate_hz=25.0, seed=3)


# --- single table ----------------------------------------------------------------------------


def _assert_same(loaded: Recording, rec: Recording) -> None:
    np.testing.assert_allclose(loaded.accel_g, rec.accel_g, atol=1e-5)
    assert loaded.class_names == rec.class_names
    np.testing.assert_array_equal(loaded.labels, rec.labels)
    np.testing.assert_array_equal(loaded.animals, rec.animals)
    np.testing.assert_array_equal(loaded.bouts, rec.bouts)  # gaps and label changes recovered
    assert loaded.rate_hz == rec.rate_hz
    assert loaded.accel_g.dtype == np.float32 and loaded.labels.dtype == np.int64


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_table_round_trip_with_custom_columns(tmp_path: Path, small: Recording,
                                              suffix: str) -> None:
    write_csv(small, tmp_path / "plain.csv")
    table = pd.read_csv(tmp_path / "plain.csv", dtype={"animal": str}).rename(columns=RENAME)
    table["extra"] = 1.0  # columns the loader is not asked for are ignored
    path = tmp_path / f"rec{suffix}"
    if suffix == ".parquet":
        table.to_parquet(path)
    else:
        table.to_csv(path, index=False)

    loaded = load_table(path, CUSTOM)

    _assert_same(loaded, small)
    assert loaded.source == str(path) and not loaded.synthetic


def test_table_with_datetime_strings_infers_rate_and_splits_on_gaps(tmp_path: Path) -> None:
    stamps = [f"2024-05-15 13:33:{s:04.1f}" for s in np.arange(10.0, 11.0, 0.1)]
    stamps += [f"2024-05-15 13:34:{s:04.1f}" for s in np.arange(0.0, 0.5, 0.1)]  # gap of 49 s
    rows = "".join(f"{t},0,0,1,graze\n" for t in stamps)
    path = _write(tmp_path / "cow7.csv", "time,x,y,z,label\n" + rows)

    rec = load_table(path, TableColumns(animal=None))

    assert rec.rate_hz == 10.0
    assert rec.bouts.tolist() == [0] * 10 + [1] * 5
    assert set(rec.animals) == {"cow7"}  # animal named after the file


def test_table_without_time_column_needs_rate(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "x,y,z,label,animal\n0,0,1,a,A\n0,0,1,a,A\n0,0,1,b,A\n")
    with pytest.raises(SampleRateError, match="give it with --source-rate HZ"):
        load_table(path, TableColumns(time=None))
    rec = load_table(path, TableColumns(time=None), rate_hz=50)
    assert rec.rate_hz == 50.0 and rec.bouts.tolist() == [0, 0, 1]


def test_rate_that_contradicts_the_time_column_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "time,x,y,z,label,animal\n0,0,0,1,a,A\n0.1,0,0,1,a,A\n")
    with pytest.raises(SampleRateError, match="10 Hz"):
        load_table(path, rate_hz=50)


@pytest.mark.parametrize("units", ["m/s2", "m/s^2", "mps2"])
def test_metres_per_second_squared_become_g(tmp_path: Path, units: str) -> None:
    path = _write(tmp_path / "r.csv", f"time,x,y,z,label,animal\n"
                  f"0,{0.1 * G},{-0.2 * G},{G},a,A\n0.02,0,{2 * G},{-G},a,A\n")
    rec = load_table(path, units=units)
    np.testing.assert_allclose(rec.accel_g, [[0.1, -0.2, 1.0], [0.0, 2.0, -1.0]], rtol=1e-6)


def test_counts_with_scale(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "time,x,y,z,label,animal\n0,8192,-4096,16384,a,A\n"
                  "0.02,0,0,-16384,a,A\n")
    rec = load_table(path, units="counts", scale=1 / 16384)
    np.testing.assert_allclose(rec.accel_g, [[0.5, -0.25, 1.0], [0.0, 0.0, -1.0]])
    with pytest.raises(RecordingError, match="scale"):
        load_table(path, units="counts")
    with pytest.raises(RecordingError, match="units"):
        load_table(path, units="furlongs")


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 30), data=st.data())
def test_malformed_cell_names_file_line_and_column(tmp_path_factory: pytest.TempPathFactory,
                                                   rows: int, data: st.DataObject) -> None:
    bad_row = data.draw(st.integers(0, rows - 1))
    column = data.draw(st.sampled_from(["t_s", "ax", "ay", "az", "behaviour", "cow"]))
    text = data.draw(st.sampled_from(["", "abc", "1.2.3", "inf"]))
    if column in ("behaviour", "cow"):
        text = ""  # any text is a valid label or animal id; only an empty one is not
    frame = pd.DataFrame({"t_s": np.arange(rows) / 10, "ax": 0.0, "ay": 0.0, "az": 1.0,
                          "behaviour": "graze", "cow": "C1"}).astype(str)
    frame.loc[bad_row, column] = text
    path = tmp_path_factory.mktemp("bad") / "bad_cell.csv"
    frame.to_csv(path, index=False)

    with pytest.raises(RecordingError) as caught:
        load_table(path, CUSTOM)

    line = bad_row + 2  # the header is line 1
    assert (caught.value.line, caught.value.column) == (line, column)
    assert f"bad_cell.csv, line {line}, column {column!r}" in str(caught.value)


def test_first_bad_cell_in_file_order_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "time,x,y,z,label,animal\n0,0,0,1,a,A\n0.1,0,0,,a,A\n"
                  "0.2,0,0,1,a,A\n0.3,oops,0,1,a,A\n")
    with pytest.raises(RecordingError, match=r"line 3, column 'z': empty cell"):
        load_table(path)
    path.write_text("time,x,y,z,label,animal\n0,0,0,1,a,A\n0.1,0,x1,2,a,A\n")
    with pytest.raises(RecordingError, match=r"line 3, column 'y': cannot read 'x1' as a number"):
        load_table(path)


def test_blank_line_in_the_middle_is_reported_trailing_ones_are_not(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "time,x,y,z,label,animal\n0,0,0,1,a,A\n\n0.2,0,0,1,a,A\n")
    with pytest.raises(RecordingError, match=r"line 3, column 'time'"):
        load_table(path)
    path.write_text("time,x,y,z,label,animal\n0,0,0,1,a,A\n0.1,0,0,1,a,A\n\n\n")
    assert len(load_table(path)) == 2


def test_bad_date_time_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "time,x,y,z,label,animal\n2024-05-15 13:33:17.0,0,0,1,a,A\n"
                  "2024-05-15 13:33:17.1,0,0,1,a,A\n2024-05-15 13:3x:17.2,0,0,1,a,A\n")
    with pytest.raises(RecordingError, match=r"line 4, column 'time': cannot read '2024"):
        load_table(path)


def test_bad_cell_in_parquet_names_the_row(tmp_path: Path) -> None:
    frame = pd.DataFrame({"time": [0.0, 0.1, 0.2], "x": [0.0, np.nan, 0.0], "y": 0.0, "z": 1.0,
                          "label": "a", "animal": "A"})
    frame.to_parquet(tmp_path / "r.parquet")
    with pytest.raises(RecordingError, match=r"r.parquet, column 'x': row 2: empty cell"):
        load_table(tmp_path / "r.parquet")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_missing_column_names_it_the_file_and_the_columns_present(tmp_path: Path,
                                                                 suffix: str) -> None:
    frame = pd.DataFrame({"time": [0.0, 0.1], "x": 0.0, "y": 0.0, "acc_z": 1.0, "label": "a",
                          "animal": "A"})
    path = tmp_path / f"no_z{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)

    with pytest.raises(MissingColumnError) as caught:
        load_table(path)

    message = str(caught.value)
    assert caught.value.column == "z" and f"no_z{suffix}" in message
    assert "no column 'z' (set by --z-column)" in message and "'label'" in message
    assert "the closest in the header: 'acc_z'; try --z-column 'acc_z'" in message


def test_a_table_of_other_names_is_told_every_missing_column_at_once(tmp_path: Path) -> None:
    path = tmp_path / "herd.csv"
    pd.DataFrame({"t": [0.0, 0.1], "ax": 0.0, "ay": 0.0, "az": 1.0, "behaviour": "eat",
                  "cow": "c1"}).to_csv(path, index=False)
    with pytest.raises(MissingColumnError) as caught:
        load_table(path)
    message = str(caught.value)
    for column, option in (("time", "--time-column"), ("x", "--x-column"),
                           ("label", "--label-column"), ("animal", "--animal-column")):
        assert f"no column {column!r} (set by {option})" in message
    assert "; try --x-column 'ax' --y-column 'ay' --z-column 'az'. " in message
    assert caught.value.column == "time"  # the first of them


def test_empty_and_header_only_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"empty\.csv: the file is empty"):
        load_table(_write(tmp_path / "empty.csv", ""))
    with pytest.raises(RecordingError, match=r"header\.csv: the file has a header but no samples"):
        load_table(_write(tmp_path / "header.csv", "time,x,y,z,label,animal\n"))


def test_unknown_file_type_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="unknown file type"):
        load_table(_write(tmp_path / "r.txt", "time,x,y,z,label,animal\n"))
    with pytest.raises(RecordingError, match="no such file or folder"):
        load_recording(tmp_path / "absent.csv")


# --- folder of bouts -------------------------------------------------------------------------


def _bout_file(path: Path, seconds: list[float], ax: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    start = pd.Timestamp("2024-05-15 13:33:17")
    pd.DataFrame({
        "Time": [(start + pd.Timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-5]
                 for s in seconds],
        "BNO055_AX": 5.0,  # a column the loader does not read
        "MPU9250_AX": ax, "MPU9250_AY": 0.0, "MPU9250_AZ": G,
    }).to_csv(path, index=False)


@pytest.fixture
def bout_folder(tmp_path: Path) -> Path:
    steps = [i / 10 for i in range(20)]
    _bout_file(tmp_path / "Grazing" / "1_Grazing_1217_20240515_133317.csv", steps, ax=G)
    _bout_file(tmp_path / "Grazing" / "2_Grazing_4821_20240515_133400.csv", steps[:8])
    _bout_file(tmp_path / "Others" / "3_Standing_1217_20240515_140000.csv",
               steps[:5] + [s + 30 for s in steps[:5]])  # a 30 s hole in the file
    (tmp_path / "README.txt").write_text("not a recording")
    return tmp_path


def test_bout_folder_label_from_file(bout_folder: Path) -> None:
    rec = load_bouts(bout_folder)

    assert rec.class_names == ("Grazing", "Standing")
    assert rec.rate_hz == 10.0 and len(rec) == 20 + 8 + 10
    assert rec.animals.tolist() == ["1217"] * 20 + ["4821"] * 8 + ["1217"] * 10
    assert [rec.class_names[i] for i in rec.labels[[0, 20, 28]]] == ["Grazing"] * 2 + ["Standing"]
    # one bout per file, and the file with a hole is two
    assert rec.bouts.tolist() == [0] * 20 + [1] * 8 + [2] * 5 + [3] * 5
    np.testing.assert_allclose(rec.accel_g[0], [1.0, 0.0, 1.0])  # m/s^2 -> g
    assert rec.source == str(bout_folder)


def test_bout_folder_label_from_folder(bout_folder: Path) -> None:
    rec = load_bouts(bout_folder, label_from="folder")
    assert rec.class_names == ("Grazing", "Others")
    assert rec.labels.tolist() == [0] * 28 + [1] * 10


def test_bout_folder_with_custom_pattern(tmp_path: Path) -> None:
    _bout_file(tmp_path / "cowA-walk.csv", [0.0, 0.1, 0.2])
    _bout_file(tmp_path / "cowB-rest.csv", [0.0, 0.1])
    rec = load_bouts(tmp_path, pattern=r"^cow(?P<animal>\w+)-(?P<label>\w+)\.csv$")
    assert rec.animals.tolist() == ["A"] * 3 + ["B"] * 2
    assert rec.class_names == ("rest", "walk")


def test_bout_file_not_matching_the_pattern_is_named(bout_folder: Path) -> None:
    _bout_file(bout_folder / "Walking" / "walk-1217.csv", [0.0, 0.1])
    with pytest.raises(RecordingError) as caught:
        load_bouts(bout_folder)
    assert "walk-1217.csv" in str(caught.value) and "does not match --bout-pattern" in str(
        caught.value)
    assert r"(?P<animal>[^_]+)" in str(caught.value)


def test_bout_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no CSV files"):
        load_bouts(tmp_path)
    with pytest.raises(RecordingError, match="no such folder"):
        load_bouts(tmp_path / "absent")
    with pytest.raises(RecordingError, match="lacks the named group"):
        load_bouts(tmp_path, pattern=r"(?P<label>\w+)")
    _bout_file(tmp_path / "1_Grazing_C1_x.csv", [0.0, 0.1])
    with pytest.raises(MissingColumnError, match="MPU9250_GX"):
        load_bouts(tmp_path, axes=("MPU9250_AX", "MPU9250_AY", "MPU9250_GX"))


def test_load_recording_dispatches_and_filters_options(bout_folder: Path, tmp_path: Path,
                                                       small: Recording) -> None:
    folder = load_recording(bout_folder, label_from="folder", columns=TableColumns(x="nope"))
    assert folder.class_names == ("Grazing", "Others")
    write_csv(small, tmp_path / "table.csv")
    table = load_recording(tmp_path / "table.csv", time_column="ignored", units="g")
    np.testing.assert_array_equal(table.bouts, small.bouts)
    with pytest.raises(TypeError, match="unitz"):
        load_recording(tmp_path / "table.csv", unitz="g")


# --- resampling ------------------------------------------------------------------------------


def _sine_recording(rate_hz: float, seconds: float, hz: float, amplitude: float) -> Recording:
    """Two bouts of `seconds` each, both a sine on x from phase 0 (the grid restarts per bout)."""
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    bout = np.column_stack([amplitude * np.sin(2 * np.pi * hz * t), np.zeros_like(t),
                            np.ones_like(t)])
    rec = _recording([len(t), len(t)], [0, 1], ["A", "A"], rate_hz)
    return replace(rec, accel_g=np.r_[bout, bout].astype(np.float32), source="sine")


@pytest.mark.parametrize(("old", "new", "tolerance"), [(62.5, 10.0, 4e-3), (10.0, 62.5, 0.06),
                                                      (50.0, 62.5, 3e-3)])
def test_resampling_a_sine_keeps_frequency_and_amplitude(old: float, new: float,
                                                         tolerance: float) -> None:
    hz, amplitude = 1.5, 0.5
    rec = _sine_recording(old, 10.0, hz, amplitude)

    out = resample(rec, new)

    assert out.rate_hz == new
    first, second = out.bouts == 0, out.bouts == 1
    samples = round(10.0 * old)
    assert first.sum() == int(np.floor((samples - 1) / old * new + 1e-9)) + 1
    t = np.arange(first.sum()) / new
    np.testing.assert_allclose(out.accel_g[first, 0], amplitude * np.sin(2 * np.pi * hz * t),
                               atol=tolerance)
    np.testing.assert_array_equal(out.accel_g[second, 0], out.accel_g[first, 0])
    np.testing.assert_allclose(out.accel_g[:, 2], 1.0)
    spectrum = np.abs(np.fft.rfft(out.accel_g[first, 0]))
    peak = np.fft.rfftfreq(first.sum(), 1 / new)[spectrum.argmax()]
    assert abs(peak - hz) <= new / first.sum()  # within one frequency bin
    assert out.labels[first].tolist() == [0] * first.sum() and set(out.labels[second]) == {1}
    assert out.source.startswith("sine")


def test_resample_edge_cases() -> None:
    rec = _recording([1, 5, 1, 4], [0, 1, 2, 0], ["A", "A", "B", "B"])
    assert resample(rec, 10.0) is rec
    out = resample(rec, 20.0)
    assert out.bouts.tolist() == [0] * 9 + [1] * 7  # 1-sample bouts dropped, ids renumbered
    assert out.animals.tolist() == ["A"] * 9 + ["B"] * 7
    assert out.labels.tolist() == [1] * 9 + [0] * 7
    for rate in (0.0, -5.0, float("nan")):
        with pytest.raises(SampleRateError):
            resample(rec, rate)


def test_resampled_synthetic_recording_stays_marked_synthetic(small: Recording) -> None:
    assert resample(small, 10.0).synthetic


# --- windows, classes, splits ----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(bouts=st.lists(st.tuples(st.integers(1, 40), st.integers(0, 2), st.sampled_from("PQR")),
                      min_size=1, max_size=12),
       length=st.integers(1, 16), hop=st.integers(1, 8))
def test_windows_never_straddle_bouts_or_animals(bouts: list[tuple[int, int, str]], length: int,
                                                 hop: int) -> None:
    lengths = [b[0] for b in bouts]
    rec = _recording(lengths, [b[1] for b in bouts], [b[2] for b in bouts])
    expected = sum((n - length) // hop + 1 for n in lengths if n >= length)
    if expected == 0:
        with pytest.raises(TooFewSamplesError):
            make_windows(rec, length, hop)
        return

    windows = make_windows(rec, length, hop)

    assert len(windows) == expected and windows.x.shape == (expected, length, 3)
    for i, start in enumerate(windows.starts):
        span = slice(start, start + length)
        assert len(set(rec.bouts[span])) == 1 and len(set(rec.animals[span])) == 1
        assert len(set(rec.labels[span])) == 1
        np.testing.assert_array_equal(windows.x[i], rec.accel_g[span])
        assert (windows.y[i], windows.animals[i], windows.bouts[i]) == (
            rec.labels[start], rec.animals[start], rec.bouts[start])
    assert np.all(np.diff(windows.starts) > 0)
    first_of_bout = np.r_[True, np.diff(windows.bouts) != 0]
    assert np.all(np.diff(windows.starts)[~first_of_bout[1:]] == hop)


def test_too_few_samples_gives_the_numbers() -> None:
    rec = _recording([30, 45, 12], [0, 1, 0], ["A", "A", "B"], rate_hz=62.5)
    with pytest.raises(TooFewSamplesError) as caught:
        make_windows(rec, 256, 64)
    message = str(caught.value)
    assert "window of 256 samples" in message and "has 45 samples" in message
    assert "87 samples in all" in message


def test_windows_subset_by_mask_and_indices(small: Recording) -> None:
    windows = make_windows(small, 32, 16)
    mask = windows.y == 1
    by_mask = windows.subset(mask)
    assert len(by_mask) == mask.sum() and set(by_mask.y) == {1}
    picked = windows.subset([5, 2])
    np.testing.assert_array_equal(picked.x, windows.x[[5, 2]])
    assert picked.starts.tolist() == windows.starts[[5, 2]].tolist()
    assert (picked.length, picked.hop, picked.class_names) == (32, 16, windows.class_names)


def test_merge_classes() -> None:
    rec = _recording([3, 2, 4], [0, 1, 2], ["A", "A", "A"])  # classes a, b, c
    merged = merge_classes(rec, keep=["c", "a"], other="rest")
    assert merged.class_names == ("a", "c", "rest")
    assert [merged.class_names[i] for i in merged.labels] == ["a"] * 3 + ["rest"] * 2 + ["c"] * 4
    np.testing.assert_array_equal(merged.bouts, rec.bouts)
    assert merge_classes(rec, keep=["a", "b", "c"]).class_names == ("a", "b", "c")
    with pytest.raises(HarnessError, match="'d'"):
        merge_classes(rec, keep=["a", "d"])


def _eight_animals() -> Recording:
    return _recording([20] * 16, [0, 1] * 8, [f"C{i // 2}" for i in range(16)])


def test_split_by_animal_is_disjoint_and_deterministic() -> None:
    windows = make_windows(_eight_animals(), 10, 5)
    train, test, held = split_by_animal(windows, seed=4)

    assert len(held) == 2  # round(0.25 * 8)
    assert set(test.animals) == set(held) and not set(train.animals) & set(held)
    assert len(train) + len(test) == len(windows)
    assert sorted(np.r_[train.starts, test.starts].tolist()) == sorted(windows.starts.tolist())
    assert split_by_animal(windows, seed=4)[2] == held
    assert len({split_by_animal(windows, seed=s)[2] for s in range(10)}) > 1
    assert len(split_by_animal(windows, fraction=0.01)[2]) == 1  # at least one
    assert len(split_by_animal(windows, fraction=0.99)[2]) == 7  # leaves one to train on


def test_split_by_animal_with_named_animals() -> None:
    windows = make_windows(_eight_animals(), 10, 5)
    train, test, held = split_by_animal(windows, held_out=["C3", "C1"])
    assert "C1" not in set(train.animals)
    assert held == ("C1", "C3") and set(test.animals) == {"C1", "C3"}
    assert split_by_animal(windows, held_out="C5")[2] == ("C5",)
    with pytest.raises(HarnessError, match=r"unknown animal id\(s\) \['C9'\].*'C0'"):
        split_by_animal(windows, held_out=["C1", "C9"])
    with pytest.raises(HarnessError, match="leave at least one"):
        split_by_animal(windows, held_out=[f"C{i}" for i in range(8)])
    with pytest.raises(HarnessError, match="at least 2 animals"):
        split_by_animal(windows.subset(windows.animals == "C0"))


# --- bouts that do not feel gravity ---------------------------------------------------------

def _gravity(magnitudes: list[float], per_bout: int = 20) -> Recording:
    """One bout per magnitude: the sensor at rest along z, at that many g, animal A or B."""
    n = len(magnitudes)
    accel = np.zeros((n * per_bout, 3), dtype=np.float32)
    accel[:, 2] = np.repeat(magnitudes, per_bout)
    return Recording(accel_g=accel, labels=np.repeat(np.arange(n) % 2, per_bout),
                     class_names=("rest", "walk"),
                     animals=np.repeat(np.array(["A", "B"] * n, dtype=object)[:n], per_bout),
                     bouts=np.repeat(np.arange(n), per_bout), rate_hz=10.0, source="test")


def test_bouts_far_from_one_g_are_found_and_named():
    rec = _gravity([1.0, 7.7, 0.98, -1.02, 0.2, 1.4])
    outliers = gravity_outliers(rec)
    assert outliers == {1: pytest.approx(7.7), 4: pytest.approx(0.2)}
    assert describe_bouts(rec, outliers) == (
        "2 bouts (animal A: rest 1; animal B: walk 1), median |a| 0.20 to 7.70 g")
    assert gravity_outliers(rec, tolerance_g=0.1).keys() == {1, 4, 5}


def test_a_source_warns_of_implausible_bouts_or_drops_them(tmp_path):
    rec = _gravity([1.0, 7.7, 1.0, 1.0])
    path = tmp_path / "table.csv"
    write_csv(rec, path)
    with pytest.warns(RecordingWarning, match=r"1 bout \(animal B: walk 1\).*--drop-impl"):
        kept = DataSource(path=path).load(10.0)
    assert len(kept) == len(rec)
    dropped = DataSource(path=path, drop_implausible=True).load(10.0)
    assert len(dropped) == len(rec) - 20
    assert np.allclose(np.linalg.norm(dropped.accel_g, axis=1), 1.0)
    assert list(np.unique(dropped.bouts)) == [0, 1, 2]
    assert dropped.source.endswith("without 1 bout (animal B: walk 1), median |a| 7.70 to 7.70 g")


# --- the public dataset ----------------------------------------------------------------------


@pytest.mark.dataset
def test_db_cow_walking_loads(db_cow_walking: Path) -> None:
    rec = load_recording(db_cow_walking)

    assert len(set(rec.animals)) == 10
    assert {"Grazing", "Resting", "Walking"} <= set(rec.class_names)
    assert rec.rate_hz == 10.0
    assert 0.9 < float(np.median(np.linalg.norm(rec.accel_g, axis=1))) < 1.1
    assert rec.bouts.max() + 1 >= 439  # at least one bout per file
    assert not rec.synthetic
    # Some of cow 1319's bouts read about 7.7 g at rest on the MPU9250 (the BNO055 in the same
    # files reads 1 g): the check must find them, and only animal 1319's.
    outliers = gravity_outliers(rec)
    assert len(outliers) >= 10 and all(m > 5.0 for m in outliers.values())
    assert "animal 1319:" in describe_bouts(rec, outliers)
    assert describe_bouts(rec, outliers).count("animal ") == 1


def _own_layout(folder: Path) -> Path:
    """Bouts laid out unlike db-cow-walking: label folders with spaces, the animal after the
    label in the file name, other header names."""
    for label in ("active mount", "head nodding"):
        for animal in ("2321", "2322"):
            path = folder / label / f"{label.replace(' ', '_')}_{animal}_20231007_73640.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = "".join(f"{t / 10:.1f},0.1,0.2,9.8\n" for t in range(40))
            path.write_text("TIME,MPU9250_ax_body,MPU9250_ay_body,MPU9250_az_body\n" + rows)
    return folder


def test_each_bout_folder_error_names_the_option_and_a_value_that_fixes_it(tmp_path: Path):
    """A new user's recording, read by following each error's advice in turn."""
    folder = _own_layout(tmp_path / "own")
    with pytest.raises(RecordingError) as caught:
        load_bouts(folder)
    advice = str(caught.value)
    assert "does not match --bout-pattern" in advice and "--label-from folder" in advice
    pattern = re.search(r"--bout-pattern '([^']+)'$", advice)[1]
    with pytest.raises(MissingColumnError) as caught:
        load_bouts(folder, pattern=pattern, label_from="folder")
    advice = str(caught.value)  # every missing column at once, with what reads it
    assert "no column 'Time' (set by --bout-time-column)" in advice
    assert "no column 'MPU9250_AX' (set by --axes)" in advice
    tries = re.search(r"; try --bout-time-column '(\w+)' --axes (\S+)\. ", advice)
    assert tries[1] == "TIME"
    axes = tries[2].split(",")
    assert axes == ["MPU9250_ax_body", "MPU9250_ay_body", "MPU9250_az_body"]
    rec = load_bouts(folder, pattern=pattern, label_from="folder", time_column="TIME",
                     axes=tuple(axes))
    assert rec.class_names == ("active mount", "head nodding")
    assert sorted(set(rec.animals.tolist())) == ["2321", "2322"]


def test_a_pattern_without_its_groups_and_a_missing_rate_name_their_options(tmp_path: Path):
    folder = _own_layout(tmp_path / "own")
    with pytest.raises(RecordingError, match=r"--bout-pattern .* needs \(\?P<animal>"):
        load_bouts(folder, pattern=r"_(?P<label>\d+)_", label_from="file")
    with pytest.raises(SampleRateError, match="give it with --source-rate HZ"):
        load_bouts(folder, pattern=r"_(?P<animal>\d{2,6})[_.]", label_from="folder",
                   time_column=None, axes=("MPU9250_ax_body", "MPU9250_ay_body",
                                           "MPU9250_az_body"))
