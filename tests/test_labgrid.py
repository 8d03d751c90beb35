"""The labgrid backend against a real labgrid: a coordinator and an exporter on loopback.

The exported tag is the host-native firmware on its pseudo-terminal, exported as a
RawSerialPort: the exporter serves it with ser2net over RFC 2217 once the place is acquired,
and ser2net's open flushes the terminal, which boots the device (device_sim/backends/native.py)
as pyserial's open does locally. `harness run --backend labgrid --place tag` then goes through
the place, and the place is released after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_sim.appbuild import build_native
from device_sim.backends import DeviceOptions, prepare_device
from device_sim.backends.labgrid_place import LabgridDevice, labgrid_client
from device_sim.backends.native import NativeDevice
from device_sim.process import end_group, free_port, spawn
from harness.assertions import assert_int_exact, assert_no_missed_windows
from harness.errors import PlaceBusyError, PlaceError, PlaceNotFoundError
from harness.run import RunOptions, run_on_device
from models.rundir import RunDirectory

pytestmark = [pytest.mark.hil(backend="labgrid"), pytest.mark.requires("ser2net", "gcc")]
COLLAR = pytest.mark.parametrize("hil_target", ["collar"], indirect=True, scope="session")
READY_S = 30.0  # longest wait for the coordinator or the exporter to be up
PLACE = "tag"


def tool(name: str) -> str:
    """A labgrid program of this Python's environment (labgrid is a dependency)."""
    return str(Path(sys.executable).with_name(name))


def poll(what: str, ready, proc: subprocess.Popen[str]) -> None:
    """Until `ready()`: fails if `proc` exits or READY_S passes. Not a sleep: each call of
    `ready` is a labgrid-client round trip."""
    deadline = time.monotonic() + READY_S
    while not ready():
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{what} not ready within {READY_S:g} s"


def client(coordinator: str, *args: str, place: str | None = PLACE,
           user: str | None = None) -> subprocess.CompletedProcess[str]:
    env = None if user is None else os.environ | {"LG_USERNAME": user}
    return labgrid_client(coordinator, place, *args, timeout=READY_S, env=env)


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory) -> Iterator[str]:
    """A labgrid coordinator on a free loopback port, in a folder of its own (it keeps its
    places there); ended at teardown."""
    folder = tmp_path_factory.mktemp("coordinator")
    address = f"127.0.0.1:{free_port()}"
    proc = spawn([tool("labgrid-coordinator"),
                  "-l", address], cwd=folder, stdout=(folder / "log").open("w"),
                 stderr=subprocess.STDOUT, text=True)
    try:
        poll("labgrid-coordinator", lambda: client(address, "places", place=None).returncode == 0,
             proc)
        yield address
    finally:
        end_group(proc, None)


@pytest.fixture(scope="module")
def place(coordinator: str, hil_run_dir: Path, tmp_path_factory) -> Iterator[str]:
    """The host-native tag, exported by a real labgrid-exporter as RawSerialPort, matched by
    place PLACE. The device, the exporter and its ser2net are ended at teardown."""
    from device_sim.targets import load_target

    folder = tmp_path_factory.mktemp("exporter")
    target = load_target("collar")
    executable = build_native(RunDirectory(hil_run_dir).model_sources("q16"), target,
                              folder / "build")
    with NativeDevice(executable, target) as device:
        config = folder / "exporter.yaml"
        config.write_text(f"tag:\n  RawSerialPort:\n    port: {device.url}\n"
                          f"    speed: {target.platform_for('serial').uart_baud}\n")
        proc = spawn([tool("labgrid-exporter"),
                      "-c", coordinator, "-n", "farm", "--hostname", "127.0.0.1", str(config)],
                     cwd=folder, stdout=(folder / "log").open("w"), stderr=subprocess.STDOUT,
                     text=True)
        try:
            poll("labgrid-exporter", lambda: "farm/tag/NetworkSerialPort" in client(
                coordinator, "resources", place=None).stdout, proc)
            for step in (["create"], ["add-match", "farm/tag/NetworkSerialPort"]):
                result = client(coordinator, *step)
                assert result.returncode == 0, result.stderr
            yield PLACE
        finally:
            end_group(proc, None)  # the exporter and the ser2net it started


def holder(coordinator: str, place: str) -> str:
    """Who holds `place`, as `labgrid-client show` says ("None" when nobody does)."""
    shown = client(coordinator, "show", place=place)
    assert shown.returncode == 0, shown.stderr
    return next(line.split(":", 1)[1].strip() for line in shown.stdout.splitlines()
                if line.strip().startswith("acquired:"))


@COLLAR
def test_a_run_through_a_labgrid_place(coordinator, place, hil_target, hil_run_dir, tmp_path):
    report = run_on_device(hil_run_dir, RunOptions(
        target=hil_target.name, backend="labgrid", place=place, coordinator=coordinator,
        max_windows=6, report=tmp_path / "report"))
    assert report.passed
    assert report.windows == 6
    assert_int_exact(report)
    assert_no_missed_windows(report)
    assert report.backend == "labgrid"
    assert (tmp_path / "report" / "report.json").is_file()
    assert holder(coordinator, place) == "None"  # released after the run


@COLLAR
def test_a_place_held_by_someone_else_is_busy(coordinator, place, monkeypatch):
    monkeypatch.setenv("LG_COORDINATOR", coordinator)  # the default coordinator, as labgrid's
    taken = client(coordinator, "acquire", user="shepherd")
    assert taken.returncode == 0, taken.stderr
    try:
        with pytest.raises(PlaceBusyError, match=r"held by \S+/shepherd"):
            LabgridDevice(place).start()
        assert holder(coordinator, place).endswith("/shepherd")  # not released by the refusal
    finally:
        assert client(coordinator, "release", user="shepherd").returncode == 0


@COLLAR
def test_a_place_this_user_holds_is_used_and_left_held(coordinator, place):
    assert client(coordinator, "acquire").returncode == 0
    try:
        with LabgridDevice(place, coordinator) as device:
            assert device.url.startswith("rfc2217://127.0.0.1:")
        assert holder(coordinator, place) != "None"  # not ours to release
    finally:
        assert client(coordinator, "release").returncode == 0


@COLLAR
def test_an_unknown_place_is_named_with_those_there_are(coordinator, place):
    with pytest.raises(PlaceNotFoundError, match=r"no place 'paddock'; it has: tag"):
        LabgridDevice("paddock", coordinator).start()


@COLLAR
def test_the_labgrid_backend_needs_a_place(hil_run_dir, hil_target, tmp_path):
    model = RunDirectory(hil_run_dir).model_sources("q16")
    with pytest.raises(PlaceError, match="needs a place"):  # before anything is built
        prepare_device("labgrid", model, hil_target, tmp_path, DeviceOptions())
    assert not any(tmp_path.iterdir())
