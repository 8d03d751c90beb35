"""Flashing a physical tag: the firmware built for the board's platform, written by pyOCD or by
a command, with a timeout; the board is then found again by identity (device_sim/boards.py),
and the run checks that it says HELLO with the run's model hash (harness.run.check_device).

How a board is flashed, the first that says:

1. its hardware map entry's `flash`: "pyocd", or a command line;
2. the `flash` of the platform its target builds for `serial` (device_sim/targets/*.toml):
   the nRF52840 is "pyocd" with pyOCD's built-in target `nrf52840`.

A command line may name, in braces: `elf`, `hex` and `bin` (the firmware in each form; the last
two are made by objcopy when asked for), `port` (the board's serial port, for tools that flash
through a serial bootloader), `serial` (its USB serial number) and `probe` (its debug probe's
id). It runs without a shell, in a session of its own, and is ended on timeout and Ctrl-C.

    output = flash_firmware(elf, target.platform_for("serial"), board)
"""

from __future__ import annotations

import shlex
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from device_sim import toolchain
from device_sim.boards import Board, resolve_port
from device_sim.errors import FlashError, FlashUnavailableError
from device_sim.process import run_to_end
from device_sim.targets import Platform

PYOCD = "pyocd"
FLASH_TIMEOUT_S = 120.0  # erasing and writing 1 MB over SWD takes tens of seconds
PLACEHOLDERS = ("elf", "hex", "bin", "port", "serial", "probe")
OUTPUT_LINES = 20  # of the flasher's output, quoted when it fails


@dataclass(frozen=True)
class FlashMethod:
    """How one board is flashed, and who said so (for messages)."""

    how: str  # "pyocd" or a command line
    named_by: str  # "board tag-a of the hardware map", "platform nrf52840 of eartag.toml"
    pyocd_target: str = ""
    pyocd_pack: str = ""


def flash_method(platform: Platform, board: Board | None, where: str) -> FlashMethod:
    """The board's own flasher, else its platform's (`where`: the profile that names the
    platform). FlashUnavailableError when neither says."""
    if board is not None and board.flash:
        return FlashMethod(board.flash, f"board '{board.name}' of the hardware map",
                           platform.pyocd_target, platform.pyocd_pack)
    if platform.flash:
        return FlashMethod(platform.flash, f"platform {platform.name} of {where}",
                           platform.pyocd_target, platform.pyocd_pack)
    raise FlashUnavailableError(
        f"nothing says how to flash a board of platform {platform.name} ({where} names no "
        "`flash` for it): give the board a hardware map entry with `flash = \"pyocd\"` or "
        "`flash = \"<command> {elf}\"` (--hardware-map FILE, [boards.NAME])")


def flash_command(method: FlashMethod, elf: Path, board: Board | None,
                  port_spec: str | None) -> list[str]:
    """The command line that flashes `elf` the way `method` says."""
    if method.how == PYOCD:
        if not method.pyocd_target:
            raise FlashUnavailableError(
                f"{method.named_by} flashes with pyocd, but the platform names no "
                "pyocd_target: set `pyocd_target` (and `pyocd_pack` where pyOCD has no "
                "built-in support) in its [platforms.NAME] table")
        # -W: fail at once when the probe is not there (pyOCD would wait for it forever).
        command = [sys.executable, "-m", "pyocd", "flash", "-W", "-t", method.pyocd_target]
        if method.pyocd_pack:
            command += ["--pack", method.pyocd_pack]
        if board is not None and board.probe_id:
            command += ["-u", board.probe_id]
        return [*command, str(elf)]
    try:
        words = shlex.split(method.how)
        asked = {name for word in words for _, name, _, _ in string.Formatter().parse(word)
                 if name}
    except ValueError as error:
        raise FlashError(f"{method.named_by}: flash = {method.how!r} is not a command line "
                         f"({error})") from None
    unknown = asked - set(PLACEHOLDERS)
    if unknown:
        raise FlashError(f"{method.named_by}: flash = {method.how!r} names {sorted(unknown)}; "
                         f"a flash command may name {{{'}, {'.join(PLACEHOLDERS)}}}")
    values = {name: _placeholder(name, elf, board, port_spec, method) for name in asked}
    return [word.format(**values) for word in words]


def _placeholder(name: str, elf: Path, board: Board | None, port_spec: str | None,
                 method: FlashMethod) -> str:
    if name == "elf":
        return str(elf)
    if name in ("hex", "bin"):
        return str(objcopy(elf, name))
    if name == "port":
        if not port_spec:
            raise FlashError(f"{method.named_by}: the flash command names {{port}}, but no "
                             "port was given")
        return resolve_port(port_spec, {board.name: board} if board else None)
    value = None
    if board is not None:
        value = board.serial_number if name == "serial" else board.probe_id
    if not value:
        raise FlashError(f"{method.named_by}: the flash command names {{{name}}}, which only a "
                         "hardware map board with a serial_number (or probe) gives")
    return value


def objcopy(elf: Path, form: str) -> Path:
    """`elf` as Intel hex or a raw binary, beside it."""
    out = elf.with_suffix(f".{form}")
    tool = Path(toolchain.require("arm-none-eabi-gcc")).with_name("arm-none-eabi-objcopy")
    command = [str(tool), "-O", {"hex": "ihex", "bin": "binary"}[form], str(elf), str(out)]
    done = subprocess.run(command, capture_output=True, text=True,
                          timeout=toolchain.COMPILE_TIMEOUT_S)
    if done.returncode != 0:
        raise FlashError(f"objcopy could not make {out.name}: {done.stderr.strip()}")
    return out


def run_flasher(command: list[str], named_by: str, timeout: float = FLASH_TIMEOUT_S) -> str:
    """Run a flash command to its end; its output. FlashError, quoting the output, when it is
    not found, fails or outlasts `timeout`."""
    try:
        done = run_to_end(command, timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          errors="replace")
    except OSError as error:
        raise FlashError(f"cannot run the flasher {command[0]!r} ({named_by}): {error}. "
                         "Install it, or name another in the hardware map's `flash`") from None
    except subprocess.TimeoutExpired:
        raise FlashError(f"the flasher ({named_by}) did not finish within {timeout:g} s: "
                         f"{shlex.join(command)}") from None
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-OUTPUT_LINES:])
        raise FlashError(f"flashing failed ({named_by}): `{shlex.join(command)}` exited with "
                         f"status {done.returncode}:\n{tail}")
    return done.stdout


def flash_firmware(elf: Path, platform: Platform, board: Board | None, port_spec: str | None,
                   where: str, timeout: float = FLASH_TIMEOUT_S) -> str:
    """Flash `elf` on the board (`board` from the hardware map, or None for a bare port); the
    flasher's output."""
    method = flash_method(platform, board, where)
    return run_flasher(flash_command(method, elf, board, port_spec), method.named_by, timeout)
