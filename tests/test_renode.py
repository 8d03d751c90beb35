"""The firmware for the tags' real MCUs, and Renode running it.

The nRF52840 build is the ELF a user flashes on an nRF52840 DK: its vector table and memory
regions are checked against the chip's. On Renode (the ear tag's nRF52840, the CC2538 standing
in for the collar's CC2650) the same windows give the same integer logits as on QEMU and the
host, and the instruction count per window agrees with QEMU's to within one counter tick.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from elftools.elf.elffile import ELFFile

from device_sim.appbuild import build_model_firmware
from device_sim.backends import prepare_device
from device_sim.backends.renode import RenodeDevice, platform_description, renode_script
from device_sim.errors import EmulatorError
from device_sim.process import group_members
from device_sim.targets import load_target
from harness.errors import DeviceTimeoutError
from harness.session import DeviceSession
from models.quantize import counts_from_g
from models.recordings import make_windows
from models.rundir import RunDirectory

ON_RENODE = pytest.mark.hil(backend="renode")
CROSS = pytest.mark.requires("arm-none-eabi-gcc", "newlib")

# The real chips, from their datasheets (DESIGN.md): not read from the profiles under test.
CHIPS = {
    "eartag": {"platform": "nrf52840", "flash": (0x0, 1024 * 1024),
               "ram": (0x2000_0000, 256 * 1024), "external_irqs": 48},
    "collar": {"platform": "cc2538", "flash": (0x0020_0000, 128 * 1024),  # CC2538's address
               "ram": (0x2000_0000, 28 * 1024), "external_irqs": 34},     # CC2650's sizes
}


def test_the_renode_machine_runs_at_the_target_clock():
    for name in ("eartag", "collar"):
        target = load_target(name)
        platform = target.platform_for("renode")
        repl = platform_description(target, platform)
        assert f'using "{platform.machine}"' in repl
        assert f"PerformanceInMips: {target.clock_hz // 1_000_000}" in repl
        assert "systickFrequency: 1000000" in repl  # 64 and 48 instructions per tick
        script = renode_script(target, platform, "m.repl", "fw.elf", 4321)
        assert 'CreateServerSocketTerminal 4321 "harness_uart" false' in script
        assert f"connector Connect {platform.emulator_uart} harness_uart" in script
        assert "SetAdvanceImmediately true" in script
        assert "SetAdvanceImmediately" not in renode_script(target, platform, "m.repl",
                                                            "fw.elf", 4321, realtime=True)


def test_a_systick_rate_renode_cannot_keep_is_refused():
    target = load_target("collar")
    platform = target.platform_for("renode")
    odd = dataclasses.replace(platform, counter_per_tick=40)  # 1.2 MHz
    with pytest.raises(EmulatorError, match="whole multiple or divisor of 1 MHz"):
        platform_description(target, odd)


def _words(elf, address: int, count: int) -> list[int]:
    for segment in elf.iter_segments():
        start = segment["p_paddr"]
        if segment["p_type"] == "PT_LOAD" and start <= address < start + segment["p_filesz"]:
            data = segment.data()[address - start:address - start + 4 * count]
            return list(np.frombuffer(data, dtype="<u4"))
    raise AssertionError(f"nothing loaded at 0x{address:08X}")


@CROSS
@pytest.mark.parametrize("hil_target", sorted(CHIPS), indirect=True, scope="session")
def test_the_mcu_build_has_the_real_chips_vector_table_and_regions(hil_target, hil_run_dir,
                                                                   tmp_path):
    chip, target = CHIPS[hil_target.name], hil_target
    platform = target.platform_for("renode")
    assert platform.name == chip["platform"]
    model = RunDirectory(hil_run_dir).model_sources("q16")
    path = build_model_firmware(model, target, platform, tmp_path)
    (flash_origin, flash_size), (ram_origin, ram_size) = chip["flash"], chip["ram"]
    with path.open("rb") as f:
        elf = ELFFile(f)
        symbols = elf.get_section_by_name(".symtab")
        vectors = symbols.get_symbol_by_name("tag_vectors")[0]
        reset = symbols.get_symbol_by_name("Reset_Handler")[0]["st_value"]
        assert vectors["st_value"] == flash_origin  # where the core fetches it at reset
        assert vectors["st_size"] == 4 * (16 + chip["external_irqs"])
        initial_sp, reset_vector = _words(elf, flash_origin, 2)
        assert initial_sp == ram_origin + ram_size  # the stack starts at the top of RAM
        assert reset_vector == reset | 1  # Thumb
        for segment in elf.iter_segments():
            if segment["p_type"] != "PT_LOAD" or segment["p_memsz"] == 0:
                continue
            load, run, size = segment["p_paddr"], segment["p_vaddr"], segment["p_memsz"]
            end_of_image = load + segment["p_filesz"]
            in_flash = flash_origin <= load and end_of_image <= flash_origin + flash_size
            in_ram = ram_origin <= run and run + size <= ram_origin + ram_size
            assert in_flash or in_ram, f"segment at 0x{run:08X} + {size} is outside the chip"


# --- on Renode -----------------------------------------------------------------------------

def _first_bout(hil_run_dir, hil_recording, session):
    bout = np.flatnonzero(hil_recording.bouts == hil_recording.bouts[0])
    windows = make_windows(hil_recording, session.info.window, session.info.hop)
    first = windows.bouts == hil_recording.bouts[0]
    reference = RunDirectory(hil_run_dir).load_quantized("q16").run(
        counts_from_g(windows.x[first]))
    return counts_from_g(hil_recording.accel_g[bout]), reference


@ON_RENODE
@pytest.mark.requires("qemu-system-arm", "gcc")
def test_renode_qemu_and_the_host_give_the_same_integer_logits(hil_target, hil_run_dir,
                                                               hil_recording, tmp_path):
    model = RunDirectory(hil_run_dir).model_sources("q16")
    logits, latency, units = {}, {}, {}
    for backend in ("renode", "qemu", "native"):
        prepared = prepare_device(backend, model, hil_target, tmp_path / backend)
        with prepared.device as device, DeviceSession(device.url,
                                                      check_alive=device.check_alive) as s:
            counts, reference = _first_bout(hil_run_dir, hil_recording, s)
            results = s.stream(counts)
            logits[backend] = np.stack([r.logits for r in results])
            latency[backend] = [r.latency for r in results]
            units[backend] = s.info.counter_unit
    np.testing.assert_array_equal(logits["renode"], reference)
    np.testing.assert_array_equal(logits["qemu"], reference)
    np.testing.assert_array_equal(logits["native"], reference)
    # Both emulators count instructions of the same code: equal to within one tick of each
    # (40 on QEMU's mps2, 64 or 48 on Renode).
    assert units["renode"] == units["qemu"] == "instructions"
    for on_renode, on_qemu in zip(latency["renode"], latency["qemu"], strict=True):
        assert abs(on_renode - on_qemu) < 64, (latency["renode"], latency["qemu"])


@ON_RENODE
def test_renode_counts_the_same_window_the_same_way_twice(dut):
    assert dut.info.counter_unit == "instructions"  # no DWT in Renode: SysTick, said so
    window = counts_from_g(np.tile([0.0, 0.0, 1.0], (dut.info.window + dut.info.hop, 1)))
    first = dut.session.stream(window)
    second = dut.session.stream(window)
    assert len(first) == len(second) == 2
    assert [r.latency for r in first] == [r.latency for r in second]
    assert first[0].latency == first[1].latency > 0


@ON_RENODE
def test_a_measurement_that_spans_a_systick_wrap_counts_it(hil_target, hil_run_dir, tmp_path):
    """SysTick wraps every 2^24 ticks (16.8 s of Renode's time), and a measurement runs with
    interrupts masked, so the wrap is counted from COUNTFLAG. A build whose SysTick wraps about
    once per inference measures every window the same as the normal build."""
    model = RunDirectory(hil_run_dir).model_sources("q16")
    platform = hil_target.platform_for("renode")
    per_tick = platform.systick_per_tick
    window = counts_from_g(np.tile([0.0, 0.0, 1.0], (256 + 7 * 64, 1)))
    latencies = {}
    for name, defines in (("normal", {}), ("short", None)):
        if defines is None:  # a period between one and two inferences: most windows span a wrap
            ticks = latencies["normal"][0] // per_tick
            defines = {"TAG_SYSTICK_RELOAD": 2 ** math.ceil(math.log2(ticks)) - 1}
        built = dataclasses.replace(platform, defines={**platform.defines, **defines})
        elf = build_model_firmware(model, hil_target, built, tmp_path / name)
        with RenodeDevice(elf, hil_target) as device, DeviceSession(
                device.url, check_alive=device.check_alive) as session:
            latencies[name] = [r.latency for r in session.stream(window)]
    assert len(latencies["short"]) == 8
    # Renode's SysTick spends a tick or two less per period than the architecture's RELOAD + 1
    # (measured: 128 instructions over a wrap on the nRF52840): tolerated, a lost wrap is not.
    for latency in latencies["short"]:
        assert abs(latency - latencies["normal"][0]) <= 2 * per_tick, latencies


@ON_RENODE
def test_killing_renode_mid_stream_is_a_clear_error_and_leaves_no_process(dut):
    mono = [pid for pid in group_members(dut.device.pid)
            if b"Renode.exe" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert mono, "Renode's Mono process not found in the device's process group"
    window = counts_from_g(np.tile([0.0, 0.0, 1.0], (dut.info.window * 4, 1)))
    dut.session.timeout = 5.0
    with pytest.raises((DeviceTimeoutError, EmulatorError)) as error:
        dut.session.stream(window, on_result=lambda result: os.kill(mono[0], signal.SIGKILL))
    assert "Renode" in str(error.value) or "127.0.0.1" in str(error.value)
    dut.device.stop()
    assert not group_members(dut.device.pid)
    leftover = subprocess.run(["pgrep", "-f", "Renode.exe"], capture_output=True, text=True)
    assert str(mono[0]) not in leftover.stdout.split()
