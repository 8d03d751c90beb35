"""The labgrid backend against a real labgrid: a coordinator and an exporter on loopback.

The exported tag is the host-native firmware on its pseudo-terminal, exported as a
RawSerialPort: the exporter serves it with ser2net over RFC 2217 once the place is acquired,
and ser2net's open flushes the terminal, which boots the device (device_sim/backends/native.py)
as pyserial's open does locally. `harness run --backend labgrid --place tag` then goes through
the place, and the place is released after it.
"""

from __future__ import annotations

import json
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
from harness.cli import main
from harness.errors import (
    FlashError,
    FlashUnavailableError,
    PlaceBusyError,
    PlaceError,
    PlaceNotFoundError,
)
from harness.run import RunOptions, run_on_device
from models.rundir import RunDirectory

pytest_plugins = ["pytester"]
pytestmark = [pytest.mark.hil(backend="labgrid"), pytest.mark.requires("ser2net", "gcc")]
COLLAR = pytest.mark.parametrize("hil_target", ["collar"], indirect=True, scope="session")
READY_S = 30.0  # longest wait for the coordinator or the exporter to be up
PLACE = "tag"


def tool(name: str) -> str:
    """A labgrid program of this Python's environment (labgrid is a dependency)."""
    return str(Path(sys.executable).with_name(name))


def poll(what: str, ready, proc: subprocess.Popen[str] | None) -> None:
    """Until `ready()`: fails if `proc` exits or READY_S passes. Not a sleep: each call of
    `ready` is a labgrid-client round trip."""
    deadline = time.monotonic() + READY_S
    while not ready():
        assert proc is None or proc.poll() is None, f"{what} exited with {proc.returncode}"
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
def native_tag(hil_run_dir: Path, tmp_path_factory) -> Path:
    """The host-native firmware of the run's q16 model for the collar."""
    from device_sim.targets import load_target

    return build_native(RunDirectory(hil_run_dir).model_sources("q16"), load_target("collar"),
                        tmp_path_factory.mktemp("native"))


@pytest.fixture(scope="module")
def farm_place(coordinator: str) -> str:
    """Place PLACE, matching the serial port that exporter `farm` publishes for group `tag`
    (whichever exporter process that is: the match is by name)."""
    for step in (["create"], ["add-match", "farm/tag/NetworkSerialPort"]):
        result = client(coordinator, *step)
        assert result.returncode == 0, result.stderr
    return PLACE


@pytest.fixture
def place(coordinator: str, farm_place: str, native_tag: Path, tmp_path) -> Iterator[str]:
    """A freshly booting host-native tag on its pseudo-terminal, exported as RawSerialPort by
    a real labgrid-exporter, behind `farm_place`. Fresh for every test, so that none sees
    another's exporter or link state (a second run on one tag: test_two_runs_...). The device, the
    exporter and its ser2net are ended at teardown, and the coordinator has forgotten the
    resource before the next test's exporter publishes it again."""
    from device_sim.targets import load_target

    target = load_target("collar")
    resources = "farm/tag/NetworkSerialPort"
    with NativeDevice(native_tag, target) as device:
        config = tmp_path / "exporter.yaml"
        config.write_text(f"tag:\n  RawSerialPort:\n    port: {device.url}\n"
                          f"    speed: {target.platform_for('serial').uart_baud}\n")
        proc = spawn([tool("labgrid-exporter"),
                      "-c", coordinator, "-n", "farm", "--hostname", "127.0.0.1", str(config)],
                     cwd=tmp_path, stdout=(tmp_path / "exporter.log").open("w"),
                     stderr=subprocess.STDOUT, text=True)
        try:
            poll("labgrid-exporter", lambda: resources in client(
                coordinator, "resources", place=None).stdout, proc)
            yield farm_place
        finally:
            end_group(proc, None)  # the exporter and the ser2net it started
            poll("the coordinator forgetting the exporter", lambda: resources not in client(
                coordinator, "resources", place=None).stdout, None)


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
def test_two_runs_through_a_place_need_no_reset_of_the_tag(coordinator, place, hil_run_dir,
                                                           tmp_path):
    options = RunOptions(target="collar", backend="labgrid", place=place,
                         coordinator=coordinator, max_windows=3, report=tmp_path / "first")
    first = run_on_device(hil_run_dir, options)
    second = run_on_device(hil_run_dir, RunOptions(**{**vars(options),
                                                      "report": tmp_path / "second"}))
    assert first.passed and second.passed and second.windows == 3
    assert first.link["hello_requests"] == 0  # the fresh tag announced itself
    assert second.link["hello_requests"] >= 1  # the quiet one was asked
    assert holder(coordinator, place) == "None"


@COLLAR
def test_harness_run_through_a_place(coordinator, place, hil_run_dir, tmp_path, capsys):
    status = main(["run", str(hil_run_dir), "--target", "collar", "--backend", "labgrid",
                   "--place", place, "--coordinator", coordinator, "--max-windows", "4",
                   "--report", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0, out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] and report["windows"] == 4 and report["backend"] == "labgrid"
    assert holder(coordinator, place) == "None"


@COLLAR
def test_ctrl_c_during_a_run_releases_the_place(coordinator, place, hil_run_dir, tmp_path):
    def interrupt(result):
        assert holder(coordinator, place) != "None"  # held while it streams
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_on_device(hil_run_dir, RunOptions(target="collar", backend="labgrid", place=place,
                                              coordinator=coordinator, max_windows=4,
                                              report=tmp_path), progress=interrupt)
    assert holder(coordinator, place) == "None"
    assert not (tmp_path / "report.json").exists()


@COLLAR
def test_the_pytest_plugin_runs_through_a_place(pytester, coordinator, place, hil_run_dir):
    pytester.makepyfile("""
        from harness.assertions import assert_int_exact

        def test_on_the_shared_tag(dut):
            assert dut.device.place == "tag"
            assert dut.device.url.startswith("rfc2217://127.0.0.1:")

        def test_run_on_the_shared_tag(hil_run):
            assert_int_exact(hil_run("q16", max_windows=3))
    """)
    # The coordinator from labgrid's own pytest option; the place from the plugin's.
    result = pytester.runpytest_subprocess(
        "--hil-target", "collar", "--hil-backend", "labgrid", "--hil-place", place,
        "--lg-coordinator", coordinator, "--hil-run-dir", str(hil_run_dir))
    result.assert_outcomes(passed=2)
    assert holder(coordinator, place) == "None"


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


@COLLAR
def test_a_place_that_cannot_flash_is_a_flash_failure_and_is_released(coordinator, place,
                                                                      hil_run_dir, tmp_path):
    options = RunOptions(target="collar", backend="labgrid", place=place,
                         coordinator=coordinator, flash=True, max_windows=2,
                         report=tmp_path / "report")
    with pytest.raises(FlashUnavailableError, match="--lg-env"):
        run_on_device(hil_run_dir, options)
    # An environment whose place has no bootstrap driver: labgrid-client itself refuses.
    env = tmp_path / "env.yaml"
    env.write_text(f"targets:\n  main:\n    resources:\n      RemotePlace:\n"
                   f"        name: {place}\n")
    with pytest.raises(FlashError, match=r"flashing failed \(labgrid place 'tag'") as error:
        run_on_device(hil_run_dir, RunOptions(**{**vars(options), "lg_env": env}))
    assert "bootstrap" in str(error.value)
    assert holder(coordinator, place) == "None"  # released after the failed flash
