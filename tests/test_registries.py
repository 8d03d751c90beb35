"""The seams: a backend is one module, a board is one profile (plus a driver file if it needs
a new one), and everything that lists them is made from the registries."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

import device_sim.backends as backends
import device_sim.targets as targets
from device_sim import crossbuild, toolchain
from device_sim.backends.qemu import QemuDevice
from device_sim.errors import TargetProfileError, UnknownBackendError
from harness.cli import build_parser
from harness.target_table import devices

LOOPBACK = '''
from device_sim.backends import Backend


class LoopbackBackend(Backend):
    name = "loopback"
    label = "loopback"
    kind = "host"
    summary = "nothing: a test's own echo"
    url_form = "loop://"
    tools = ("gcc",)

    def device(self, firmware, target, options):
        raise NotImplementedError


BACKEND = LoopbackBackend()
'''


@pytest.fixture
def loopback_module(tmp_path, monkeypatch):
    """A backend module dropped next to the others (as a new file in device_sim/backends/)."""
    (tmp_path / "loopback.py").write_text(LOOPBACK)
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(tmp_path)])
    backends.registry.cache_clear()
    yield
    backends.registry.cache_clear()


def test_a_new_backend_module_is_all_it_takes(loopback_module):
    assert "loopback" in backends.backend_names()
    assert backends.get_backend("loopback").tools == ("gcc",)
    args = build_parser().parse_args(["run", "RUN_DIR", "--backend", "loopback"])
    assert args.backend == "loopback"
    assert "| `loopback` | nothing: a test's own echo | `loop://` | `gcc` |" in (
        backends.markdown_table())
    assert ("loopback", "loopback", "eartag") in [
        (d.name, d.backend, d.target) for d in devices("eartag")]


def test_without_it_the_backend_is_unknown():
    assert "loopback" not in backends.backend_names()
    with pytest.raises(UnknownBackendError, match=r"unknown backend 'loopback'.*native"):
        backends.get_backend("loopback")


def test_the_emulated_targets_come_from_the_profiles():
    rows = [(d.name, d.backend, d.target) for d in devices("collar")]
    assert rows == [("host CPU", "native", "collar"), ("collar (QEMU)", "qemu", "collar"),
                    ("collar (Renode)", "renode", "collar"), ("ear tag (QEMU)", "qemu", "eartag"),
                    ("ear tag (Renode)", "renode", "eartag")]


def test_every_backend_needs_tools_the_table_knows():
    for backend in backends.registry().values():
        assert all(tool in toolchain.TOOLS for tool in backend.tools), backend.name
        assert backend.kind in backends.KINDS


SMALL_TAG = ("name = \"smalltag\"", "label = \"small tag\"", "flash_bytes = 65_536")


@pytest.fixture
def profiles(tmp_path, monkeypatch) -> Path:
    """A copy of the profile folder, with one more board: the collar on 64 KB of flash."""
    folder = tmp_path / "targets"
    folder.mkdir()
    for profile in targets.PROFILE_DIR.glob("*.toml"):
        shutil.copy(profile, folder)
    text = (folder / "collar.toml").read_text()
    for line in SMALL_TAG:
        key = line.split(" = ")[0]
        old = next(row for row in text.splitlines() if row.startswith(f"{key} = "))
        text = text.replace(old, line)
    (folder / "smalltag.toml").write_text(text)
    monkeypatch.setattr(targets, "PROFILE_DIR", folder)
    monkeypatch.setattr(targets, "COMMON_PROFILE", folder / "common.toml")
    return folder


def test_a_new_board_is_one_profile(profiles):
    assert targets.target_names() == ["collar", "eartag", "smalltag"]
    board = targets.load_target("smalltag")
    assert (board.label, board.flash_bytes, board.ram_bytes) == ("small tag", 65_536, 28_672)
    assert board.thresholds == targets.load_target("collar").thresholds  # common.toml's
    assert ("small tag (QEMU)", "qemu", "smalltag") in [
        (d.name, d.backend, d.target) for d in devices("eartag")]


@pytest.mark.hil(backend="qemu")
def test_the_new_board_builds_to_its_own_size_and_boots(profiles, tmp_path):
    board = targets.load_target("smalltag")
    elf = crossbuild.build_firmware(board, board.platform_for("qemu"), [crossbuild.ECHO_EXAMPLE],
                                    [], tmp_path, name="echo")
    assert crossbuild.elf_memory(elf)["flash_limit"] == 65_536
    with QemuDevice(elf, board) as device:
        line = device.open(timeout=5.0).readline()
    assert line == b"BOOT echo target=smalltag unit=instructions\r\n"


def test_a_profile_that_names_a_missing_platform_or_driver_says_so(profiles):
    collar = profiles / "collar.toml"
    collar.write_text(collar.read_text().replace('qemu = "mps2-an385"', 'qemu = "mps2-an999"'))
    with pytest.raises(TargetProfileError, match=r"qemu = 'mps2-an999'.*no \[platforms"):
        targets.load_target("collar")
    board = targets.load_target("smalltag")
    with pytest.raises(TargetProfileError, match="names no platform for backend 'jlink'"):
        board.platform_for("jlink")
    platform = board.platform_for("qemu")
    with pytest.raises(TargetProfileError, match=r"uart_ns16550\.c, which is not in"):
        crossbuild.platform_sources(dataclasses.replace(platform, uart="ns16550"))


def test_a_profile_with_an_unknown_key_is_refused(profiles):
    board = profiles / "smalltag.toml"
    board.write_text(board.read_text().replace("fpu = false", "fpu = false\nfpu_kind = 'none'"))
    with pytest.raises(TargetProfileError, match=r"smalltag\.toml: unknown keys \['fpu_kind'\]"):
        targets.load_target("smalltag")


def test_a_profile_whose_name_is_not_its_file_name_is_refused(profiles):
    board = profiles / "smalltag.toml"
    board.write_text(board.read_text().replace('name = "smalltag"', 'name = "../collar"'))
    with pytest.raises(TargetProfileError, match=r"name = '\.\./collar'; a profile's name is"):
        targets.load_target("smalltag")
