"""Every error a user of the harness can catch, in one list.

Each error is defined by the layer that raises it (`device_sim/errors.py`,
`device_sim/protocol/errors.py`, `models/errors.py`, and here the harness's own), all on one
base class, HarnessError. The command line prints the message of any HarnessError and exits
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from device_sim.errors import (
    AmbiguousPortError,
    DeviceTimeoutError,
    EmulatorError,
    FirmwareTooLargeError,
    FlashError,
    FlashUnavailableError,
    FramingMismatchError,
    HardwareMapError,
    HarnessError,
    ModelSourcesError,
    PlaceBusyError,
    PlaceError,
    PlaceNotFoundError,
    PortError,
    PortNotFoundError,
    ReplayError,
    ReplayImageError,
    ReplayUnavailableError,
    SampleRateError,
    TargetProfileError,
    ToolchainError,
    UnknownBackendError,
    UnknownTargetError,
)
from device_sim.protocol import DeviceError, ProtocolError
from models.errors import (
    MissingColumnError,
    QuantizationError,
    RecordingError,
    RecordingWarning,
    RunDirectoryError,
    TooFewSamplesError,
)


class ThresholdError(HarnessError):
    """A pass threshold is unknown or not a number."""


class DeviceMismatchError(HarnessError):
    """The device announced other firmware than the run needs (target, model, framing)."""


class ReportError(HarnessError):
    """A report.json cannot be read: missing, malformed or of another schema."""


class NothingToStreamError(HarnessError):
    """A recording holds no bout long enough for one window of the target."""


class BaselineError(HarnessError):
    """A baseline cannot be read or written: missing, malformed or of another format."""


class RecordingMismatchError(HarnessError):
    """Two runs to compare streamed other recordings, or other windows of one."""


class NoHelloError(DeviceTimeoutError):
    """A device said no HELLO within its start timeout: it did not boot, or something else
    holds its line. An infrastructure failure: `--retries` starts the run again."""


class PortUnavailableError(PortError, DeviceTimeoutError):
    """A device's port cannot be opened (busy, unplugged, gone), or vanished during the run.
    An infrastructure failure: `--retries` starts the run again."""


class InfrastructureWarning(UserWarning):
    """A device failed for infrastructure reasons and is started again (--retries)."""


class AssessmentWarning(UserWarning):
    """A run could not check something a reader would take its pass for: accuracy and MCC over
    windows of one class."""


__all__ = [
    "AmbiguousPortError",
    "AssessmentWarning",
    "BaselineError",
    "DeviceError",
    "DeviceMismatchError",
    "DeviceTimeoutError",
    "EmulatorError",
    "FirmwareTooLargeError",
    "FlashError",
    "FlashUnavailableError",
    "FramingMismatchError",
    "HardwareMapError",
    "HarnessError",
    "InfrastructureWarning",
    "MissingColumnError",
    "ModelSourcesError",
    "NoHelloError",
    "NothingToStreamError",
    "PlaceBusyError",
    "PlaceError",
    "PlaceNotFoundError",
    "PortError",
    "PortNotFoundError",
    "PortUnavailableError",
    "ProtocolError",
    "QuantizationError",
    "RecordingError",
    "RecordingMismatchError",
    "RecordingWarning",
    "ReplayError",
    "ReplayImageError",
    "ReplayUnavailableError",
    "ReportError",
    "RunDirectoryError",
    "SampleRateError",
    "TargetProfileError",
    "ThresholdError",
    "TooFewSamplesError",
    "ToolchainError",
    "UnknownBackendError",
    "UnknownTargetError",
]
