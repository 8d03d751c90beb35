"""Boards found by identity (device_sim/boards.py): ports by serial number or location, boards of
a hardware map, a board found again after it re-enumerates, and `harness ports`.

The port lists are records of what pyserial's list_ports gives: this machine has no USB boards,
and resolving is a function of that list.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from device_sim.backends import DeviceOptions, Firmware
from device_sim.backends.serial_port import BACKEND as SERIAL
from device_sim.boards import PortInfo, load_hardware_map, resolve_port, wait_for_port
from device_sim.errors import AmbiguousPortError, HardwareMapError, PortNotFoundError
from device_sim.targets import load_target

DK = PortInfo("/dev/ttyACM0", 0x1366, 0x1015, "000683512345", "1-1.2:1.0", "J-Link - CDC")
OTHER = PortInfo("/dev/ttyACM1", 0x1366, 0x1015, "000683599999", "1-1.3:1.0", "J-Link - CDC")
TWIN = PortInfo("/dev/ttyACM2", 0x1366, 0x1015, "000683512345", "1-1.4:1.0", "J-Link - CDC")

MAP = """\
[boards.tag-a]
target = "eartag"
serial_number = "000683512345"
flash = "pyocd"

[boards.tag-b]
target = "eartag"
location = "1-1.3:1.0"
"""


def test_a_port_is_found_by_serial_number_or_location_and_a_path_is_kept():
    assert resolve_port("serial-number:000683599999", ports=[DK, OTHER]) == "/dev/ttyACM1"
    assert resolve_port("location:1-1.2:1.0", ports=[DK, OTHER]) == "/dev/ttyACM0"
    assert resolve_port("/dev/ttyUSB3", ports=[]) == "/dev/ttyUSB3"
    assert resolve_port("socket://127.0.0.1:4000", ports=[DK]) == "socket://127.0.0.1:4000"


def test_two_boards_with_one_serial_number_are_an_error_naming_both():
    with pytest.raises(AmbiguousPortError) as error:
        resolve_port("serial-number:000683512345", ports=[DK, OTHER, TWIN])
    assert "/dev/ttyACM0" in str(error.value) and "/dev/ttyACM2" in str(error.value)
    assert "location" in str(error.value)  # what to name instead


def test_no_match_is_an_error_naming_the_ports_there():
    with pytest.raises(PortNotFoundError) as error:
        resolve_port("serial-number:nope", ports=[DK, OTHER])
    assert "nope" in str(error.value)
    assert "000683512345" in str(error.value) and "/dev/ttyACM1" in str(error.value)


def test_a_board_of_the_hardware_map_is_found_by_its_identity(tmp_path):
    path = tmp_path / "hardware.toml"
    path.write_text(MAP)
    boards = load_hardware_map(path)
    assert boards["tag-a"].target == "eartag" and boards["tag-a"].flash == "pyocd"
    assert resolve_port("tag-a", boards, [OTHER, DK]) == "/dev/ttyACM0"
    assert resolve_port("tag-b", boards, [OTHER, DK]) == "/dev/ttyACM1"
    with pytest.raises(PortNotFoundError, match="board 'tag-b'"):
        resolve_port("tag-b", boards, [DK])


def test_the_hardware_map_may_live_in_pyproject(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(MAP.replace("[boards.", "[tool.harness.hardware."))
    assert set(load_hardware_map(pyproject=pyproject)) == {"tag-a", "tag-b"}
    assert load_hardware_map(pyproject=tmp_path / "absent.toml") == {}


@pytest.mark.parametrize(("text", "message"), [
    ('[boards.x]\ntarget = "eartag"\nserial = "1"\n', r"\[boards\.x\]: unknown keys \['serial'\]"),
    ('[boards.x]\ntarget = "eartag"\n', r"\[boards\.x\]: give its serial_number or its location"),
    ('[boards.x\n', "not valid TOML"),
    ("[boards]\nx = 1\n", r"\[boards\.x\]: not a table"),
])
def test_a_malformed_hardware_map_names_the_file_and_the_board(tmp_path, text, message):
    path = tmp_path / "hardware.toml"
    path.write_text(text)
    with pytest.raises(HardwareMapError, match=message) as error:
        load_hardware_map(path)
    assert str(path) in str(error.value)


def test_a_missing_hardware_map_is_an_error(tmp_path):
    with pytest.raises(HardwareMapError, match="does not exist"):
        load_hardware_map(tmp_path / "nothing.toml")


def test_a_board_that_re_enumerates_is_found_again_within_the_timeout():
    listings = iter([[], [OTHER], [OTHER, DK]])  # gone while it resets, then back
    found = wait_for_port("serial-number:000683512345", 60.0,
                          ports=lambda: next(listings), poll_s=0.0)
    assert found == "/dev/ttyACM0"


def test_a_board_that_never_comes_back_is_reported_after_the_timeout():
    with pytest.raises(PortNotFoundError, match="waited 0 s"):
        wait_for_port("serial-number:000683512345", 0.0, ports=lambda: [OTHER], poll_s=0.0)


def test_the_serial_backend_finds_its_port_by_the_name_it_is_given(tmp_path):
    path = tmp_path / "hardware.toml"
    path.write_text(MAP)
    firmware = Firmware(tmp_path / "fw.elf", None, 115_200, "nrf52840")
    device = SERIAL.device(firmware, load_target("eartag"),
                           DeviceOptions(port="tag-a", hardware_map=path))
    with pytest.raises(PortNotFoundError, match="board 'tag-a'"):  # no board on this machine
        device.start()  # looked up when it starts: it may have re-enumerated since
    with SERIAL.device(firmware, load_target("eartag"),
                       DeviceOptions(port="/dev/pts/9")) as device:
        assert device.url == "/dev/pts/9"


def test_harness_ports_lists_the_ports_and_the_boards_of_the_map(tmp_path):
    path = tmp_path / "hardware.toml"
    path.write_text(MAP)
    result = subprocess.run([sys.executable, "-m", "harness.cli", "ports", "--hardware-map",
                             str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "| port | USB vid:pid | serial number | location | description |" in result.stdout
    assert "| tag-a | eartag | serial-number:000683512345 |" in result.stdout
