"""Errors of the model half: recordings, run directories and quantization."""

from __future__ import annotations

from device_sim.errors import HarnessError


class RecordingError(HarnessError):
    """A recording cannot be read: names the file and, where known, the line and column."""

    def __init__(self, path: object, message: str, line: int | None = None,
                 column: str | None = None) -> None:
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.column = path, line, column


class MissingColumnError(RecordingError):
    """A column the loader was told to use is not in the file."""


class TooFewSamplesError(HarnessError):
    """A recording, bout or split is too short to give even one window."""


class RunDirectoryError(HarnessError):
    """A run directory lacks a file that an earlier step should have written."""


class QuantizationError(HarnessError):
    """A model cannot be expressed in the requested fixed-point format."""


class RecordingWarning(UserWarning):
    """A recording loads, but part of it looks wrong (e.g. bouts that do not feel 1 g)."""


class CoverageWarning(RecordingWarning):
    """A split by animal leaves a class on one side only, or a class comes from one animal."""
