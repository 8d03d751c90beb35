"""Recordings: load them, resample them, cut them into windows and split them by animal.

A recording is tri-axial accelerometry in g with a label and an animal id per sample, cut into
bouts: contiguous runs of one label and one animal with no gap in time. Windows are cut inside
bouts only, so a window never mixes two behaviours or two animals, and evaluation splits go by
animal, never by random window.

Two layouts are read: a single table (CSV, CSV.gz or Parquet) with configurable column names,
and a folder of CSV files, one per labelled bout, whose label and animal are in the file name
(as in the public db-cow-walking dataset).
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pandas.api.types import is_datetime64_any_dtype, is_numeric_dtype

from device_sim.errors import HarnessError, SampleRateError
from models.errors import (
    MissingColumnError,
    RecordingError,
    RecordingWarning,
    TooFewSamplesError,
)

G = 9.80665  # standard gravity, m/s^2 per g

_PER_G = {"g": 1.0, "m/s2": 1.0 / G, "m/s^2": 1.0 / G, "mps2": 1.0 / G}
_GAP_STEPS = 1.5  # a time step longer than this many sample periods starts a new bout
_DRIFT_TOLERANCE = 0.02  # a part of the recording whose clock differs more is reported
_CSV_SUFFIXES = (".csv", ".csv.gz")


@dataclass(frozen=True)
class TableColumns:
    """Column names of a single-table recording."""

    time: str | None = "time"  # seconds or date-time strings; None: no time, rate_hz is needed
    x: str = "x"
    y: str = "y"
    z: str = "z"
    label: str = "label"
    animal: str | None = "animal"  # None: one animal, named after the file


# eq=False: the fields are arrays, so value equality would be ambiguous and hashing would fail.
@dataclass(frozen=True, eq=False)
class Recording:
    """Tri-axial accelerometry in g, a label and an animal per sample, cut into bouts."""

    accel_g: np.ndarray  # (N, 3) float32, in g
    labels: np.ndarray  # (N,) int64 index into class_names
    class_names: tuple[str, ...]  # sorted alphabetically
    animals: np.ndarray  # (N,) object array of str animal ids
    bouts: np.ndarray  # (N,) int64 bout ids 0..B-1 in order
    rate_hz: float
    source: str  # where it came from; synthetic data starts with "SYNTHETIC"

    def __post_init__(self) -> None:
        n = len(self.accel_g)
        if self.accel_g.shape != (n, 3):
            raise ValueError(f"accel_g must have shape (N, 3), not {self.accel_g.shape}")
        for name in ("labels", "animals", "bouts"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), not {getattr(self, name).shape}")

    @property
    def synthetic(self) -> bool:
        return self.source.startswith("SYNTHETIC")

    def __len__(self) -> int:
        return len(self.accel_g)


@dataclass(frozen=True, eq=False)
class Windows:
    """Fixed-length windows cut from a Recording, each inside one bout."""

    x: np.ndarray  # (N, length, 3) float32, g
    y: np.ndarray  # (N,) int64
    animals: np.ndarray  # (N,) object str
    bouts: np.ndarray  # (N,) int64
    starts: np.ndarray  # (N,) int64 index of the window's first sample in the Recording
    class_names: tuple[str, ...]
    rate_hz: float
    length: int
    hop: int

    def __post_init__(self) -> None:
        n = len(self.x)
        if self.x.shape != (n, self.length, 3):
            raise ValueError(f"x must have shape ({n}, {self.length}, 3), not {self.x.shape}")
        for name in ("y", "animals", "bouts", "starts"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), not {getattr(self, name).shape}")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, mask_or_indices: np.ndarray | Sequence[int] | Sequence[bool]) -> Windows:
        """The windows picked by a boolean mask or by indices, in that order."""
        index = np.asarray(mask_or_indices)
        if index.dtype == bool and index.shape != (len(self),):
            raise ValueError(f"a mask must have shape ({len(self)},), not {index.shape}")
        if index.dtype != bool:
            index = index.astype(np.int64)
        return replace(self, x=self.x[index], y=self.y[index], animals=self.animals[index],
                       bouts=self.bouts[index], starts=self.starts[index])


# --- loading ---------------------------------------------------------------------------------


def load_table(path: str | Path, columns: TableColumns = TableColumns(), units: str = "g",
               rate_hz: float | None = None, scale: float | None = None) -> Recording:
    """Read a single-table recording from CSV (.csv, .csv.gz) or Parquet (.parquet).

    units is "g", "m/s2" (also "m/s^2", "mps2") or "counts", which needs scale in g per count.
    Without rate_hz the rate is the median time step; a step longer than 1.5 periods, or a step
    back in time, starts a new bout, as does a change of label or animal.
    """
    path = Path(path)
    per_unit = _g_per_unit(path, units, scale)
    axes = [columns.x, columns.y, columns.z]
    text = [columns.label] if columns.animal is None else [columns.label, columns.animal]
    # The option of `harness train` that names each column: --x-column for TableColumns.x.
    options = {getattr(columns, f.name): f"--{f.name}-column" for f in fields(TableColumns)
               if getattr(columns, f.name)}
    data = _read_columns(path, axes, text, columns.time, options)
    n = len(data[columns.label])
    if columns.animal is None:
        animals = np.full(n, _stem(path), dtype=object)
    else:
        animals = data[columns.animal]
    new_animal = np.r_[True, animals[1:] != animals[:-1]]
    if columns.time is not None:
        _refuse_repeated_times(path, data[columns.time], new_animal, columns.time,
                               csv=path.name.lower().endswith(_CSV_SUFFIXES))
    return _assemble(str(path), np.column_stack([data[a] for a in axes]), data[columns.label],
                     animals, data.get(columns.time), new_animal, per_unit, rate_hz)


def load_bouts(folder: str | Path,
               pattern: str = r"^(?P<index>\d+)_(?P<label>[^_]+)_(?P<animal>[^_]+)_",
               axes: tuple[str, str, str] = ("MPU9250_AX", "MPU9250_AY", "MPU9250_AZ"),
               time_column: str | None = "Time", label_from: str = "file", units: str = "m/s2",
               rate_hz: float | None = None) -> Recording:
    """Read a folder of CSV files, one per labelled bout, searched recursively.

    The animal id is the `animal` group of pattern (matched against the file name); the label
    is its `label` group (label_from="file") or the name of the file's folder ("folder"). A file
    is one bout, split further where its time column has a gap. Other files (README, ...) are
    ignored; a CSV file whose name does not match pattern is an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RecordingError(folder, "no such folder")
    per_unit = _g_per_unit(folder, units, None)
    if label_from not in ("file", "folder"):
        raise RecordingError(folder, f"label_from must be 'file' or 'folder', not {label_from!r}")
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise RecordingError(
            folder, f"pattern {pattern!r} is not a regular expression: {error}") from None
    needed = {"animal"} if label_from == "folder" else {"animal", "label"}
    if missing := sorted(needed - set(regex.groupindex)):
        groups = " and ".join(f"(?P<{group}>...)" for group in sorted(needed))
        raise RecordingError(folder, f"--bout-pattern {pattern!r} lacks the named group(s) "
                                     f"{missing}: with --label-from {label_from} it needs "
                                     f"{groups}")

    files = bout_files(folder)
    if not files:
        raise RecordingError(folder, "no CSV files (*.csv, *.csv.gz) in this folder or below")
    accel, seconds, labels, animals, sizes = [], [], [], [], []
    for file in files:
        match = regex.search(file.name)
        if match is None:
            raise RecordingError(file, _unmatched_name(file, pattern, label_from))
        data = _read_columns(file, list(axes), [], time_column,
                             dict.fromkeys(axes, "--axes") | {time_column: "--bout-time-column"})
        accel.append(np.column_stack([data[a] for a in axes]))
        if time_column is not None:
            seconds.append(data[time_column])
            first = np.zeros(len(seconds[-1]), dtype=bool)
            first[:1] = True
            _refuse_repeated_times(file, seconds[-1], first, time_column, csv=True,
                                   option="--bout-time-column")
        labels.append(match["label"] if label_from == "file" else file.parent.name)
        animals.append(match["animal"])
        sizes.append(len(accel[-1]))

    new_file = np.zeros(sum(sizes), dtype=bool)
    new_file[np.cumsum(sizes) - sizes] = True
    return _assemble(str(folder), np.concatenate(accel),
                     np.repeat(np.array(labels, dtype=object), sizes),
                     np.repeat(np.array(animals, dtype=object), sizes),
                     np.concatenate(seconds) if seconds else None, new_file, per_unit, rate_hz)


def bout_files(folder: Path) -> list[Path]:
    """The CSV files of a bout folder, searched recursively, sorted."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.name.lower().endswith(_CSV_SUFFIXES) and p.is_file())


def load_recording(path: str | Path, **options: object) -> Recording:
    """A folder goes to load_bouts, a file to load_table, each given the options it takes."""
    path = Path(path)
    if path.is_dir():
        loader = load_bouts
    elif path.is_file():
        loader = load_table
    else:
        raise RecordingError(path, "no such file or folder")
    known = set(inspect.signature(load_table).parameters) | set(
        inspect.signature(load_bouts).parameters)
    if unknown := sorted(set(options) - known):
        raise TypeError(f"load_recording got unknown option(s) {unknown}")
    takes = inspect.signature(loader).parameters
    return loader(path, **{k: v for k, v in options.items() if k in takes})


def _refuse_repeated_times(path: Path, seconds: np.ndarray, new_segment: np.ndarray,
                           column: str, csv: bool, option: str = "--time-column") -> None:
    """A time stamp that repeats the previous one of the same animal is two samples at one
    instant: duplicated rows, or a clock too coarse for the rate. Each would start a bout of
    its own, so it is an error, located, instead of thousands of tiny bouts."""
    repeats = np.flatnonzero((np.diff(seconds) == 0) & ~new_segment[1:]) + 1
    if len(repeats) == 0:
        return
    row = int(repeats[0])
    where = {"line": row + 2} if csv else {}
    raise RecordingError(
        path, f"{'' if csv else f'row {row + 1}: '}the time {seconds[row]:g} s repeats the "
        f"previous sample's ({len(repeats)} repeated time stamps in all): remove the duplicated "
        f"rows, or read the file without its time column ({option} '' and "
        f"--source-rate HZ)", column=column, **where)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".csv", ".parquet"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _unmatched_name(file: Path, pattern: str, label_from: str) -> str:
    """Why a bout file's name was refused, with a --bout-pattern that would read it: the label
    as the words before the first number of 2 to 6 digits, that number as the animal."""
    message = f"the file name does not match --bout-pattern '{pattern}'"
    found = re.match(r"^(?P<label>.*?)[_ -](?P<animal>\d{2,6})(?=[_ .-])", file.name)
    if found is None:
        return message + ("; give a regular expression with (?P<animal>...) and, unless "
                          "--label-from folder, (?P<label>...)")
    label = found["label"]
    folder_label = re.sub(r"[\s_-]+", "_", file.parent.name.lower()) == \
        re.sub(r"[\s_-]+", "_", label.lower())
    if folder_label or label_from == "folder":
        hint = r"--label-from folder --bout-pattern '_(?P<animal>\d{2,6})[_.]'"
        why = f"the label from the folder {file.parent.name!r}"
    else:
        hint = r"--bout-pattern '^(?P<label>.+?)_(?P<animal>\d{2,6})[_.]'"
        why = f"label {label!r}"
    return (f"{message}; for names like this one ({why}, animal {found['animal']!r}) try "
            f"{hint}")


def _read_columns(path: Path, numeric: list[str], text: list[str],
                  time: str | None, options: dict[str, str] | None = None
                  ) -> dict[str, np.ndarray]:
    """The named columns of a CSV or Parquet file, checked cell by cell.

    numeric columns come back as float64, text columns as object arrays of str, the time column
    as float64 seconds (from the first time stamp when the column holds date-times). The first
    empty or unreadable cell, in file order, raises RecordingError with its line and column.
    """
    wanted = list(dict.fromkeys([*([time] if time else []), *numeric, *text]))
    is_csv = path.name.lower().endswith(_CSV_SUFFIXES)
    if is_csv:
        frame = _read_csv(path, wanted, text, options or {})
    elif path.suffix.lower() == ".parquet":
        frame = _read_parquet(path, wanted, options or {})
    else:
        raise RecordingError(path, "unknown file type; expected .csv, .csv.gz or .parquet")
    if len(frame) == 0:
        raise RecordingError(path, "the file has a header but no samples")

    converted, bad = {}, {}
    for name in wanted:
        column = frame[name]
        if name == time:
            converted[name] = _as_seconds(column)
            bad[name] = ~np.isfinite(converted[name])
        elif name in text:
            bad[name] = column.isna().to_numpy()
            converted[name] = column.astype(str).to_numpy(dtype=object)
        else:
            converted[name] = _as_numbers(column)
            bad[name] = ~np.isfinite(converted[name])
    firsts = {name: int(mask.argmax()) for name, mask in bad.items() if mask.any()}
    if firsts:
        row = min(firsts.values())
        name = next(c for c in frame.columns if firsts.get(c) == row)  # leftmost in the file
        kind = "time" if name == time else "text" if name in text else "number"
        problem = _describe(frame[name].iloc[row], kind)
        if is_csv:  # header is line 1, so row 0 is line 2 (blank lines are kept as rows)
            raise RecordingError(path, problem, line=row + 2, column=name)
        raise RecordingError(path, f"row {row + 1}: {problem}", column=name)
    return converted


def _read_csv(path: Path, wanted: list[str], text: list[str],
              options: dict[str, str]) -> pd.DataFrame:
    try:
        # Only an empty cell is missing: "NA" or "None" may be a real label or animal id, and
        # in a number column the message is clearer when it quotes the text.
        frame = pd.read_csv(path, usecols=wanted, dtype={c: str for c in text}, engine="c",
                            keep_default_na=False, na_values=[""], skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise RecordingError(path, "the file is empty: no header, no samples") from None
    except pd.errors.ParserError as error:
        raise RecordingError(path, f"not a well-formed CSV file: {error}") from None
    except (UnicodeDecodeError, EOFError, OSError) as error:
        raise RecordingError(path, f"cannot read the file: {error}") from None
    except ValueError as error:  # usecols names a column that the header lacks
        _check_header(path, list(pd.read_csv(path, nrows=0).columns), wanted, options)
        raise RecordingError(path, str(error)) from None
    # Editors often leave blank lines at the end; they are not samples.
    blank = frame.isna().all(axis=1).to_numpy()
    trailing = len(blank) - np.flatnonzero(~blank)[-1] - 1 if (~blank).any() else len(blank)
    return frame.iloc[: len(frame) - trailing]


def _read_parquet(path: Path, wanted: list[str], options: dict[str, str]) -> pd.DataFrame:
    try:
        _check_header(path, pq.read_schema(path).names, wanted, options)
        return pd.read_parquet(path, columns=wanted)
    except (OSError, ValueError) as error:  # pyarrow's errors derive from these
        raise RecordingError(path, f"cannot read the Parquet file: {error}") from None


def _check_header(path: Path, present: list[str], wanted: list[str],
                  options: dict[str, str]) -> None:
    """Every wanted column is in the header; else one error that names every missing column,
    the option that names it and the header's closest names (case-insensitive), and the
    options that would read the file."""
    missing = [name for name in wanted if name not in present]
    if not missing:
        return
    found, tries = [], []
    for name in missing:
        option, close = options.get(name), _close_names(name, present)
        found.append(f"no column {name!r}" + (f" (set by {option})" if option else "")
                     + (f"; the closest in the header: {', '.join(map(repr, close))}"
                        if close else ""))
        if option == "--axes" and close and not any(t.startswith("--axes") for t in tries):
            axes = [next(iter(_close_names(a, present)), a) for a in wanted
                    if options.get(a) == "--axes"]
            tries.append(f"--axes {','.join(axes)}")
        elif option and option != "--axes" and close:
            tries.append(f"{option} {close[0]!r}")
    message = "; ".join(found) + (f"; try {' '.join(tries)}" if tries else "")
    raise MissingColumnError(path, f"{message}. The columns are {present}", column=missing[0])


def _close_names(name: str, present: list[str]) -> list[str]:
    """Header names like `name`: the same but for case, else those that contain it, else
    difflib's close ones."""
    by_lower = {p.lower(): p for p in present}
    if name.lower() in by_lower:
        return [by_lower[name.lower()]]
    if containing := [p for lower, p in by_lower.items() if name.lower() in lower]:
        return containing  # MPU9250_AY in MPU9250_ay_body
    return [by_lower[c] for c in difflib.get_close_matches(name.lower(), by_lower, n=3,
                                                           cutoff=0.6)]


def _as_numbers(column: pd.Series) -> np.ndarray:
    """Floats, NaN where a cell is not a number (a list in a Parquet cell included)."""
    if not is_numeric_dtype(column):
        scalar = column.map(lambda cell: not isinstance(cell, list | tuple | dict | np.ndarray))
        column = pd.to_numeric(column.where(scalar, None), errors="coerce")
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _as_seconds(column: pd.Series) -> np.ndarray:
    """Seconds from a numeric column, or from the first time stamp of a date-time column."""
    if is_numeric_dtype(column):
        return _as_numbers(column)
    if not is_datetime64_any_dtype(column):
        filled = column.dropna()
        if len(filled) and _is_number(filled.iloc[0]):  # seconds, with some bad cell further on
            return _as_numbers(column)
        column = pd.to_datetime(column, format="ISO8601", errors="coerce")
    return (column - column.min()).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)


def _is_number(text: object) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def _quoted(raw: object) -> str:
    """A cell as a person reads it: numbers as numbers (inf, not np.float64(inf)), text quoted."""
    if isinstance(raw, int | float | np.number) and not isinstance(raw, bool):
        return f"{float(raw):g}"
    return repr(str(raw))


def _describe(raw: object, kind: str) -> str:
    if not isinstance(raw, list | tuple | np.ndarray) and (pd.isna(raw)
                                                           or str(raw).strip() == ""):
        return f"empty cell; expected {'a label or id' if kind == 'text' else 'a ' + kind}"
    if isinstance(raw, list | tuple | dict | np.ndarray):
        return f"the cell holds a {type(raw).__name__} of values; one number per cell is needed"
    if _is_number(raw) and not np.isfinite(float(str(raw))):
        return f"{_quoted(raw)} is not a finite number"
    if kind == "time":
        return f"cannot read {_quoted(raw)} as a time in seconds or as an ISO 8601 date-time"
    return f"cannot read {_quoted(raw)} as a number"


def _assemble(source: str, raw: np.ndarray, labels: np.ndarray, animals: np.ndarray,
              seconds: np.ndarray | None, new_segment: np.ndarray, per_unit: float,
              rate_hz: float | None) -> Recording:
    """Build a Recording; new_segment marks samples not continuous in time with the previous
    one whatever the clock says (first sample, a new animal, a new file)."""
    rate = _rate(source, seconds, new_segment, rate_hz)
    starts = new_segment.copy()
    starts[1:] |= labels[1:] != labels[:-1]
    if seconds is not None:
        step = np.diff(seconds)
        gaps = (step > _GAP_STEPS / rate) & ~new_segment[1:]
        starts[1:] |= (step <= 0) | gaps
        _warn_about_time(source, seconds, new_segment, animals, gaps, rate)
    codes, names = pd.factorize(labels, sort=True)
    return Recording(
        accel_g=(raw * per_unit).astype(np.float32),
        labels=codes.astype(np.int64),
        class_names=tuple(str(n) for n in names),
        animals=animals.astype(object),
        bouts=np.cumsum(starts, dtype=np.int64) - 1,
        rate_hz=rate,
        source=source,
    )


def _warn_about_time(source: str, seconds: np.ndarray, new_segment: np.ndarray,
                     animals: np.ndarray, gaps: np.ndarray, rate: float) -> None:
    """Dropouts in time (gaps, where bouts are split) and a clock that drifts from the rate:
    kept, and said, with their effect."""
    if gaps.any():
        lost = np.diff(seconds)[gaps] - 1.0 / rate
        first = int(np.flatnonzero(gaps)[0]) + 1
        warnings.warn(f"{source}: {int(gaps.sum())} gaps in the time column ({lost.sum():.1f} s "
                      f"without samples, the longest {lost.max():.2f} s; the first before "
                      f"sample {first}, animal {animals[first]}, t = {seconds[first]:g} s): bouts "
                      "are split there, and no window spans a gap", RecordingWarning,
                      stacklevel=4)
    drifting = []  # (own rate, first sample) of every segment whose clock is off
    segments = np.flatnonzero(new_segment)
    for begin, end in zip(segments, [*segments[1:], len(seconds)], strict=True):
        steps = np.diff(seconds[begin:end])
        steps = steps[(steps > 0) & (steps <= _GAP_STEPS / rate)]
        if len(steps) >= 10 and abs(1.0 / float(np.median(steps)) / rate - 1) > _DRIFT_TOLERANCE:
            drifting.append((1.0 / float(np.median(steps)), int(begin)))
    if drifting:
        own, begin = max(drifting, key=lambda d: abs(d[0] / rate - 1))
        off = 100 * (own / rate - 1)
        warnings.warn(f"{source}: the clock of {len(drifting)} part(s) of the recording is off "
                      f"its {rate:g} Hz by more than {100 * _DRIFT_TOLERANCE:g} %; the worst, "
                      f"animal {animals[begin]}'s from t = {seconds[begin]:g} s, runs at "
                      f"{own:.4g} Hz ({off:+.1f} %). Their samples are taken at {rate:g} Hz, "
                      f"so their windows span {100 * (rate / own - 1):+.1f} % more time",
                      RecordingWarning, stacklevel=4)


def _g_per_unit(source: Path, units: str, scale: float | None) -> float:
    if units == "counts":
        if scale is None or not scale > 0:
            raise RecordingError(source, f"units='counts' needs scale > 0 in g per count, "
                                 f"got scale={scale}")
        return float(scale)
    if scale is not None:
        raise RecordingError(source, f"scale applies to units='counts' only, not {units!r}")
    if units not in _PER_G:
        raise RecordingError(source, f"unknown units {units!r}; use one of "
                             f"{[*_PER_G, 'counts']}")
    return _PER_G[units]


def _rate(source: str, seconds: np.ndarray | None, new_segment: np.ndarray,
          rate_hz: float | None) -> float:
    """The given rate, checked against the time column, or the rate the time column implies."""
    if rate_hz is not None and not (np.isfinite(rate_hz) and rate_hz > 0):
        raise SampleRateError(f"{source}: the sample rate must be a positive number of Hz, "
                              f"not {rate_hz}")
    if seconds is None:
        if rate_hz is None:
            raise SampleRateError(f"{source}: no time column to take the sample rate from: "
                                  "give it with --source-rate HZ")
        return float(rate_hz)
    steps = np.diff(seconds)[~new_segment[1:]]
    steps = steps[steps > 0]
    if len(steps) == 0:
        if rate_hz is None:
            raise SampleRateError(f"{source}: no two samples in time order to infer the sample "
                                  "rate from; give it with --source-rate HZ")
        return float(rate_hz)
    # Time stamps are printed with a few digits, so keep six significant ones (62.5, not 62.4999).
    implied = float(f"{1.0 / np.median(steps):.6g}")
    if rate_hz is None:
        return implied
    if abs(implied - rate_hz) > 0.1 * rate_hz:
        raise SampleRateError(f"{source}: rate_hz={rate_hz} but the time column steps by "
                              f"{np.median(steps):g} s ({implied:g} Hz)")
    return float(rate_hz)


# --- transforming ----------------------------------------------------------------------------


def _bout_spans(bouts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First sample and length of every bout."""
    starts = np.flatnonzero(np.r_[True, bouts[1:] != bouts[:-1]]) if len(bouts) else bouts[:0]
    return starts, np.diff(np.r_[starts, len(bouts)])


def resample(rec: Recording, rate_hz: float) -> Recording:
    """Linear interpolation, per bout, onto a grid at rate_hz starting at the bout's first sample.

    There is no anti-alias filter: when going down in rate, content above the new Nyquist
    frequency folds back. Bouts of fewer than 2 samples have no slope and are dropped.
    """
    if not (np.isfinite(rate_hz) and rate_hz > 0):
        raise SampleRateError(f"cannot resample to {rate_hz} Hz: the rate must be positive")
    if rate_hz == rec.rate_hz:
        return rec
    starts, lengths = _bout_spans(rec.bouts)
    starts, lengths = starts[lengths >= 2], lengths[lengths >= 2]
    ratio = rec.rate_hz / rate_hz  # old samples per new sample
    counts = np.floor((lengths - 1) / ratio + 1e-6).astype(np.int64) + 1  # 1e-6: float slack
    first = np.repeat(starts, counts)
    position = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)) * ratio
    left = np.minimum(np.floor(position).astype(np.int64), np.repeat(lengths - 2, counts))
    frac = np.minimum(position - left, 1.0)[:, None]
    accel = rec.accel_g.astype(np.float64)
    new = accel[first + left] * (1.0 - frac) + accel[first + left + 1] * frac
    return Recording(
        accel_g=new.astype(np.float32),
        labels=rec.labels[first],
        class_names=rec.class_names,
        animals=rec.animals[first],
        bouts=np.repeat(np.arange(len(counts), dtype=np.int64), counts),
        rate_hz=float(rate_hz),
        source=f"{rec.source} (resampled from {rec.rate_hz:g} to {rate_hz:g} Hz)",
    )


def subset(rec: Recording, mask: np.ndarray) -> Recording:
    """The samples where mask holds, bouts renumbered 0..B-1."""
    _, bouts = np.unique(rec.bouts[mask], return_inverse=True)
    return replace(rec, accel_g=rec.accel_g[mask], labels=rec.labels[mask],
                   animals=rec.animals[mask], bouts=bouts.astype(np.int64))


def gravity_outliers(rec: Recording, tolerance_g: float = 0.5) -> dict[int, float]:
    """{bout id: median |a| in g} of the bouts whose median magnitude is more than
    `tolerance_g` from 1 g. A worn accelerometer always feels gravity, so such a bout is almost
    surely in other units or from a sensor set to another full-scale range."""
    magnitude = np.linalg.norm(rec.accel_g, axis=1)
    order = np.argsort(rec.bouts, kind="stable")
    ids, starts = np.unique(rec.bouts[order], return_index=True)
    medians = [float(np.median(part)) for part in np.split(magnitude[order], starts[1:])]
    return {int(b): m for b, m in zip(ids, medians, strict=True) if abs(m - 1.0) > tolerance_g}


def _where(rec: Recording, index: int) -> str:
    """Sample `index` as a person finds it: animal, bout and label, seconds into the bout."""
    start = int(np.flatnonzero(rec.bouts == rec.bouts[index])[0])
    return (f"animal {rec.animals[index]}, bout {rec.bouts[index]} "
            f"({rec.class_names[rec.labels[index]]}), {(index - start) / rec.rate_hz:.2f} s in")


def _runs(values: np.ndarray, bouts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first index, length) of every run of equal consecutive values within a bout."""
    change = np.r_[True, (values[1:] != values[:-1]) | (bouts[1:] != bouts[:-1])]
    starts = np.flatnonzero(change)
    return starts, np.diff(np.r_[starts, len(values)])


def signal_faults(rec: Recording, full_scale_g: float, stuck_seconds: float = 2.0,
                  dropout_samples: int = 3) -> list[str]:
    """What a damaged sensor leaves in a recording, each as a sentence that says where and what
    it does: samples at the full scale the wire carries (clipped there), runs that read 0 g on
    every axis (dropouts: a worn sensor always feels gravity), and an axis that holds one value
    for `stuck_seconds` or longer (stuck or disconnected). Empty when none is found."""
    found: list[str] = []
    if len(rec) == 0:
        return found
    clipped = np.flatnonzero((np.abs(rec.accel_g) >= full_scale_g).any(axis=1))
    if len(clipped):
        found.append(f"{len(clipped)} samples ({100 * len(clipped) / len(rec):.2g} %) reach the "
                     f"±{full_scale_g:.3g} g full scale of the wire format and are clipped to it, "
                     f"on the device and in training; the first at {_where(rec, clipped[0])}")
    zero = (rec.accel_g == 0.0).all(axis=1)
    starts, lengths = _runs(zero, rec.bouts)
    dropouts = [(s, n) for s, n in zip(starts, lengths, strict=True)
                if zero[s] and n >= dropout_samples]
    if dropouts:
        seconds = sum(n for _, n in dropouts) / rec.rate_hz
        found.append(f"{len(dropouts)} runs of samples read 0 g on every axis ({seconds:.1f} s in "
                     f"all), which a worn sensor cannot: dropouts, the first at "
                     f"{_where(rec, dropouts[0][0])}")
    stuck_samples = max(2, round(stuck_seconds * rec.rate_hz))
    for axis, name in enumerate("xyz"):
        starts, lengths = _runs(rec.accel_g[:, axis], rec.bouts)
        runs = [(s, n) for s, n in zip(starts, lengths, strict=True)
                if n >= stuck_samples and not zero[s]]
        if runs:
            first, n = runs[0]
            found.append(f"axis {name} holds one value for {stuck_seconds:g} s or longer in "
                         f"{len(runs)} places ({sum(k for _, k in runs) / rec.rate_hz:.1f} s in "
                         f"all): a stuck or disconnected axis; the first, "
                         f"{rec.accel_g[first, axis]:.3g} g for {n / rec.rate_hz:.1f} s, at "
                         f"{_where(rec, first)}")
    return found


def describe_bouts(rec: Recording, bouts: dict[int, float]) -> str:
    """'17 bouts (animal 1319: Grazing 6, Walking 8, Others 3), median |a| 7.64 to 7.70 g'."""
    first = {int(b): i for i, b in reversed(list(enumerate(rec.bouts)))}
    by_animal: dict[str, dict[str, int]] = {}
    for bout in bouts:
        i = first[bout]
        label = rec.class_names[rec.labels[i]]
        counts = by_animal.setdefault(str(rec.animals[i]), {})
        counts[label] = counts.get(label, 0) + 1
    animals = "; ".join(f"animal {a}: " + ", ".join(f"{k} {n}" for k, n in sorted(c.items()))
                        for a, c in sorted(by_animal.items()))
    values = sorted(bouts.values())
    return (f"{len(bouts)} bout{'s' * (len(bouts) != 1)} ({animals}), median |a| "
            f"{values[0]:.2f} to {values[-1]:.2f} g")


def merge_classes(rec: Recording, keep: Sequence[str], other: str = "other") -> Recording:
    """Labels not in keep become `other` (a class only if some sample falls into it).

    Bouts stay as they were, so two merged neighbours remain two bouts.
    """
    keep = [keep] if isinstance(keep, str) else list(keep)
    if unknown := sorted(set(keep) - set(rec.class_names)):
        raise HarnessError(f"{rec.source}: cannot keep class(es) {unknown}: the recording has "
                           f"{list(rec.class_names)}")
    names = np.array([n if n in keep else other for n in rec.class_names], dtype=object)
    new_names, codes = np.unique(names[rec.labels], return_inverse=True)
    return replace(rec, labels=codes.astype(np.int64),
                   class_names=tuple(str(n) for n in new_names))


def make_windows(rec: Recording, length: int, hop: int) -> Windows:
    """Every window of `length` samples, `hop` apart, that fits inside one bout."""
    if length < 1 or hop < 1:
        raise ValueError(f"length and hop must be at least 1, got {length} and {hop}")
    bout_starts, lengths = _bout_spans(rec.bouts)
    counts = np.where(lengths >= length, (lengths - length) // hop + 1, 0)
    if counts.sum() == 0:
        longest = int(lengths.max()) if len(lengths) else 0
        raise TooFewSamplesError(
            f"{rec.source}: no bout is long enough for one window of {length} samples "
            f"({length / rec.rate_hz:.2f} s at {rec.rate_hz:g} Hz); the longest of its "
            f"{len(lengths)} bouts has {longest} samples ({longest / rec.rate_hz:.2f} s), "
            f"{len(rec)} samples in all")
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    starts = (np.repeat(bout_starts, counts) + offsets * hop).astype(np.int64)
    views = np.lib.stride_tricks.sliding_window_view(rec.accel_g, length, axis=0)
    return Windows(
        x=np.ascontiguousarray(views[starts].transpose(0, 2, 1)),
        y=rec.labels[starts],
        animals=rec.animals[starts],
        bouts=rec.bouts[starts],
        starts=starts,
        class_names=rec.class_names,
        rate_hz=rec.rate_hz,
        length=length,
        hop=hop,
    )


def split_by_animal(windows: Windows, held_out: Sequence[str] | None = None,
                    fraction: float = 0.25, seed: int = 0,
                    stratify: bool = False) -> tuple[Windows, Windows, tuple[str, ...]]:
    """(train, test, held-out animals): the test windows are those of the held-out animals.

    Without held_out, round(fraction * animals) of them (at least 1, at most all but one) are
    drawn with numpy's default_rng(seed); with `stratify`, the draw that puts the most classes
    on both sides is taken (covering_held_out).
    """
    present = tuple(sorted({str(a) for a in windows.animals}))
    if len(present) < 2:
        raise HarnessError(f"a split by animal needs at least 2 animals; the windows hold "
                           f"{list(present)}")
    if held_out is None:
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
        count = min(max(round(fraction * len(present)), 1), len(present) - 1)
        if stratify:
            chosen = covering_held_out(windows, count, seed)
        else:
            drawn = np.random.default_rng(seed).choice(len(present), size=count, replace=False)
            chosen = tuple(sorted(present[i] for i in drawn))
    else:
        held_out = [held_out] if isinstance(held_out, str) else held_out
        chosen = tuple(sorted({str(a) for a in held_out}))
        if unknown := [a for a in chosen if a not in present]:
            raise HarnessError(f"unknown animal id(s) {unknown} in held_out; the windows hold "
                               f"animals {list(present)}")
        if not chosen or len(chosen) == len(present):
            raise HarnessError(f"held_out must name at least one animal and leave at least one "
                               f"to train on; it names {list(chosen)} of {list(present)}")
    test = np.isin(windows.animals.astype(str), chosen)
    return windows.subset(~test), windows.subset(test), chosen


_COVERING_DRAWS = 2000  # held-out sets tried when there are more ways than this to choose


def covering_held_out(windows: Windows, count: int, seed: int) -> tuple[str, ...]:
    """`count` animals to hold out so that as many classes as possible have windows on both
    sides, then as many as possible on the training side (a class of one animal is learnt
    rather than only tested); among equally good sets, the first in a seeded random order.
    Every set is tried when there are at most 2000, else 2000 seeded draws."""
    animals = sorted({str(a) for a in windows.animals})
    has = np.zeros((len(animals), len(windows.class_names)), dtype=bool)  # [animal, class]
    index = {a: i for i, a in enumerate(animals)}
    has[[index[str(a)] for a in windows.animals], windows.y] = True
    rng = np.random.default_rng(seed)
    if math.comb(len(animals), count) <= _COVERING_DRAWS:
        candidates = list(itertools.combinations(range(len(animals)), count))
        candidates = [candidates[i] for i in rng.permutation(len(candidates))]
    else:
        candidates = [tuple(rng.choice(len(animals), size=count, replace=False))
                      for _ in range(_COVERING_DRAWS)]

    def covered(held: tuple[int, ...]) -> tuple[int, int]:
        out = np.zeros(len(animals), dtype=bool)
        out[list(held)] = True
        trained = has[~out].any(axis=0)
        return int((has[out].any(axis=0) & trained).sum()), int(trained.sum())

    best = max(candidates, key=covered)  # max keeps the first of equals: the seeded order
    return tuple(sorted(animals[i] for i in best))
