"""What every device that runs as a local child process shares (QEMU, host-native).

A subclass says how the process starts (`start`, through `spawn`) and which pyserial URL it
hands back (`url`); the rest is here. A device process

- runs in a session and process group of its own, so Ctrl-C in a terminal reaches the harness,
  which then ends it, and not the device first;
- dies with the harness: on Linux it gets SIGKILL when the process that started it dies
  (prctl PR_SET_PDEATHSIG), whatever killed the harness, SIGKILL included;
- is ended by stop(), by the context manager on success, failure or Ctrl-C, and by a finalizer
  if the object is dropped;
- is reported when it dies (EmulatorError quoting what it printed) or is frozen (SIGSTOP).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import serial

from device_sim.errors import DeviceTimeoutError, EmulatorError

STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1
# Resolved before any fork: the child only calls it.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with(parent: int) -> None:
    """In the child, before exec: SIGKILL when `parent` dies; exit now if it already has."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def spawn(command: Sequence[str], **options: Any) -> subprocess.Popen[str]:
    """Start a device process that cannot outlive the harness (see the module's doc).

    The death signal is sent when the thread that started the process ends: start devices
    from a thread that lives as long as they do (the main thread)."""
    parent = os.getpid()
    return subprocess.Popen(list(command), start_new_session=True,
                            preexec_fn=lambda: _die_with(parent), **options)


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` (R, S, T for stopped, Z ...); None if unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def end_process(proc: subprocess.Popen[str], timeout: float = STOP_TIMEOUT_S) -> None:
    """Terminate, wait, kill. Also the finalizer, so it must not need the device object."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def collect_lines(stream: IO[str], lines: list[str], mark: str | None = None,
                  seen=None) -> None:
    """Reader thread: keep every line the process prints; set `seen` when `mark` appears and
    at EOF. It owns the stream: closing it from another thread could block on the reader."""
    try:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if mark is not None and mark in line and seen is not None:
                seen.set()
    except (OSError, ValueError):
        pass
    finally:
        stream.close()
        if seen is not None:
            seen.set()


class ProcessDevice:
    """A context manager around one device process that always ends it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []
        self._serials: list[serial.SerialBase] = []
        self._finalizer: weakref.finalize | None = None

    # -- what a subclass provides --------------------------------------------------------------

    @property
    def label(self) -> str:
        """How messages name this device, e.g. 'QEMU running tag_collar_q16.elf'."""
        raise NotImplementedError

    def start(self) -> ProcessDevice:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _end(self, timeout: float) -> None:
        if self._proc is not None:
            end_process(self._proc, timeout)

    # -- lifecycle -------------------------------------------------------------------------------

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Close ports opened by `open` and end the process. Idempotent."""
        for port in self._serials:
            port.close()
        self._serials.clear()
        self._end(timeout)
        if self._finalizer is not None:
            self._finalizer.detach()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit by itself (e.g. a semihosting exit); its status."""
        proc = self._require_started()
        timeout = self.timeout if timeout is None else timeout
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise DeviceTimeoutError(f"{self.label} did not exit within {timeout} s") from exc

    def __enter__(self) -> ProcessDevice:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def open(self, timeout: float = 2.0) -> serial.SerialBase:
        """Open the device's port (this boots it); every read times out after `timeout` s.
        The port is closed by stop()."""
        self.check_alive()
        try:
            port = serial.serial_for_url(self.url, timeout=timeout)
        except serial.SerialException as exc:
            raise EmulatorError(f"cannot open {self.url} of {self.label}: {exc}\n"
                                f"{self.stderr}") from exc
        self._serials.append(port)
        return port

    # -- state -----------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit status (negative: killed by that signal), None while it runs."""
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def stderr(self) -> str:
        """Everything the process printed on stderr so far."""
        return "\n".join(self._stderr)

    def check_alive(self) -> None:
        """Raise EmulatorError, quoting the process's stderr, if it has ended or is frozen."""
        proc = self._require_started()
        if proc.poll() is not None:
            raise EmulatorError(f"{self.label} ended with status {proc.returncode}:\n"
                                f"{self.stderr}")
        if process_state(proc.pid) in ("T", "t"):
            raise EmulatorError(f"{self.label} (pid {proc.pid}) is stopped, not running: "
                                f"something sent it SIGSTOP or a debugger holds it; "
                                f"`kill -CONT {proc.pid}` resumes it")

    def _require_started(self) -> subprocess.Popen[str]:
        if self._proc is None:
            raise EmulatorError(f"{self.label} is not started: call start() or use `with`")
        return self._proc
