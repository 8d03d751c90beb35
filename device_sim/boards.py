"""Boards found by identity: serial ports listed with their USB identity, a `--port` given as a
device path, as `serial-number:XYZ`, or as the name of a board in a hardware map.

Two identical boards on one hub enumerate in whatever order the kernel likes, and a board that
is flashed or reset may come back under another device name: a port is therefore best named by
what does not change, the USB serial number (or the hub location), and found again each time.

A hardware map is TOML, from `--hardware-map FILE` or `[tool.harness.hardware]` in
pyproject.toml: one table per board,

    [boards.tag-a]              # in pyproject.toml: [tool.harness.hardware.tag-a]
    target = "eartag"
    serial_number = "000683512345"   # or: location = "1-1.2:1.0", or port = "/dev/serial/by-id/..."
    flash = "pyocd"                  # or a command, e.g. "nrfjprog --program {hex} --reset"
    probe = "683512345"              # pyocd's probe id (default: the serial number, no leading 0s)

    device = resolve_port("tag-a", hardware=load_hardware_map(path))
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from serial.tools import list_ports

from device_sim.errors import AmbiguousPortError, HardwareMapError, PortNotFoundError

SERIAL_PREFIX = "serial-number:"
LOCATION_PREFIX = "location:"
BOARD_KEYS = {"target", "serial_number", "location", "port", "flash", "probe", "description"}


@dataclass(frozen=True)
class PortInfo:
    """A serial port as the operating system lists it (pyserial's list_ports)."""

    device: str
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    location: str | None = None
    description: str = ""

    @property
    def usb_id(self) -> str:
        return "" if self.vid is None else f"{self.vid:04x}:{self.pid or 0:04x}"

    def label(self) -> str:
        parts = [self.device, self.usb_id, self.serial_number and f"serial {self.serial_number}",
                 self.location and f"at {self.location}", self.description]
        return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class Board:
    """One board of a hardware map: how to find its port and how to flash it."""

    name: str
    target: str | None = None
    serial_number: str | None = None
    location: str | None = None
    port: str | None = None   # a fixed path or URL, for a board without a USB identity
    flash: str | None = None  # "pyocd" or a command line (device_sim/flash.py's placeholders)
    probe: str | None = None  # the debug probe's unique id, for pyocd
    description: str = ""

    @property
    def identity(self) -> str:
        """How its port is found, as --port would say it."""
        if self.port:
            return self.port
        if self.serial_number:
            return f"{SERIAL_PREFIX}{self.serial_number}"
        return f"{LOCATION_PREFIX}{self.location}"

    @property
    def probe_id(self) -> str | None:
        """The probe pyocd is to use: `probe`, else the serial number. A J-Link's USB serial
        number has leading zeros its probe id lacks; pyocd matches a substring of the id."""
        return self.probe or (self.serial_number or "").lstrip("0") or None


def serial_ports() -> list[PortInfo]:
    """The serial ports of this machine, by device name."""
    return sorted((PortInfo(p.device, p.vid, p.pid, p.serial_number, p.location,
                            p.description if p.description != "n/a" else "")
                   for p in list_ports.comports()), key=lambda p: p.device)


def load_hardware_map(path: Path | None = None, pyproject: Path | None = None) -> dict[str, Board]:
    """The boards of `path` ([boards.NAME] tables) or, without it, of pyproject.toml's
    [tool.harness.hardware.NAME] (none if it has no such table)."""
    if path is not None:
        source, section = Path(path), "boards"
        tables = _read_toml(source).get("boards", {})
    else:
        source, section = pyproject or Path("pyproject.toml"), "tool.harness.hardware"
        if not source.is_file():
            return {}
        tables = _read_toml(source).get("tool", {}).get("harness", {}).get("hardware", {})
    boards = {}
    for name, table in tables.items():
        where = f"{source} [{section}.{name}]"
        if not isinstance(table, dict):
            raise HardwareMapError(f"{where}: not a table of a board's keys")
        unknown = set(table) - BOARD_KEYS
        if unknown:
            raise HardwareMapError(f"{where}: unknown keys {sorted(unknown)}; a board takes "
                                   f"{sorted(BOARD_KEYS)}")
        if not any(table.get(key) for key in ("serial_number", "location", "port")):
            raise HardwareMapError(f"{where}: give its serial_number or its location (see "
                                   "`harness ports`), or its port, so that it can be found")
        boards[name] = Board(name, **{k: str(v) for k, v in table.items()})
    return boards


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise HardwareMapError(f"hardware map {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise HardwareMapError(f"{path}: not valid TOML: {error}") from error


def resolve_port(spec: str, hardware: dict[str, Board] | None = None,
                 ports: Sequence[PortInfo] | None = None) -> str:
    """The device path `spec` names: a board of `hardware`, `serial-number:XYZ`,
    `location:LOC`, or a path (or URL) kept as it is. PortNotFoundError when nothing matches,
    AmbiguousPortError when several do, each naming the candidates."""
    hardware = hardware or {}
    if spec in hardware:
        board = hardware[spec]
        if board.port:
            return board.port
        if board.serial_number:
            return _one(lambda p: p.serial_number == board.serial_number, ports,
                        f"board '{spec}' (serial number {board.serial_number})")
        return _one(lambda p: p.location == board.location, ports,
                    f"board '{spec}' (location {board.location})")
    if spec.startswith(SERIAL_PREFIX):
        wanted = spec[len(SERIAL_PREFIX):]
        return _one(lambda p: p.serial_number == wanted, ports, f"serial number {wanted}")
    if spec.startswith(LOCATION_PREFIX):
        wanted = spec[len(LOCATION_PREFIX):]
        return _one(lambda p: p.location == wanted, ports, f"location {wanted}")
    return spec


def _one(matches: Callable[[PortInfo], bool], ports: Sequence[PortInfo] | None,
         what: str) -> str:
    listed = serial_ports() if ports is None else list(ports)
    found = [p for p in listed if matches(p)]
    if len(found) > 1:
        raise AmbiguousPortError(f"{len(found)} ports match {what}: "
                                 + "; ".join(p.label() for p in found)
                                 + ". Name one by its location (location:...) instead")
    if not found:
        candidates = "; ".join(p.label() for p in listed) or "none"
        raise PortNotFoundError(f"no serial port matches {what}. Ports here: {candidates}")
    return found[0].device


def wait_for_port(spec: str, timeout: float, hardware: dict[str, Board] | None = None,
                  ports: Callable[[], Sequence[PortInfo]] = serial_ports,
                  poll_s: float = 0.1) -> str:
    """resolve_port, tried again until `timeout` s have passed: a board re-enumerates after
    flashing or reset, and a device path (a /dev/serial/by-id link) is there again only then.
    Raises the last PortNotFoundError then; AmbiguousPortError at once."""
    give_up = time.monotonic() + timeout
    while True:
        try:
            listed = ports()
            found = resolve_port(spec, hardware, listed)
            # A path named as such (not one of the listed ports) must be there.
            named = found not in {port.device for port in listed}
            if named and found.startswith("/") and not os.path.exists(found):
                raise PortNotFoundError(f"{found} does not exist")
            return found
        except PortNotFoundError as error:
            if time.monotonic() >= give_up:
                raise PortNotFoundError(f"{error} (waited {timeout:g} s)") from None
        time.sleep(poll_s)


def markdown_ports(ports: Sequence[PortInfo]) -> str:
    """`harness ports`: one line per port."""
    lines = ["| port | USB vid:pid | serial number | location | description |",
             "|---|---|---|---|---|"]
    lines += [f"| {p.device} | {p.usb_id or '-'} | {p.serial_number or '-'} | "
              f"{p.location or '-'} | {p.description or '-'} |" for p in ports]
    return "\n".join(lines)
