"""No device process outlives the harness, whatever ends it, and a frozen one is reported.

Each test starts the harness as a user would (`harness run`, `harness targets`, a pytest
session) in a child process, waits until its device process exists, signals the harness and
checks that the device is gone. Waits poll a condition against a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device_sim.process import group_members, process_state
from harness.errors import EmulatorError

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")

DEADLINE_S = 90.0  # a firmware build and a device start, on a busy 2-core machine
POLL_S = 0.05
ON_QEMU = pytest.mark.hil(backend="qemu")
ON_RENODE = pytest.mark.hil(backend="renode")
NATIVE = pytest.mark.requires("gcc")


def runs(pid: int, program: str) -> bool:
    """Whether process `pid` runs `program`: its file name (or a script's, after bash or mono)
    ends with it. The compiler building the device is not the device."""
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    names = [Path(arg.decode()).name for arg in argv[:2] if arg]
    return any(name.endswith(program) for name in names)


def children(pid: int) -> list[int]:
    """Every live process whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in "ZX":
            found.append(int(stat.parent.name))
    return found


def wait_for_device(harness: subprocess.Popen, program: str) -> int:
    """The pid of the harness's child running `program`, once it runs."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if harness.poll() is not None:
            raise AssertionError(f"the harness ended first: {harness.communicate()}")
        for pid in children(harness.pid):
            if runs(pid, program):
                return pid
        time.sleep(POLL_S)  # polling a condition with a deadline
    raise AssertionError(f"no device process {program!r} within {DEADLINE_S} s")


def wait_for_member(pgid: int, program: str) -> int:
    """The pid of the process of group `pgid` running `program` (Renode's Mono under its
    launcher script; the device itself for the others), once it runs."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        for pid in group_members(pgid):
            if runs(pid, program):
                return pid
        time.sleep(POLL_S)  # polling a condition with a deadline
    raise AssertionError(f"no process {program!r} in group {pgid} within {DEADLINE_S} s")


def gone(pid: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process_state(pid) in (None, "Z", "X"):
            return True
        time.sleep(POLL_S)
    return False


def harness(repository: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], cwd=repository,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
# How `harness run` ends: each signal, and SIGKILL while its device is frozen.
ENDINGS = [(signum, False) for signum in SIGNALS] + [(signal.SIGKILL, True)]
# (backend, the harness's child, the process that emulates, in the child's process group)
BACKENDS = [pytest.param("qemu", "qemu-system-arm", "qemu-system-arm", marks=ON_QEMU, id="qemu"),
            pytest.param("native", "_native", "_native", marks=NATIVE, id="native"),
            pytest.param("renode", "renode", "Renode.exe", marks=ON_RENODE, id="renode")]
EMULATORS = [p for p in BACKENDS if p.id != "native"]


@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
@pytest.mark.parametrize(("backend", "marker", "emulator"), BACKENDS)
@pytest.mark.parametrize(("signum", "frozen"), ENDINGS,
                         ids=[f"{s.name}{'-frozen' if f else ''}" for s, f in ENDINGS])
def test_harness_run_takes_its_device_with_it(repository, hil_run_dir, tmp_path, backend,
                                              marker, emulator, signum, frozen):
    """A frozen device (SIGSTOP) reads nothing, so only a signal from outside can end it: the
    death signal, or for Renode (whose monitor would also quit on end-of-file) the group's
    watcher."""
    run = harness(repository, "run", str(hil_run_dir), "--target", "eartag", "--backend",
                  backend, "--realtime", "--report", str(tmp_path))
    device = None
    try:
        device = wait_for_member(wait_for_device(run, marker), emulator)
        if frozen:
            os.kill(device, signal.SIGSTOP)
        os.kill(run.pid, signum)
        status = run.wait(timeout=DEADLINE_S)
        assert gone(device), (f"{'a frozen ' if frozen else ''}{backend} device {device} "
                              f"outlived `harness run` ({signum.name})")
    finally:
        run.kill()
        run.communicate()
        if device is not None:
            with contextlib.suppress(ProcessLookupError):  # a device that outlived the test
                os.kill(device, signal.SIGKILL)
    assert status == {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}[signum]
    assert not (tmp_path / "report.json").exists()  # an interrupted run reports nothing


@ON_QEMU
@NATIVE
@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
def test_harness_targets_takes_its_devices_with_it(repository, hil_run_dir, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(hil_run_dir, run_dir)  # `harness targets` writes into it
    table = harness(repository, "targets", str(run_dir), "--variants", "q16",
                    "--max-windows", "100000")
    try:
        device = wait_for_device(table, "_native")
        os.kill(table.pid, signal.SIGKILL)
        table.wait(timeout=DEADLINE_S)
        assert gone(device)
    finally:
        table.kill()
        table.communicate()


VICTIM = """
import time

def test_holds_a_device(dut):
    print("device up", flush=True)
    time.sleep(600)  # the outer test kills this session long before
"""


@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
@pytest.mark.parametrize(("backend", "marker", "emulator"), EMULATORS)
def test_a_killed_pytest_session_takes_its_device_with_it(repository, hil_run_dir, tmp_path,
                                                          backend, marker, emulator):
    (tmp_path / "test_victim.py").write_text(VICTIM)
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         f"--rootdir={tmp_path}", "--hil-target", "eartag", "--hil-backend", backend,
         "--hil-run-dir", str(hil_run_dir), str(tmp_path / "test_victim.py")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        device = wait_for_member(wait_for_device(session, marker), emulator)
        os.kill(session.pid, signal.SIGKILL)
        session.wait(timeout=DEADLINE_S)
        assert gone(device), f"{backend} outlived a killed pytest session"
    finally:
        session.kill()
        session.communicate()


@pytest.mark.hil
@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
def test_a_frozen_device_is_a_clear_error_when_the_read_times_out(dut):
    dut.session.timeout = 1.0
    os.killpg(dut.device.pid, signal.SIGSTOP)  # the device's group: Renode's Mono too
    try:
        with pytest.raises(EmulatorError, match=r"is stopped, not running.*kill -CONT"):
            dut.session.ping()
    finally:
        os.killpg(dut.device.pid, signal.SIGCONT)
