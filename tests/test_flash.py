"""Flashing a board (device_sim/flash.py, `harness flash`, `harness run --flash`).

A physical tag cannot be flashed here. The end-to-end tests flash a bench board made of real
parts (tests/bench_board.py): Renode running the nRF52840 build that was flashed, behind a
pseudo-terminal that goes away while it is flashed, flashed by a command named in a hardware
map. pyOCD itself runs for real, and finds no probe.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bench_board import BenchBoard

from device_sim.boards import Board, load_hardware_map, wait_for_port
from device_sim.errors import (
    FlashError,
    FlashUnavailableError,
    HardwareMapError,
    PortNotFoundError,
)
from device_sim.flash import FlashMethod, flash_command, flash_method
from device_sim.targets import load_target
from harness.cli import main
from harness.errors import DeviceMismatchError
from harness.run import RunOptions, flash_board, run_on_device
from models.rundir import RunDirectory

pytest_plugins = ["pytester"]

EARTAG = pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
CROSS = pytest.mark.requires("arm-none-eabi-gcc", "newlib")
BENCH = pytest.mark.requires("arm-none-eabi-gcc", "newlib", "mono", "renode")
NRF52840 = load_target("eartag").platform_for("serial")


def write_map(path, **boards: dict[str, str]):
    lines = []
    for name, keys in boards.items():
        lines.append(f"[boards.{name}]")
        lines += [f"{key} = {value!r}" for key, value in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def bench(tmp_path):
    with BenchBoard(tmp_path / "board") as board:
        yield board


@pytest.fixture
def bench_map(tmp_path, bench):
    return write_map(tmp_path / "hardware.toml", bench={
        "target": "eartag", "port": bench.port, "flash": bench.flash_command()})


# --- end to end: flash, find the port again, HELLO with the run's hash --------------------------

@BENCH
@EARTAG
def test_harness_flash_flashes_the_board_and_checks_its_hello(hil_run_dir, bench, bench_map,
                                                               capsys):
    assert not os.path.exists(bench.port)  # nothing runs before the first flash
    code = main(["flash", str(hil_run_dir), "--target", "eartag", "--port", "bench",
                 "--hardware-map", str(bench_map)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert bench.flashed == ["tag_eartag_q16.elf"]
    model_hash = RunDirectory(hil_run_dir).model_sources("q16").manifest.model_hash
    assert model_hash in out and bench.port in out


@BENCH
@EARTAG
def test_run_with_flash_flashes_first_and_a_stale_board_is_refused(hil_run_dir, bench,
                                                                   bench_map, tmp_path):
    # The board runs the q8 build; a q16 run without --flash finds the wrong firmware ...
    flash_board(hil_run_dir, RunOptions(target="eartag", backend="serial", variant="q8",
                                        port="bench", hardware_map=bench_map))
    options = RunOptions(target="eartag", backend="serial", variant="q16", port="bench",
                         hardware_map=bench_map, max_windows=4, report=tmp_path / "report")
    with pytest.raises(DeviceMismatchError, match="--flash") as error:
        run_on_device(hil_run_dir, options)
    assert "variant 'q8' where the run needs 'q16'" in str(error.value)
    # ... and with --flash the run flashes q16, finds the port again and passes.
    report = run_on_device(hil_run_dir, RunOptions(**{**vars(options), "flash": True}))
    assert bench.flashed == ["tag_eartag_q8.elf", "tag_eartag_q16.elf"]
    assert report.passed and report.windows == 4 and report.missed_windows == 0
    assert report.device["model_variant"] == "q16"


@CROSS
@EARTAG
def test_a_failing_flasher_is_a_flash_failure_quoting_it(hil_run_dir, tmp_path):
    with BenchBoard(tmp_path / "board", refuse="no probe on the SWD header") as board:
        hardware = write_map(tmp_path / "hardware.toml", bench={
            "target": "eartag", "port": board.port, "flash": board.flash_command()})
        with pytest.raises(FlashError) as error:
            flash_board(hil_run_dir, RunOptions(target="eartag", backend="serial",
                                                port="bench", hardware_map=hardware))
    message = str(error.value)
    assert "flashing failed (board 'bench' of the hardware map)" in message
    assert "status 1" in message and "no probe on the SWD header" in message
    assert board.flashed == []


@CROSS
@EARTAG
def test_pyocd_without_its_probe_is_a_flash_failure_naming_the_probe(hil_run_dir, tmp_path):
    master, slave = os.openpty()
    try:
        hardware = write_map(tmp_path / "hardware.toml", dk={
            "target": "eartag", "port": os.ttyname(slave), "probe": "0badc0de"})
        with pytest.raises(FlashError) as error:  # the profile's pyocd, for real
            flash_board(hil_run_dir, RunOptions(target="eartag", backend="serial", port="dk",
                                                hardware_map=hardware))
    finally:
        os.close(master)
        os.close(slave)
    message = str(error.value)
    assert "platform nrf52840 of" in message and "-t nrf52840" in message
    assert "0badc0de" in message  # pyOCD's own words: no connected probe matches the id


@CROSS
@EARTAG
def test_flash_is_for_boards_and_a_board_of_another_target_is_refused(hil_run_dir, tmp_path):
    with pytest.raises(FlashUnavailableError, match="qemu"):
        run_on_device(hil_run_dir, RunOptions(target="eartag", backend="qemu", flash=True))
    hardware = write_map(tmp_path / "hardware.toml", tag={
        "target": "collar", "port": "/dev/null", "flash": "true {elf}"})
    with pytest.raises(HardwareMapError, match="'tag' of the hardware map is a collar"):
        flash_board(hil_run_dir, RunOptions(target="eartag", backend="serial", port="tag",
                                            hardware_map=hardware))


# --- how a board is flashed ----------------------------------------------------------------------

def test_the_board_says_how_it_is_flashed_before_its_platform():
    board = Board("tag-a", serial_number="000683512345", flash="nrfjprog --program {elf}")
    assert flash_method(NRF52840, board, "eartag.toml").how == "nrfjprog --program {elf}"
    assert flash_method(NRF52840, Board("tag-b", location="1-1"), "eartag.toml").how == "pyocd"
    collar = load_target("collar")
    with pytest.raises(FlashUnavailableError, match="mps2-an385") as error:
        flash_method(collar.platform_for("serial"), None, str(collar.source))
    assert "hardware map" in str(error.value)


def test_pyocd_is_told_the_target_pack_and_probe(tmp_path):
    elf = tmp_path / "tag.elf"
    board = Board("tag-a", serial_number="000683512345")
    assert board.probe_id == "683512345"  # a J-Link's id has no leading zeros
    method = FlashMethod("pyocd", "test", pyocd_target="cc2650f128", pyocd_pack="ti.pack")
    command = flash_command(method, elf, board, "tag-a")
    assert command[-8:] == ["-W", "-t", "cc2650f128", "--pack", "ti.pack", "-u", "683512345",
                            str(elf)]
    with pytest.raises(FlashUnavailableError, match="pyocd_target"):
        flash_command(FlashMethod("pyocd", "test"), elf, board, "tag-a")


@CROSS
@EARTAG
def test_a_flash_command_gets_the_firmware_in_the_form_it_names(hil_run_dir, tmp_path):
    from device_sim.backends import prepare_device

    model = RunDirectory(hil_run_dir).model_sources("q16")
    elf = prepare_device("serial", model, load_target("eartag"), tmp_path,
                         _port_options()).firmware.path
    board = Board("tag-a", serial_number="000683512345")
    method = FlashMethod("nrfjprog --program {hex} --snr {serial} --probe {probe}", "test")
    command = flash_command(method, elf, board, "tag-a")
    assert command[:2] == ["nrfjprog", "--program"]
    assert command[3:] == ["--snr", "000683512345", "--probe", "683512345"]
    assert command[2].endswith(".hex") and Path(command[2]).read_text().startswith(":")
    with pytest.raises(FlashError, match=r"\['image'\]"):
        flash_command(FlashMethod("cp {image} /media/MPS2", "test"), elf, board, "tag-a")
    with pytest.raises(FlashError, match="serial_number"):
        flash_command(FlashMethod("tool {serial}", "test"), elf, None, "/dev/ttyACM0")


def _port_options():
    from device_sim.backends import DeviceOptions

    return DeviceOptions(port="/dev/null")


def test_a_port_path_that_is_not_there_is_waited_for_then_refused(tmp_path):
    link = tmp_path / "ttyTAG"
    hardware = load_hardware_map(write_map(tmp_path / "hardware.toml",
                                           tag={"target": "eartag", "port": str(link)}))
    with pytest.raises(PortNotFoundError, match="does not exist"):
        wait_for_port("tag", 0.3, hardware, ports=list)
    link.symlink_to("/dev/null")
    assert wait_for_port("tag", 0.3, hardware, ports=list) == str(link)


# --- the pytest plugin: --hil-flash on a board of --hil-hardware-map ---------------------------

BOARD_TEST = """
import numpy as np
import pytest

@pytest.mark.hil
def test_the_flashed_board_answers(dut, hil_target):
    assert dut.info.target == hil_target.name
    results = dut.session.stream(np.zeros((hil_target.window, 3), dtype=np.int16))
    assert [r.index for r in results] == [0]
"""


@BENCH
@EARTAG
def test_the_plugin_flashes_the_board_of_its_hardware_map(pytester, hil_run_dir, bench,
                                                          bench_map):
    pytester.makepyfile(BOARD_TEST)
    result = pytester.runpytest_subprocess(
        "-m", "hil", "--hil-target", "eartag", "--hil-backend", "serial",
        "--hil-port", "bench", "--hil-hardware-map", str(bench_map), "--hil-flash",
        "--hil-run-dir", str(hil_run_dir))
    result.assert_outcomes(passed=1)
    assert bench.flashed == ["tag_eartag_q16.elf"]
