"""Serial backend: a physical tag on a serial port, flashed beforehand; nothing to start.

Its firmware is still built (for the memory figures of the report) for the platform the target
profile names for `serial`. The URL is the port the user names (`--port /dev/ttyUSB0`,
`serial-number:XYZ` or a board of the hardware map: device_sim/boards.py), found when it starts.
"""

from __future__ import annotations

from device_sim.backends import Backend, DeviceOptions, Firmware
from device_sim.boards import load_hardware_map, resolve_port
from device_sim.errors import PortError, ReplayUnavailableError
from device_sim.targets import TargetProfile


class SerialDevice:
    """A physical tag on a serial port: already running the firmware, nothing to start."""

    def __init__(self, port: str) -> None:
        self.url = port

    def __enter__(self) -> SerialDevice:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def start(self) -> SerialDevice:
        return self

    def stop(self) -> None:
        pass

    def check_alive(self) -> None:
        pass  # a board cannot tell us it died; the session's timeouts do


class SerialBackend(Backend):
    name = "serial"
    label = "board"
    kind = "board"
    summary = "nothing: a physical tag, flashed beforehand"
    url_form = "/dev/ttyUSB0 (the --port given)"
    tools = ("arm-none-eabi-gcc", "newlib")
    needs_port = True

    def replay_capacity(self, target: TargetProfile) -> int:
        raise ReplayUnavailableError(
            "bulk replay needs an emulator's loader to put the recording in the device's "
            "memory; a physical board on a serial port has none: stream it (drop --bulk)")

    def device(self, firmware: Firmware, target: TargetProfile,
               options: DeviceOptions) -> SerialDevice:
        if not options.port:
            raise PortError("the serial backend needs a port (--port /dev/ttyUSB0, "
                            "serial-number:XYZ or a board of the hardware map; `harness "
                            "ports` lists them): flash the firmware first, then name its port")
        # Found by identity each time: the board may have re-enumerated since.
        return SerialDevice(resolve_port(options.port, load_hardware_map(options.hardware_map)))


BACKEND = SerialBackend()
