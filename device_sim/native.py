"""Host-native backend: the firmware built for the host (firmware_build.build_native) as a process.

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
from typing import IO

import serial

from device_sim.targets import TargetProfile, load_target
from harness.errors import DeviceTimeoutError, EmulatorError

STOP_TIMEOUT_S = 5.0


def _collect(stream: IO[str], lines: list[str]) -> None:
    """Reader thread: keep every line the device prints on stderr; owns and closes the stream."""
    try:
        for line in stream:
            lines.append(line.rstrip("\n"))
    except (OSError, ValueError):
        pass
    finally:
        stream.close()


def _end(proc: subprocess.Popen[str] | None, fds: list[int],
         timeout: float = STOP_TIMEOUT_S) -> None:
    """Terminate, wait, kill; then close the terminal. Needs no `self`: it is the finalizer too."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    while fds:
        with contextlib.suppress(OSError):
            os.close(fds.pop())


class NativeDevice:
    """One host-native firmware process on a pseudo-terminal; same shape as QemuDevice."""

    def __init__(self, executable: Path | str, target: TargetProfile | str | None = None,
                 timeout: float = 10.0) -> None:
        self.executable = Path(executable)
        self.target = load_target(target) if isinstance(target, str) else target
        self.timeout = timeout
        self._proc: subprocess.Popen[str] | None = None
        self._fds: list[int] = []  # pty master and slave; a list the finalizer can empty
        self._tty: str | None = None
        self._stderr: list[str] = []
        self._serials: list[serial.SerialBase] = []
        self._finalizer: weakref.finalize | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> NativeDevice:
        """Create the pseudo-terminal and start the device; it boots when `url` is opened."""
        if self._proc is not None:
            raise EmulatorError(f"{self.executable.name} was already started")
        if not self.executable.is_file() or not os.access(self.executable, os.X_OK):
            raise EmulatorError(f"native firmware {self.executable} does not exist or is not "
                                "executable: build it with device_sim.firmware_build.build_native")
        master, slave = os.openpty()
        self._fds = [master, slave]
        try:
            tty.setraw(slave)
            fcntl.ioctl(master, termios.TIOCPKT, struct.pack("i", 1))
            self._tty = os.ttyname(slave)
            self._stderr = []
            proc = subprocess.Popen([str(self.executable)], stdin=master, stdout=master,
                                    stderr=subprocess.PIPE, text=True, errors="replace",
                                    start_new_session=True)
        except BaseException:
            _end(None, self._fds)
            raise
        self._proc = proc
        self._finalizer = weakref.finalize(self, _end, proc, self._fds)
        threading.Thread(target=_collect, args=(proc.stderr, self._stderr), daemon=True).start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Close ports opened by `open`, end the process, close the terminal. Idempotent."""
        for port in self._serials:
            port.close()
        self._serials.clear()
        _end(self._proc, self._fds, timeout)
        if self._finalizer is not None:
            self._finalizer.detach()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the device process to exit by itself and return its exit status."""
        proc = self._require_started()
        timeout = self.timeout if timeout is None else timeout
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise DeviceTimeoutError(
                f"{self.executable.name} did not exit within {timeout} s") from exc

    def __enter__(self) -> NativeDevice:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- talking to the device ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """Path of the pseudo-terminal's slave, for serial.serial_for_url; opening it (pyserial
        flushes it) boots the device."""
        if self._tty is None:
            raise EmulatorError("the native device is not started: call start() or use `with`")
        return self._tty

    def open(self, timeout: float = 2.0) -> serial.SerialBase:
        """Open the device's port (this boots it); every read times out after `timeout` s.
        The port is closed by stop()."""
        self.check_alive()
        try:
            port = serial.serial_for_url(self.url, timeout=timeout)
        except serial.SerialException as exc:
            raise EmulatorError(f"cannot open {self.url}: {exc}\n{self.stderr}") from exc
        self._serials.append(port)
        return port

    # -- state -------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The process's exit status (negative: killed by that signal), None while it runs."""
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def stderr(self) -> str:
        """Everything the device printed on stderr so far."""
        return "\n".join(self._stderr)

    def check_alive(self) -> None:
        """Raise EmulatorError, quoting the device's stderr, if the process has ended."""
        proc = self._require_started()
        if proc.poll() is not None:
            raise EmulatorError(f"{self.executable.name} ended with status {proc.returncode}:\n"
                                f"{self.stderr}")

    def _require_started(self) -> subprocess.Popen[str]:
        if self._proc is None:
            raise EmulatorError("the native device is not started: call start() or use `with`")
        return self._proc
