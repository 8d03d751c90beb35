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

A device that is a launcher with children of its own (Renode's `renode` script runs Mono) gets
a watcher too (`watch_group`, kept in `_watcher`): the death signal reaches only the process it
was set on, so the watcher holds a pipe from the harness and kills the device's whole process
group when the pipe closes, which is when the harness ends for whatever reason or stops the
device. stop() and check_alive() then treat the group as the device.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import serial

from device_sim.errors import DeviceTimeoutError, EmulatorError
from device_sim.ports import open_port

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


def run_to_end(command: Sequence[str], timeout: float,
               **options: Any) -> subprocess.CompletedProcess[str]:
    """Run a short-lived tool (a flasher, labgrid-client) to its end in a session of its own
    (spawn), stdin closed; its result whatever its exit status. On a timeout
    (subprocess.TimeoutExpired) or any interruption the process is ended first."""
    proc = spawn(command, stdin=subprocess.DEVNULL, text=True, **options)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:  # TimeoutExpired, Ctrl-C: nothing left running
        end_process(proc)
        raise
    return subprocess.CompletedProcess(list(command), proc.returncode, out, err)


# The watcher of a process group: waits for end-of-file on stdin (the harness has ended or
# stopped the device), then kills the group. Ctrl-C in the terminal is the harness's business.
_GROUP_WATCHER = """\
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.stdin.buffer.read()
try:
    os.killpg(int(sys.argv[1]), signal.SIGKILL)
except ProcessLookupError:
    pass
"""


def watch_group(pgid: int) -> subprocess.Popen[bytes]:
    """Start the watcher that kills process group `pgid` once its stdin, a pipe only this
    process holds, is closed (by `end_group`, or by the kernel when this process dies)."""
    return subprocess.Popen([sys.executable, "-c", _GROUP_WATCHER, str(pgid)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def end_group(proc: subprocess.Popen[str], watcher: subprocess.Popen[bytes] | None,
              timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the group of `proc` (a session leader), wait, SIGKILL what is left: also the
    finalizer of a device that has a group watcher."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    if watcher is not None:
        with contextlib.suppress(OSError):
            watcher.stdin.close()  # type: ignore[union-attr]
        with contextlib.suppress(subprocess.TimeoutExpired):
            watcher.wait(timeout)


def group_members(pgid: int) -> dict[int, str]:
    """The live processes of group `pgid` and their one-letter states, from /proc."""
    members = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in "ZX":  # a zombie has ended
            members[int(stat.parent.name)] = fields[0]
    return members


def free_port() -> int:
    """A loopback port free right now. Another process may take it before the emulator binds
    it: the backends retry on a bind failure."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def collect_lines(stream: IO[str], lines: list[str], mark: str | tuple[str, ...] | None = None,
                  seen=None) -> None:
    """Reader thread: keep every line the process prints; set `seen` when `mark` (or one of
    them) appears and at EOF. It owns the stream: closing it from another thread could block
    on the reader."""
    marks = (mark,) if isinstance(mark, str) else mark or ()
    try:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if seen is not None and any(m in line for m in marks):
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
        self._watcher: subprocess.Popen[bytes] | None = None  # set for a device with children

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
        if self._proc is not None and self._watcher is not None:
            end_group(self._proc, self._watcher, timeout)
        elif self._proc is not None:
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
            port = open_port(self.url, timeout=timeout)
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
        states = (group_members(proc.pid) if self._watcher is not None
                  else {proc.pid: process_state(proc.pid)})
        for pid, state in states.items():
            if state in ("T", "t"):
                raise EmulatorError(f"{self.label} (pid {pid}) is stopped, not running: "
                                    f"something sent it SIGSTOP or a debugger holds it; "
                                    f"`kill -CONT {pid}` resumes it")

    def _require_started(self) -> subprocess.Popen[str]:
        if self._proc is None:
            raise EmulatorError(f"{self.label} is not started: call start() or use `with`")
        return self._proc
