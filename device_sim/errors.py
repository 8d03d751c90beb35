"""Errors of the device half: targets, toolchains, firmware builds, emulators and devices.

`HarnessError` is the base of every error the project reports to its user; each layer defines
its own errors on it (`models/errors.py`, `device_sim/protocol/errors.py`), and
`harness/errors.py` lists them all. The command line prints the message of any HarnessError and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class of every error the harness reports to its user."""


class UnknownTargetError(HarnessError):
    """A target name has no profile file."""


class UnknownBackendError(HarnessError):
    """A backend name is not in the registry."""


class TargetProfileError(HarnessError):
    """A target profile is malformed: a missing or unknown key, or a platform it does not
    describe."""


class SampleRateError(HarnessError):
    """A sample rate is missing, non-positive, or does not match what the target expects."""


class FramingMismatchError(HarnessError):
    """A model's window or hop differs from the target's: the firmware would cut other windows
    than the model was trained on."""


class ModelSourcesError(HarnessError):
    """An exported C folder is missing, incomplete or has no readable manifest."""


class ToolchainError(HarnessError):
    """A compiler or emulator is missing or failed; the message says what to install or fix."""


class FirmwareTooLargeError(ToolchainError):
    """A firmware does not fit the real device's flash or RAM: the linker refused it."""


class EmulatorError(HarnessError):
    """An emulator failed to start or died; the message quotes what it printed."""


class DeviceTimeoutError(HarnessError):
    """A device did not answer (or an emulator did not exit) within the allowed time."""


class PortError(HarnessError):
    """A device's port is not given, does not exist, is busy or cannot be opened."""


class PortNotFoundError(PortError):
    """No serial port has the identity asked for (serial number, location, board name)."""


class AmbiguousPortError(PortError):
    """Several serial ports have the identity asked for: two boards with one serial number."""


class HardwareMapError(HarnessError):
    """A hardware map (--hardware-map, [tool.harness.hardware]) is missing or malformed."""


class FlashError(HarnessError):
    """Flashing a board failed: the flasher (pyocd or the hardware map's command) was not
    found, exited with an error or did not finish; the message quotes what it printed."""


class FlashUnavailableError(FlashError):
    """Nothing says how to flash this board: neither its hardware map entry nor the platform
    of its target names a flasher."""


class PlaceError(HarnessError):
    """A labgrid place cannot be used: the coordinator is unreachable, the place has no serial
    port or its exporter is gone, or labgrid-client failed (the message quotes it)."""


class PlaceNotFoundError(PlaceError):
    """The coordinator knows no place of the name asked for (the message lists those it has)."""


class PlaceBusyError(PlaceError):
    """The labgrid place is acquired by someone else (the message names who)."""


class ReplayError(HarnessError):
    """Bulk replay is not possible: the base of the two below."""


class ReplayUnavailableError(ReplayError):
    """Bulk replay asked of a device or mode that cannot do it: a physical board (nothing can
    put a recording in its memory), a platform without a replay region, or a real-time run."""


class ReplayImageError(ReplayError):
    """A replay image is malformed, or does not fit the platform's replay region."""
