"""Serial backend: a physical tag on a serial port; flashed beforehand, or at start (`flash`).

Its firmware is built for the platform the target profile names for `serial` (for the memory
figures of the report, and to flash). The URL is the port the user names (`--port
/dev/ttyUSB0`, `serial-number:XYZ` or a board of the hardware map: device_sim/boards.py),
found when the device starts; after flashing (device_sim/flash.py) it is waited for, since a
board may re-enumerate under another name.
"""

from __future__ import annotations

from collections.abc import Callable

from device_sim.backends import Backend, DeviceOptions, Firmware
from device_sim.boards import Board, load_hardware_map, resolve_port, wait_for_port
from device_sim.errors import HardwareMapError, PortError, ReplayUnavailableError
from device_sim.flash import flash_firmware
from device_sim.targets import TargetProfile


class SerialDevice:
    """A physical tag on a serial port: flashed (if `flash` is given) and found at start."""

    def __init__(self, spec: str, hardware: dict[str, Board], timeout: float,
                 flash: Callable[[], str] | None = None) -> None:
        self.spec = spec
        self.hardware = hardware
        self.timeout = timeout
        self.flash = flash
        self.flash_output: str | None = None  # what the flasher printed, once it has run
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise PortError(f"the board on {self.spec} is not started: call start() or use "
                            "`with`")
        return self._url

    def __enter__(self) -> SerialDevice:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> SerialDevice:
        if self.flash is None:  # found by identity each time: it may have re-enumerated
            self._url = resolve_port(self.spec, self.hardware)
            return self
        self.flash_output = self.flash()
        self._url = wait_for_port(self.spec, self.timeout, self.hardware)
        return self

    def stop(self) -> None:
        self._url = None

    def check_alive(self) -> None:
        pass  # a board cannot tell us it died; the session's timeouts do


class SerialBackend(Backend):
    name = "serial"
    label = "board"
    kind = "board"
    summary = "nothing: a physical tag, flashed beforehand or with --flash"
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
                            "ports` lists them): flash the firmware first, or add --flash")
        hardware = load_hardware_map(options.hardware_map)
        board = hardware.get(options.port)
        if board is not None and board.target and board.target != target.name:
            raise HardwareMapError(f"board '{board.name}' of the hardware map is a "
                                   f"{board.target}, not a {target.name}: name the board "
                                   "that runs this target")
        flash = None
        if options.flash:
            platform = target.platform_for(self.name)

            def flash() -> str:
                return flash_firmware(firmware.path, platform, board, options.port,
                                      str(target.source))
        return SerialDevice(options.port, hardware, options.start_timeout(target, self.name), flash)


BACKEND = SerialBackend()
