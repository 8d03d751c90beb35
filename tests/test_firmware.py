"""Platform layer of the firmware: real builds with arm-none-eabi-gcc, real runs under QEMU.

The echo example (device_sim/firmware/examples/echo_main.c) answers single command bytes; see
its header for the list. Every read has a timeout; nothing waits on wall-clock sleeps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import serial
from elftools.elf.elffile import ELFFile

from device_sim.backends import qemu
from device_sim.backends.qemu import QemuDevice
from device_sim.crossbuild import ECHO_EXAMPLE, build_firmware, elf_memory, linker_script
from device_sim.targets import load_target, target_names
from harness.errors import (
    DeviceTimeoutError,
    EmulatorError,
    FirmwareTooLargeError,
    ToolchainError,
)

# Builds need the cross-compiler and newlib; runs are hil tests on QEMU. The pytest plugin
# decides whether those tools are here (a skip, or a failure under --hil-strict).
needs_cross_compiler = pytest.mark.requires("arm-none-eabi-gcc", "newlib")
on_qemu = pytest.mark.hil(backend="qemu")

CMD_COUNT, CMD_STACK, CMD_DEEP, CMD_FAULT_BUS, CMD_FAULT_UNDEF, CMD_EXIT = range(1, 7)
CFSR_PRECISERR = 0x200
CFSR_UNDEFINSTR = 0x10000
READ_TIMEOUT_S = 5.0
DEEP_BYTES = 1024

TARGETS = target_names()


def qemu_build(target_name: str, sources: list[Path], out: Path, **options) -> Path:
    """`sources` built for a target on the platform QEMU runs it on."""
    target = load_target(target_name)
    return build_firmware(target, target.platform_for("qemu"), sources, [], out, **options)


@pytest.fixture(scope="module", params=TARGETS)
def echo(request, tmp_path_factory) -> tuple[str, Path]:
    """The echo firmware built once per target: (target name, ELF path)."""
    out = tmp_path_factory.mktemp(f"echo-{request.param}")
    return request.param, qemu_build(request.param, [ECHO_EXAMPLE], out, name="echo")


def read_line(port: serial.SerialBase) -> str:
    line = port.readline()
    assert line.endswith(b"\r\n"), f"timed out waiting for a line; got {line!r}"
    return line.decode("ascii").strip()


def command(port: serial.SerialBase, byte: int) -> str:
    port.write(bytes([byte]))
    return read_line(port)


def boot(device: QemuDevice) -> serial.SerialBase:
    port = device.open(timeout=READ_TIMEOUT_S)
    line = read_line(port)
    assert line == f"BOOT echo target={device.target.name} unit=instructions"
    return port


def function_range(elf: Path, name: str) -> range:
    with elf.open("rb") as f:
        (symbol,) = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)
        start = symbol["st_value"] & ~1  # Thumb bit
        return range(start, start + symbol["st_size"])


def qemu_running_for(elf: Path) -> bool:
    try:
        import psutil
    except ImportError:
        found = subprocess.run(["pgrep", "-f", str(elf)], capture_output=True, timeout=10)
        return found.returncode == 0
    return any(str(elf) in " ".join(p.info["cmdline"] or [])
               for p in psutil.process_iter(["cmdline"]))


# -- builds ---------------------------------------------------------------------------------


@needs_cross_compiler
def test_echo_builds_within_the_real_device(echo):
    name, elf = echo
    target = load_target(name)
    mem = elf_memory(elf)
    assert 0 < mem["flash"] < 8 * 1024
    assert 0 < mem["ram_static"] < 1024
    assert mem["stack_reserved"] == target.stack_bytes
    assert mem["flash_limit"] == target.flash_bytes
    assert mem["ram_limit"] == target.ram_bytes
    assert mem["ram_static"] + mem["stack_reserved"] <= target.ram_bytes


@needs_cross_compiler
def test_echo_builds_without_warnings(echo):
    _, elf = echo
    assert elf.with_suffix(".build.log").read_text() == ""


@needs_cross_compiler
def test_linker_regions_are_the_profile_sizes(echo):
    name, elf = echo
    target = load_target(name)
    platform = target.platform_for("qemu")
    written = elf.with_suffix(".ld").read_text()
    assert written == linker_script(target, platform)
    regions = dict(re.findall(r"^\s*(FLASH|RAM)\s.*LENGTH = (\d+)$", written, re.MULTILINE))
    assert regions == {"FLASH": str(target.flash_bytes), "RAM": str(target.ram_bytes)}
    # The stack is at the very top of the real device's RAM.
    with elf.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        top = symtab.get_symbol_by_name("__stack_top")[0]["st_value"]
    assert top == platform.ram_origin + target.ram_bytes


@needs_cross_compiler
def test_a_200_kb_table_overflows_the_collar_but_fits_the_ear_tag(tmp_path):
    source = tmp_path / "big.c"
    source.write_text(
        "#include <stdint.h>\n#include \"platform.h\"\n"
        "const uint8_t big_table[200u * 1024u] = {1, 2, 3};\n"
        "void tag_fault_report(uint32_t pc, uint32_t cfsr) { (void)pc; (void)cfsr; }\n"
        "int main(void) {\n"
        "    uint32_t sum = 0;\n"
        "    for (uint32_t i = 0; i < sizeof big_table; i += 4096u) sum += big_table[i];\n"
        "    return (int)sum;\n}\n")
    with pytest.raises(FirmwareTooLargeError) as raised:
        qemu_build("collar", [source], tmp_path / "collar", name="big")
    message = str(raised.value)
    assert "collar" in message and "131072" in message and "128 KB" in message
    assert re.search(r"region .FLASH. overflowed by \d+ bytes", message)
    assert not (tmp_path / "collar" / "big.elf").exists()

    elf = qemu_build("eartag", [source], tmp_path / "eartag", name="big")
    assert elf_memory(elf)["flash"] > 200 * 1024


@needs_cross_compiler
def test_static_ram_beyond_the_collar_is_reported_with_the_stack(tmp_path):
    source = tmp_path / "ram.c"
    source.write_text(
        "#include <stdint.h>\n#include \"platform.h\"\n"
        "volatile uint8_t buffer[20u * 1024u];\n"
        "void tag_fault_report(uint32_t pc, uint32_t cfsr) { (void)pc; (void)cfsr; }\n"
        "int main(void) { buffer[1] = 1; return buffer[1]; }\n")
    with pytest.raises(FirmwareTooLargeError, match=r"RAM of 28672 bytes .*stack"):
        qemu_build("collar", [source], tmp_path, name="ram")


@needs_cross_compiler
def test_a_compile_error_quotes_the_compiler(tmp_path):
    source = tmp_path / "broken.c"
    source.write_text("int main(void) { return undeclared_name; }\n")
    with pytest.raises(ToolchainError, match="undeclared_name") as raised:
        qemu_build("collar", [source], tmp_path)
    assert not isinstance(raised.value, FirmwareTooLargeError)


def test_missing_tools_name_the_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolchainError, match="apt-get install gcc-arm-none-eabi "
                                             "libnewlib-arm-none-eabi"):
        qemu_build("collar", [ECHO_EXAMPLE], tmp_path)
    with pytest.raises(ToolchainError, match="apt-get install qemu-system-arm"):
        QemuDevice(tmp_path / "fw.elf", "collar").start()


# -- runs under QEMU ------------------------------------------------------------------------


@on_qemu
def test_boot_line_and_echo(echo):
    name, elf = echo
    with QemuDevice(elf, name) as device:
        port = boot(device)
        payload = b"moo, baa \xff\x7f"
        port.write(payload)
        assert port.read(len(payload)) == payload
        assert device.alive and device.exit_code is None


@on_qemu
def test_counter_is_positive_in_instructions_and_repeatable(echo):
    name, elf = echo
    counts = []
    for _ in range(2):  # two boots, three measurements each
        with QemuDevice(elf, name) as device:
            port = boot(device)
            for _ in range(3):
                value, unit = command(port, CMD_COUNT).removeprefix("COUNT ").split()
                counts.append(int(value))
                assert unit == "instructions"
    # 10,000 iterations of a loop on a volatile counter: a handful of instructions each.
    assert 30_000 < counts[0] < 200_000
    assert counts[0] % 40 == 0  # one SysTick tick is 40 instructions on mps2
    assert len(set(counts)) == 1, counts


@on_qemu
def test_stack_peak_grows_with_a_deep_call_and_stays_reserved(echo):
    name, elf = echo
    reserved = load_target(name).stack_bytes
    with QemuDevice(elf, name) as device:
        port = boot(device)
        peak, total = map(int, command(port, CMD_STACK).removeprefix("STACK ").split())
        assert total == reserved
        assert 0 < peak < reserved
        assert command(port, CMD_DEEP) == f"DEEP {sum(range(256)) * 4}"
        deeper, _ = map(int, command(port, CMD_STACK).removeprefix("STACK ").split())
        assert peak < deeper and DEEP_BYTES <= deeper < reserved


@on_qemu
@pytest.mark.parametrize(("byte", "function", "cfsr_bit"), [
    (CMD_FAULT_BUS, "fault_bus", CFSR_PRECISERR),
    (CMD_FAULT_UNDEF, "fault_undef", CFSR_UNDEFINSTR),
])
def test_a_fault_is_reported_and_ends_the_run(echo, byte, function, cfsr_bit):
    name, elf = echo
    with QemuDevice(elf, name) as device:
        port = boot(device)
        report = command(port, byte)
        match = re.fullmatch(r"FAULT pc=0x([0-9a-f]{8}) cfsr=0x([0-9a-f]{8})", report)
        assert match, report
        pc, cfsr = int(match[1], 16), int(match[2], 16)
        assert pc in function_range(elf, function)
        assert cfsr & cfsr_bit
        assert device.wait(READ_TIMEOUT_S) == 3  # TAG_EXIT_FAULT through semihosting
        assert not device.alive


@on_qemu
def test_semihosting_exit_code_reaches_the_host(echo):
    name, elf = echo
    with QemuDevice(elf, name) as device:
        port = boot(device)
        port.write(bytes([CMD_EXIT]))
        assert device.wait(READ_TIMEOUT_S) == 7
        assert device.exit_code == 7


@on_qemu
def test_stop_mid_session_leaves_no_qemu_and_reads_do_not_hang(echo):
    name, elf = echo
    device = QemuDevice(elf, name).start()
    port = serial.serial_for_url(device.url, timeout=1.0)  # not owned by the device
    try:
        assert read_line(port).startswith("BOOT")
        device.stop()
        device.stop()  # idempotent
        assert not device.alive
        assert not qemu_running_for(elf)
        with pytest.raises(EmulatorError, match="ended"):
            device.check_alive()
        # Either nothing within the timeout or "socket disconnected"; never a hang.
        with contextlib.suppress(serial.SerialException):
            assert port.read(1) == b""
    finally:
        port.close()
        device.stop()


@on_qemu
def test_keyboard_interrupt_in_the_caller_still_ends_qemu(echo):
    name, elf = echo
    with pytest.raises(KeyboardInterrupt), QemuDevice(elf, name) as device:
        boot(device)
        raise KeyboardInterrupt
    assert not device.alive
    assert not qemu_running_for(elf)


@on_qemu
def test_qemu_dying_at_start_is_reported_with_its_stderr(echo):
    name, elf = echo
    device = QemuDevice(elf, name, extra_args=["-no-such-option"])
    with pytest.raises(EmulatorError, match="no-such-option"):
        device.start()
    assert not device.alive


@on_qemu
def test_waiting_for_a_guest_that_does_not_exit_times_out(echo):
    name, elf = echo
    with QemuDevice(elf, name) as device:
        boot(device)
        with pytest.raises(DeviceTimeoutError):
            device.wait(timeout=0.2)
        assert device.alive


@on_qemu
def test_a_port_taken_before_qemu_binds_it_is_retried(echo, monkeypatch):
    name, elf = echo
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = qemu.free_port
        monkeypatch.setattr(qemu, "free_port", lambda: next(ports, None) or real_free_port())
        with QemuDevice(elf, name) as device:
            assert device.port != taken
            boot(device)


@on_qemu
def test_the_dwt_counter_falls_back_to_systick_where_the_core_has_no_dwt(tmp_path):
    """The nRF52840's counter: cycles where DWT->CYCCNT counts (silicon); on a core without
    it (QEMU's mps2, like Renode's nRF52840) SysTick, announced in its own unit."""
    target = load_target("eartag")
    silicon = dataclasses.replace(target.platform_for("qemu"), counter="dwt",
                                  counter_unit="cycles", counter_per_tick=1,
                                  fallback_counter_unit="instructions",
                                  fallback_counter_per_tick=40)
    elf = build_firmware(target, silicon, [ECHO_EXAMPLE], [], tmp_path, name="echo_dwt")
    with QemuDevice(elf, "eartag") as device:
        port = device.open(timeout=READ_TIMEOUT_S)
        assert read_line(port) == "BOOT echo target=eartag unit=instructions"
        count, unit = command(port, CMD_COUNT).split()[1:]
        assert unit == "instructions" and int(count) > 0 and int(count) % 40 == 0


@on_qemu
def test_a_platform_without_semihosting_parks_the_core_instead_of_exiting(tmp_path):
    """As on a board without a debugger: the exit neither ends QEMU nor runs anything more."""
    target = load_target("eartag")
    board_like = dataclasses.replace(target.platform_for("qemu"), semihosting=False)
    elf = build_firmware(target, board_like, [ECHO_EXAMPLE], [], tmp_path, name="echo_parks")
    with QemuDevice(elf, "eartag") as device:
        port = boot(device)
        port.timeout = 0.5
        port.write(bytes([CMD_EXIT]))
        port.write(b"still there?")
        assert port.read(12) == b""  # parked: nothing echoes
        with pytest.raises(DeviceTimeoutError):
            device.wait(timeout=0.2)
        assert device.alive
