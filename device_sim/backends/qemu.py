"""QEMU backend: run a firmware ELF on the board that stands in for a target (its profile's
platform for `qemu`, e.g. mps2-an386 for the ear tag).

The guest's UART0 is a TCP server on a free loopback port; the host talks to it with pyserial at
`device.url` (`socket://127.0.0.1:PORT`). QEMU is started with `wait=on`, so the guest does not
run until the host connects: connecting is what boots the firmware, and no byte of the boot
announcement is lost. `-icount shift=0,align=off,sleep=off` makes time a function of the
instruction count, so SysTick measures instructions deterministically (see DESIGN.md).

    with QemuDevice(elf, "collar") as device:
        port = device.open(timeout=2.0)
        print(port.readline())
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

from device_sim import toolchain
from device_sim.backends import Backend, DeviceOptions, Firmware
from device_sim.errors import EmulatorError, ToolchainError
from device_sim.process import ProcessDevice, collect_lines, end_process, free_port, spawn
from device_sim.replay import check_image
from device_sim.targets import TargetProfile, load_target

QEMU = "qemu-system-arm"
LISTENING_MARK = "waiting for connection"
BIND_FAILURE_MARKS = ("Address already in use", "Failed to bind")
START_ATTEMPTS = 5


class QemuDevice(ProcessDevice):
    """One QEMU process running one firmware; a context manager that always ends QEMU."""

    def __init__(self, elf: Path | str, target: TargetProfile | str,
                 timeout: float | None = None, extra_args: Sequence[str] = (),
                 binary: str = QEMU, replay_image: Path | None = None) -> None:
        """`timeout`: longest wait for QEMU to listen; None: the profile's qemu start."""
        self.target = load_target(target) if isinstance(target, str) else target
        super().__init__(self.target.timeouts_for(BACKEND.name, timeout).start)
        self.elf = Path(elf)
        self.platform = self.target.platform_for(BACKEND.name)
        self.machine = self.platform.machine
        self.replay_image = None if replay_image is None else Path(replay_image)
        self.extra_args = tuple(extra_args)
        self.binary = binary
        self.port: int | None = None
        self._stdout: list[str] = []

    @property
    def label(self) -> str:
        return f"QEMU running {self.elf.name}"

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self, port: int) -> list[str]:
        """The QEMU command line, exactly as measured in DESIGN.md, for UART0 on `port`."""
        return [
            self.binary, "-M", self.machine, "-kernel", str(self.elf),
            "-display", "none", "-monitor", "none",
            "-semihosting-config", "enable=on,target=native",
            "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on",
            "-icount", "shift=0,align=off,sleep=off",
            *self._replay_args(),
            *self.extra_args,
        ]

    def _replay_args(self) -> list[str]:
        """The replay image, raw, at the platform's replay origin (loaded before reset)."""
        if self.replay_image is None:
            return []
        # A comma in the path would end loader's option: QEMU escapes it as ",,".
        image = str(self.replay_image.resolve()).replace(",", ",,")
        return ["-device", f"loader,file={image},addr=0x{self.platform.replay_origin:08X},"
                "force-raw=on"]

    def start(self) -> QemuDevice:
        """Launch QEMU and return once it listens on its port (the guest waits for `open`)."""
        if self._proc is not None:
            raise EmulatorError(f"QEMU for {self.elf.name} was already started")
        if self.binary == QEMU:
            toolchain.require(QEMU)
        elif shutil.which(self.binary) is None:
            raise ToolchainError(f"{self.binary} not found")
        if not self.elf.is_file():
            raise EmulatorError(f"firmware {self.elf} does not exist")
        if self.replay_image is not None:
            check_image(self.replay_image, BACKEND.replay_capacity(self.target),
                        f"{self.platform.name} at 0x{self.platform.replay_origin:08X}")
        try:
            for _ in range(START_ATTEMPTS):
                port = free_port()
                if self._launch(port):
                    self.port = port
                    return self
        except BaseException:  # KeyboardInterrupt while starting: no QEMU left behind
            self.stop()
            raise
        raise EmulatorError(
            f"QEMU could not bind a loopback port in {START_ATTEMPTS} attempts:\n{self.stderr}")

    def _launch(self, port: int) -> bool:
        """Start QEMU on `port`; True once listening, False if the port was taken meanwhile."""
        self._stderr, self._stdout = [], []
        # A session of its own (spawn): Ctrl-C in the terminal must not kill QEMU before we
        # clean up (and read what it printed); stop() and the finalizer end it instead.
        proc = spawn(self.command(port), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, errors="replace")
        self._proc = proc
        self._finalizer = weakref.finalize(self, end_process, proc)
        listening, stdout_done = threading.Event(), threading.Event()
        threading.Thread(target=collect_lines, args=(proc.stderr, self._stderr, LISTENING_MARK,
                                                     listening), daemon=True).start()
        threading.Thread(target=collect_lines, args=(proc.stdout, self._stdout, None,
                                                     stdout_done), daemon=True).start()

        if not listening.wait(self.timeout):
            self.stop()
            raise EmulatorError(f"QEMU did not listen on port {port} within {self.timeout} s:\n"
                                f"{self.stderr}")
        if proc.poll() is None and any(LISTENING_MARK in line for line in self._stderr):
            return True
        # stderr ended: QEMU died. Wait for its status so the message can give it.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(self.timeout)
        text = self.stderr
        self.stop()
        if any(mark in text for mark in BIND_FAILURE_MARKS):
            self._proc = None
            return False
        raise EmulatorError(f"QEMU exited at start (status {proc.returncode}) running "
                            f"{self.elf.name} on {self.machine}:\n{text}")

    # -- talking to the guest ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """pyserial URL of the guest's UART0; opening it boots the firmware."""
        if self.port is None:
            raise EmulatorError("QEMU is not started: call start() or use `with`")
        return f"socket://127.0.0.1:{self.port}"

    # -- state -------------------------------------------------------------------------------

    @property
    def stdout(self) -> str:
        """Everything QEMU printed on stdout so far (semihosting console output)."""
        return "\n".join(self._stdout)


class QemuBackend(Backend):
    name = "qemu"
    label = "QEMU"
    kind = "emulator"
    summary = "`qemu-system-arm -M <platform> -icount shift=0 ...` on a free loopback port"
    url_form = "socket://127.0.0.1:PORT"
    tools = ("arm-none-eabi-gcc", "newlib", QEMU)

    def device(self, firmware: Firmware, target: TargetProfile,
               options: DeviceOptions) -> QemuDevice:
        return QemuDevice(firmware.path, target, timeout=options.start_timeout(target, self.name),
                          replay_image=options.replay_image)


BACKEND = QemuBackend()
