"""The mat-vec kernel of the fixed-point C against numpy, on the host and on each target's core.

tag_matvec has a path per core: SMLAD on the M4 for int16, SXTB16 then SMLAD for int8, plain C
with four rows per pass on the M3 and the host. tests/c/kernel_check.c runs it on random and
extreme weights and inputs of every shape its passes treat apart, against sums numpy computed,
and exits with the number of wrong sums.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_sim import toolchain
from device_sim.backends.qemu import QemuDevice
from device_sim.crossbuild import build_firmware
from device_sim.targets import load_target
from models.export import write_kernels

CHECK = Path(__file__).parent / "c" / "kernel_check.c"
# Rows and columns around the passes: 4 rows per pass, 2 or 4 words per load.
SHAPES = [(1, 1), (1, 7), (3, 5), (4, 4), (5, 3), (4, 64), (7, 63), (8, 2), (192, 64),
          (192, 3), (6, 1)]


def _cases(bits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weights (rows, cols), input (cols,)) pairs whose exact sums stay in int32, as the
    exporter guarantees for a model: random at the largest amplitude that keeps them there,
    and the rails (every value -2^(bits-1) or 2^(bits-1) - 1) where they fit."""
    rng = np.random.default_rng(seed)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    cases = []
    for rows, cols in SHAPES:
        amplitude = min(high, int(np.sqrt((2**31 - 1) / cols)))
        cases.append((rng.integers(-amplitude, amplitude + 1, (rows, cols)),
                      rng.integers(-amplitude, amplitude + 1, cols)))
        rails_fit = cols * 2 ** (2 * bits - 2) < 2**31
        if rails_fit:  # every product at its largest, with either sign
            cases.append((np.full((rows, cols), low), np.full(cols, low)))
            cases.append((rng.choice([low, high], (rows, cols)), rng.choice([low, high], cols)))
    # The rails where a sum of them would not fit: opposite signs that cancel.
    cases.append((np.full((4, 2), low), np.array([low, high])))
    return cases


def _write_cases(folder: Path, bits: int, cases, wrong_sum: bool = False) -> None:
    ctype = f"int{bits}_t"
    weights = np.concatenate([w.ravel() for w, _ in cases])
    inputs = np.concatenate([x for _, x in cases])
    sums = np.concatenate([w.astype(np.int64) @ x.astype(np.int64) for w, x in cases])
    assert np.abs(sums).max() < 2**31
    if wrong_sum:
        sums[len(sums) // 2] += 1

    def array(ctype: str, name: str, values) -> str:
        return f"static const {ctype} {name}[] = {{{', '.join(str(int(v)) for v in values)}}};\n"

    rows = [w.shape[0] for w, _ in cases]
    cols = [w.shape[1] for w, _ in cases]
    text = (f"#define KERNEL_CASES {len(cases)}\n#define KERNEL_MAX_ROWS {max(rows)}\n"
            f"#define KERNEL_MAX_COLS {max(cols)}\n#include <stdint.h>\n"
            + array("uint16_t", "kernel_rows", rows) + array("uint16_t", "kernel_cols", cols)
            + array("uint32_t", "kernel_weight_at", np.cumsum([0, *np.multiply(rows, cols)])[:-1])
            + array("uint32_t", "kernel_input_at", np.cumsum([0, *cols])[:-1])
            + array("uint32_t", "kernel_sum_at", np.cumsum([0, *rows])[:-1])
            + array(ctype, "kernel_weights", weights) + array(ctype, "kernel_inputs", inputs)
            + array("int32_t", "kernel_sums", sums))
    (folder / "kernel_cases.h").write_text(text)


def _host_check(folder: Path) -> tuple[int, str]:
    import subprocess

    program = toolchain.compile_host([CHECK, folder / "tag_nn.c"], folder / "kernel_check",
                                     [folder], {"TAG_KERNEL_CHECK_HOST": ""})
    result = subprocess.run([str(program)], capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout


@pytest.mark.requires("gcc")
@pytest.mark.parametrize("bits", [16, 8])
def test_the_plain_c_kernel_equals_numpy_on_the_host(tmp_path, bits):
    folder = write_kernels(tmp_path, bits)
    _write_cases(folder, bits, _cases(bits))
    assert _host_check(folder) == (0, "")


@pytest.mark.requires("gcc")
def test_the_check_finds_a_wrong_sum(tmp_path):
    folder = write_kernels(tmp_path, 16)
    _write_cases(folder, 16, _cases(16), wrong_sum=True)
    status, printed = _host_check(folder)
    assert status == 1 and "numpy" in printed


@pytest.mark.hil(backend="qemu")
@pytest.mark.requires("arm-none-eabi-gcc", "newlib")
@pytest.mark.parametrize("bits", [16, 8])
@pytest.mark.parametrize("target_name", ["eartag", "collar"])  # M4 with DSP, M3 without
def test_each_cores_kernel_equals_numpy_in_qemu(tmp_path, target_name, bits):
    target = load_target(target_name)
    folder = write_kernels(tmp_path / "src", bits)
    _write_cases(folder, bits, _cases(bits, seed=bits))
    elf = build_firmware(target, target.platform_for("qemu"), [CHECK, folder / "tag_nn.c"],
                         [folder], tmp_path / "build", name=f"kernel_check_{bits}")
    with QemuDevice(elf, target) as device:
        device.open()  # QEMU boots the guest once its UART is connected
        assert device.wait() == 0  # no wrong sum, by semihosting
