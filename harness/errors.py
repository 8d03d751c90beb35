"""Every error a user can act on, in one place.

The command line prints the message of any HarnessError and exits with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class of every error the harness reports to its user."""


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


class SampleRateError(HarnessError):
    """A sample rate is missing, non-positive, or does not match what the target expects."""


class UnknownTargetError(HarnessError):
    """A target name has no profile file."""


class RunDirectoryError(HarnessError):
    """A run directory lacks a file that an earlier step should have written."""


class QuantizationError(HarnessError):
    """A model cannot be expressed in the requested fixed-point format."""


class ToolchainError(HarnessError):
    """A compiler or emulator is missing or failed; the message says what to install or fix."""


class FirmwareTooLargeError(ToolchainError):
    """A firmware does not fit the real device's flash or RAM: the linker refused it."""


class EmulatorError(HarnessError):
    """An emulator failed to start or died; the message quotes what it printed."""


class DeviceTimeoutError(HarnessError):
    """A device did not answer (or an emulator did not exit) within the allowed time."""


class RecordingWarning(UserWarning):
    """A recording loads, but part of it looks wrong (e.g. bouts that do not feel 1 g)."""
