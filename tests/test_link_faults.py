"""fault://: a line that corrupts, drops, duplicates, bursts and cuts, on any backend.

Whatever the line does, a run must end (no hang) and every result it accepts must be the
integer reference's, bit for bit; results the line destroyed are counted as missed.
"""

from __future__ import annotations

import pytest
import serial

import harness.session  # noqa: F401  (registers the fault:// handler with pyserial)
from harness.run import RunOptions, faulty, run_on_device

EARTAG = pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
DATA = bytes(range(256)) * 8


def through(url: str, data: bytes = DATA) -> tuple[bytes, dict[str, int]]:
    """What comes back through a loop:// line wrapped in `url`'s faults."""
    port = serial.serial_for_url(url, timeout=0.05)
    try:
        back = b""
        for start in range(0, len(data), 1024):  # loop:// holds 4 KB: read as we write
            port.write(data[start:start + 1024])
            while chunk := port.read(4096):
                back += chunk
        return back, port.injected
    finally:
        port.close()


def test_a_clean_fault_url_changes_nothing():
    assert through("fault://loop://") == (DATA, {})


@pytest.mark.parametrize(("options", "check"), [
    ("corrupt=1&on=tx", lambda back, n: len(back) == n and all(
        bin(a ^ b).count("1") == 1 for a, b in zip(back, DATA, strict=True))),
    ("drop=1", lambda back, n: back == b""),
    ("duplicate=1&on=rx", lambda back, n: back == bytes(b for b in DATA for _ in (0, 1))),
    ("cut=1&on=tx", lambda back, n: back == b""),
    ("burst=0.01&seed=3", lambda back, n: len(back) == n and back != DATA),
])
def test_each_fault_does_what_it_says(options, check):
    back, injected = through(f"fault://loop://?{options}")
    assert check(back, len(DATA)), (options, back[:16])
    assert injected


def test_the_same_seed_damages_the_same_bytes():
    url = "fault://loop://?corrupt=0.05&drop=0.02&seed=7"
    first, second = through(url), through(url)
    assert first == second and first[0] != DATA
    assert through("fault://loop://?corrupt=0.05&drop=0.02&seed=8")[0] != first[0]


def test_rates_come_out_as_asked():
    _, injected = through("fault://loop://?corrupt=0.02&on=rx&seed=1", DATA * 20)
    assert 0.015 < injected["corrupt_rx"] / len(DATA * 20) < 0.025


@pytest.mark.parametrize(("url", "match"), [
    ("fault://loop://?corrupt=2", r"corrupt=2: 2\.0 is not a probability"),
    ("fault://loop://?flip=0.1", r"unknown option 'flip'"),
    ("fault://loop://?on=sideways", r"on=sideways"),
])
def test_a_bad_fault_url_says_what_is_wrong(url, match):
    with pytest.raises(serial.SerialException, match=match):
        serial.serial_for_url(url)


def test_faulty_wraps_only_when_asked():
    assert faulty("socket://127.0.0.1:9", None) == "socket://127.0.0.1:9"
    assert faulty("/dev/pts/3", "drop=0.1") == "fault:///dev/pts/3?drop=0.1"


LINES = {"corrupt_1_percent": "corrupt=0.01&seed=11",
         "drops_and_duplicates": "drop=0.002&duplicate=0.002&seed=12",
         "bursts_and_cuts": "burst=0.0005&cut=0.0002&seed=13"}


def _run_over(run_dir, backend: str, faults: str, tmp_path):
    return run_on_device(run_dir, RunOptions(target="eartag", backend=backend, max_windows=12,
                                             timeout=10, link_faults=faults,
                                             report=tmp_path / "report"))


def _accepted_only_exact_results(report) -> None:
    received = report.windows - report.missed_windows
    assert received > 0
    assert report.int_exact_fraction == 1.0, report.first_mismatch  # never a wrong result
    assert report.link["injected_faults"], "the line did nothing"
    if report.missed_windows:
        assert "missed_windows" in " ".join(report.failures)


@EARTAG
@pytest.mark.requires("gcc")
@pytest.mark.parametrize("faults", list(LINES.values()), ids=list(LINES))
def test_a_faulty_line_to_the_native_device(hil_run_dir, tmp_path, faults):
    _accepted_only_exact_results(_run_over(hil_run_dir, "native", faults, tmp_path))


@EARTAG
@pytest.mark.hil(backend="qemu")
def test_a_one_percent_corrupting_line_to_qemu(hil_run_dir, tmp_path):
    _accepted_only_exact_results(_run_over(hil_run_dir, "qemu", LINES["corrupt_1_percent"],
                                           tmp_path))
