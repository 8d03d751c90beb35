"""No device process outlives the harness, whatever ends it, and a frozen one is reported.

Each test starts the harness as a user would (`harness run`, `harness targets`, a pytest
session) in a child process, waits until its device process exists, signals the harness and
checks that the device is gone. Waits poll a condition against a deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device_sim.process import process_state
from harness.errors import EmulatorError

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")

DEADLINE_S = 90.0  # a firmware build and a device start, on a busy 2-core machine
POLL_S = 0.05
ON_QEMU = pytest.mark.hil(backend="qemu")
NATIVE = pytest.mark.requires("gcc")


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in "ZX":
            found.append((int(stat.parent.name), cmdline))
    return found


def wait_for_device(harness: subprocess.Popen, marker: str) -> int:
    """The pid of the harness's child whose command line holds `marker`, once it runs."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if harness.poll() is not None:
            raise AssertionError(f"the harness ended first: {harness.communicate()}")
        for pid, cmdline in children(harness.pid):
            if marker in cmdline:
                return pid
        time.sleep(POLL_S)  # polling a condition with a deadline
    raise AssertionError(f"no device process {marker!r} within {DEADLINE_S} s")


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
BACKENDS = [pytest.param("qemu", "qemu-system-arm", marks=ON_QEMU, id="qemu"),
            pytest.param("native", "_native", marks=NATIVE, id="native")]


@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
@pytest.mark.parametrize(("backend", "marker"), BACKENDS)
@pytest.mark.parametrize("signum", SIGNALS, ids=[s.name for s in SIGNALS])
def test_harness_run_takes_its_device_with_it(repository, hil_run_dir, tmp_path, backend,
                                              marker, signum):
    run = harness(repository, "run", str(hil_run_dir), "--target", "eartag", "--backend",
                  backend, "--realtime", "--report", str(tmp_path))
    try:
        device = wait_for_device(run, marker)
        os.kill(run.pid, signum)
        status = run.wait(timeout=DEADLINE_S)
        assert gone(device), f"{backend} device {device} outlived `harness run` ({signum.name})"
    finally:
        run.kill()
        run.communicate()
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


@ON_QEMU
@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
def test_a_killed_pytest_session_takes_its_device_with_it(repository, hil_run_dir, tmp_path):
    (tmp_path / "test_victim.py").write_text(VICTIM)
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         f"--rootdir={tmp_path}", "--hil-target", "eartag", "--hil-backend", "qemu",
         "--hil-run-dir", str(hil_run_dir), str(tmp_path / "test_victim.py")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        device = wait_for_device(session, "qemu-system-arm")
        os.kill(session.pid, signal.SIGKILL)
        session.wait(timeout=DEADLINE_S)
        assert gone(device), "QEMU outlived a killed pytest session"
    finally:
        session.kill()
        session.communicate()


@pytest.mark.hil
@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
def test_a_frozen_device_is_a_clear_error_when_the_read_times_out(dut):
    dut.session.timeout = 1.0
    os.kill(dut.device.pid, signal.SIGSTOP)
    try:
        with pytest.raises(EmulatorError, match=r"is stopped, not running.*kill -CONT"):
            dut.session.ping()
    finally:
        os.kill(dut.device.pid, signal.SIGCONT)
