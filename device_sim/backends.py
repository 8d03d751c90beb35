"""Backends: how a device is started and what pyserial URL it hands back; nothing else differs.

    qemu    the firmware ELF in qemu-system-arm      -> socket://127.0.0.1:PORT
    native  the firmware's portable part on the host -> /dev/pts/N (a pseudo-terminal)
    serial  a physical tag, flashed beforehand       -> the port given (e.g. /dev/ttyUSB0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_sim.build import elf_memory
from device_sim.firmware_build import build_model_firmware, build_native
from device_sim.native import NativeDevice
from device_sim.qemu import QemuDevice
from device_sim.targets import TargetProfile
from harness.errors import HarnessError

BACKENDS = ("qemu", "native", "serial")


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


@dataclass
class PreparedDevice:
    device: Any  # context manager with .url and .check_alive()
    artefact: Path  # the ELF or host executable that runs
    memory: dict[str, int] | None  # flash and RAM from the ELF; None on the host


def prepare_device(backend: str, run_dir: Path, variant: str, profile: TargetProfile,
                   build_dir: Path, port: str | None = None,
                   timeout: float = 10.0) -> PreparedDevice:
    """Build what the backend runs and make (not yet start) the device."""
    if backend == "qemu":
        elf = build_model_firmware(run_dir, variant, profile, build_dir)
        return PreparedDevice(QemuDevice(elf, profile, timeout=timeout), elf, elf_memory(elf))
    if backend == "native":
        executable = build_native(run_dir, variant, profile, build_dir)
        return PreparedDevice(NativeDevice(executable, timeout=timeout), executable, None)
    if backend == "serial":
        if not port:
            raise HarnessError("the serial backend needs a port (--port /dev/ttyUSB0): flash "
                               "the firmware first, then name the port it talks on")
        elf = build_model_firmware(run_dir, variant, profile, build_dir)
        return PreparedDevice(SerialDevice(port), elf, elf_memory(elf))
    raise HarnessError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
