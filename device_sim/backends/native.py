"""Host-native backend: the firmware built for the host (appbuild.build_native) as a process.

The device process talks through a pseudo-terminal, as a tag does through a USB serial adapter:

    host (pyserial) -- opens `device.url` = the pty's slave, e.g. /dev/pts/7
    device process  -- holds the pty's master as its stdin (fd 0) and stdout (fd 1), raw bytes

The master has no path anyone could open, the slave has one: so the host opens the slave, with
`serial.serial_for_url(device.url)` like any serial port, and the device reads and writes the
master. The slave is put in raw mode before the start, so no byte is echoed or translated.

Boot without losing HELLO: pyserial flushes the terminal's input when it opens a port, which
would throw away a HELLO sent before. So the master is put in packet mode (TIOCPKT) before the
device starts, and the device (platform_host.c) waits until the kernel reports that flush
(TIOCPKT_FLUSHREAD) before it boots: opening `url` boots the device, as with QEMU's wait=on.

The process runs in a session of its own (Ctrl-C in the terminal reaches Python, not the device)
and is ended by stop(), by the context manager on success, failure or Ctrl-C, and by a finalizer
if the object is dropped. This object holds both ends open until stop():
- the slave, so the host may close and reopen the port without the device seeing a hang-up;
- a copy of the master, because the last close of the master hangs up the slave, and a hang-up
  throws away what the host has not read yet: the ERROR frame of a fault, sent just before the
  device exits, must survive the exit. (Bytes the host writes after the device is gone are
  buffered, not read: check `alive`.)
If this Python process dies anyway, its descriptors close, the device reads end-of-file on the
master and exits: it cannot be orphaned.

    with NativeDevice(exe, "collar") as device:
        port = device.open(timeout=2.0)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess
import termios
import threading
import tty
import weakref
from pathlib import Path

from device_sim.appbuild import REPLAY_ENV, build_native
from device_sim.backends import Backend, DeviceOptions, Firmware
from device_sim.errors import EmulatorError
from device_sim.model_sources import ModelSources
from device_sim.process import (
    STOP_TIMEOUT_S,
    ProcessDevice,
    collect_lines,
    end_process,
    spawn,
)
from device_sim.replay import check_image
from device_sim.targets import DEFAULT_TARGET, TargetProfile, load_target


def _end(proc: subprocess.Popen[str] | None, fds: list[int],
         timeout: float = STOP_TIMEOUT_S) -> None:
    """End the process, then close the terminal. Needs no `self`: it is the finalizer too."""
    if proc is not None:
        end_process(proc, timeout)
    while fds:
        with contextlib.suppress(OSError):
            os.close(fds.pop())


class NativeDevice(ProcessDevice):
    """One host-native firmware process on a pseudo-terminal; same shape as QemuDevice."""

    def __init__(self, executable: Path | str, target: TargetProfile | str | None = None,
                 timeout: float | None = None, replay_image: Path | None = None) -> None:
        """`timeout`: longest wait for the device; None: the profile's native start (of the
        default target when none is given)."""
        self.target = load_target(target) if isinstance(target, str) else target
        profile = self.target or load_target(DEFAULT_TARGET)
        super().__init__(profile.timeouts_for(BACKEND.name, timeout).start)
        self.executable = Path(executable)
        self.replay_image = None if replay_image is None else Path(replay_image)
        self._fds: list[int] = []  # pty master and slave; a list the finalizer can empty
        self._tty: str | None = None

    @property
    def label(self) -> str:
        return self.executable.name

    def _end(self, timeout: float) -> None:
        _end(self._proc, self._fds, timeout)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> NativeDevice:
        """Create the pseudo-terminal and start the device; it boots when `url` is opened."""
        if self._proc is not None:
            raise EmulatorError(f"{self.executable.name} was already started")
        if not self.executable.is_file() or not os.access(self.executable, os.X_OK):
            raise EmulatorError(f"native firmware {self.executable} does not exist or is not "
                                "executable: build it with device_sim.appbuild.build_native")
        if self.replay_image is not None:
            check_image(self.replay_image, BACKEND.replay_capacity(self.target), "the host")
        # The device maps the replay image itself (platform_host.c); none without the variable.
        env = {k: v for k, v in os.environ.items() if k != REPLAY_ENV}
        if self.replay_image is not None:
            env[REPLAY_ENV] = str(self.replay_image.resolve())
        master, slave = os.openpty()
        self._fds = [master, slave]
        try:
            tty.setraw(slave)
            fcntl.ioctl(master, termios.TIOCPKT, struct.pack("i", 1))
            self._tty = os.ttyname(slave)
            self._stderr = []
            proc = spawn([str(self.executable)], stdin=master, stdout=master,
                         stderr=subprocess.PIPE, text=True, errors="replace", env=env)
        except BaseException:
            _end(None, self._fds)
            raise
        self._proc = proc
        self._finalizer = weakref.finalize(self, _end, proc, self._fds)
        threading.Thread(target=collect_lines, args=(proc.stderr, self._stderr),
                         daemon=True).start()
        return self

    # -- talking to the device ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """Path of the pseudo-terminal's slave, for serial.serial_for_url; opening it (pyserial
        flushes it) boots the device."""
        if self._tty is None:
            raise EmulatorError("the native device is not started: call start() or use `with`")
        return self._tty


class NativeBackend(Backend):
    name = "native"
    label = "host CPU"
    kind = "host"
    summary = "the firmware's portable part compiled for the host, on a pseudo-terminal"
    url_form = "/dev/pts/N"
    tools = ("gcc",)

    def build(self, model: ModelSources, target: TargetProfile, out_dir: Path, *,
              test_hooks: bool = False, trace: bool = False) -> Firmware:
        return Firmware(build_native(model, target, out_dir, test_hooks=test_hooks, trace=trace),
                        None, None, "host")

    def device(self, firmware: Firmware, target: TargetProfile,
               options: DeviceOptions) -> NativeDevice:
        return NativeDevice(firmware.path, target,
                            timeout=options.start_timeout(target, self.name),
                            replay_image=options.replay_image)

    def replay_capacity(self, target: TargetProfile) -> int:
        return 0xFFFF_FFFF  # a mapped file: as large as the image's u32 counts allow


BACKEND = NativeBackend()
