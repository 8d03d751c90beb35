"""Runs in parallel, timeouts that fit the platform, and retries of infrastructure failures only.

No test sleeps or asserts on wall-clock time: a device that never answers is a real silent
port, and every wait is bounded by a timeout.
"""

from __future__ import annotations

import json
import os

import pytest
import serial

from device_sim.errors import (
    DeviceTimeoutError,
    EmulatorError,
    PortNotFoundError,
    TargetProfileError,
    ToolchainError,
)
from device_sim.protocol import DeviceError, ProtocolError
from device_sim.targets import load_target
from harness.agreement import RunReport, format_report
from harness.cli import main
from harness.errors import (
    DeviceMismatchError,
    NoHelloError,
    PortUnavailableError,
    RunDirectoryError,
    ThresholdError,
)
from harness.run import RunOptions, is_infrastructure_failure, run_on_device

EARTAG = pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")


# --- timeouts -----------------------------------------------------------------------------

def test_each_backend_has_its_timeouts_and_an_unknown_one_the_default():
    eartag = load_target("eartag")
    native, qemu, renode = (eartag.timeouts_for(b) for b in ("native", "qemu", "renode"))
    assert native.start < qemu.start < renode.start  # emulators start slower, Renode slowest
    assert eartag.timeouts_for("a-new-backend") == eartag.timeouts["default"]
    assert eartag.timeouts_for("qemu", timeout=3.0) == type(qemu)(3.0, 3.0)
    doubled = eartag.timeouts_for("renode", multiplier=2.0)
    assert (doubled.start, doubled.reply) == (2 * renode.start, 2 * renode.reply)


def test_a_profile_without_default_timeouts_is_refused(tmp_path, monkeypatch):
    from device_sim import targets

    common = targets.COMMON_PROFILE.read_text().replace("default = {", "fallback = {")
    for path in targets.PROFILE_DIR.glob("*.toml"):
        (tmp_path / path.name).write_text(common if path == targets.COMMON_PROFILE
                                          else path.read_text())
    monkeypatch.setattr(targets, "PROFILE_DIR", tmp_path)
    monkeypatch.setattr(targets, "COMMON_PROFILE", tmp_path / "common.toml")
    with pytest.raises(TargetProfileError, match=r"no \[timeouts\.default\]"):
        targets.load_target("eartag")


# --- which failures are retried -----------------------------------------------------------

@pytest.mark.parametrize("error", [
    EmulatorError("QEMU exited at start"), NoHelloError("no HELLO"),
    PortNotFoundError("no board"), PortUnavailableError("cannot open"),
    serial.SerialException("could not open port"),
])
def test_infrastructure_failures_are_retried(error):
    assert is_infrastructure_failure(error)


@pytest.mark.parametrize("error", [
    DeviceMismatchError("other firmware"), DeviceError("hard fault"),
    ProtocolError("bad frame"), DeviceTimeoutError("no answer while streaming"),
    ThresholdError("unknown threshold"), RunDirectoryError("stale"),
    ToolchainError("gcc failed"), ValueError("a bug"),
])
def test_nothing_else_is_retried(error):
    assert not is_infrastructure_failure(error)


@pytest.mark.requires("arm-none-eabi-gcc", "newlib")  # the serial backend builds its ELF
@EARTAG
def test_a_device_that_never_says_hello_is_tried_n_plus_one_times(run_copy, tmp_path):
    """A real silent port: a pseudo-terminal nobody writes to, as a board that never boots."""
    master, slave = os.openpty()
    try:
        options = RunOptions(target="eartag", backend="serial", port=os.ttyname(slave),
                             max_windows=2, timeout=0.5, retries=2, report=tmp_path / "report")
        with pytest.warns(UserWarning, match=r"attempt [12] of 3 failed"), \
                pytest.raises(NoHelloError, match="HELLO") as raised:
            run_on_device(run_copy, options)
    finally:
        os.close(master)
        os.close(slave)
    attempts = json.loads((tmp_path / "report" / "attempts.json").read_text())["attempts"]
    assert [a["error"] for a in attempts] == ["NoHelloError"] * 3
    assert "within 0.5 s" in attempts[0]["message"]
    assert "3 attempts failed" in " ".join(raised.value.__notes__)
    assert not (tmp_path / "report" / "report.json").exists()


@pytest.mark.requires("gcc")
@EARTAG
def test_a_failed_agreement_check_is_not_retried(run_copy, tmp_path):
    report = run_on_device(run_copy, RunOptions(
        target="eartag", backend="native", max_windows=2, retries=3,
        overrides={"min_float_top1_agreement_q16": 1.5}, report=tmp_path / "report"))
    assert not report.passed and any("agreement" in f for f in report.failures)
    assert report.attempts == []
    assert RunReport.read(tmp_path / "report" / "report.json").attempts == []
    assert "retried" not in format_report(report)
    # What a report says when there were retries, as format_report prints it.
    report.attempts = [{"error": "EmulatorError", "message": "QEMU exited at start\n..."}]
    assert "retried: 1 attempt(s) failed before this one (EmulatorError: QEMU exited at " \
           "start)" in format_report(report)


# --- several jobs at once ---------------------------------------------------------------

@pytest.mark.requires("arm-none-eabi-gcc", "newlib", "qemu-system-arm")
@EARTAG
def test_two_emulated_tags_run_at_once(run_copy, capsys):
    status = main(["run", str(run_copy), "--backend", "qemu", "--variant", "q16,q8",
                   "--jobs", "2", "--max-windows", "3", "--retries", "1"])
    out = capsys.readouterr().out
    assert status == 0, out
    reports = [RunReport.read(run_copy / "reports" / f"eartag-qemu-{v}" / "report.json")
               for v in ("q16", "q8")]
    assert [r.variant for r in reports] == ["q16", "q8"]
    assert all(r.passed and r.windows == 3 for r in reports)
    assert reports[0].device["url"] != reports[1].device["url"]  # two QEMUs, two ports
    assert reports[0].device["artefact"] != reports[1].device["artefact"]
    summary = out.split("=== summary")[1].splitlines()
    assert sum("passed" in line for line in summary) == 2


@EARTAG
def test_two_jobs_that_would_write_one_folder_are_refused(run_copy, tmp_path, capsys):
    status = main(["run", str(run_copy), str(run_copy), "--backend", "native",
                   "--jobs", "2"])
    assert status == 2
    assert "would both write" in capsys.readouterr().err
    status = main(["run", str(run_copy), "--variant", "q16,q8", "--report",
                   str(tmp_path / "one")])
    assert status == 2
    assert "would both write" in capsys.readouterr().err


def test_several_targets_and_variants_are_checked_by_name(capsys):
    with pytest.raises(SystemExit):
        main(["run", "x", "--target", "eartag,smartwatch"])
    assert "invalid choice: 'smartwatch'" in capsys.readouterr().err
