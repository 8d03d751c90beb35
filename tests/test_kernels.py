"""The kernels of the fixed-point and float32 C against numpy, on the host and on each core.

tag_matvec has a path per core: on the M4 SMLAD for int16, SXTB16 then SMLAD for int8 (both in
assembly, two sweeps of four rows a pass), on the M3 eight rows a pass in assembly, plain C on
the host, over weights in matvec_layout's order. tests/c/kernel_check.c runs it on random and
extreme weights and inputs of every shape its passes treat apart, against sums numpy computed,
and exits with the number of wrong sums (a misaligned input or a matrix wider than
TAG_NN_MAX_COLS that is not refused counts as one). tests/c/activation_check.c evaluates the
sigmoid and tanh tables on every 16-bit input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_sim import toolchain
from device_sim.backends.qemu import QemuDevice
from device_sim.crossbuild import build_firmware
from device_sim.targets import load_target
from models import fixedpoint
from models.export import lut_steps, matvec_layout, write_float_kernels, write_kernels

CHECK = Path(__file__).parent / "c" / "kernel_check.c"
CHECK_F32 = Path(__file__).parent / "c" / "kernel_check_f32.c"
ACTIVATION_CHECK = Path(__file__).parent / "c" / "activation_check.c"
# Rows and columns around the passes: 8 rows per pass (4 for float32, and the M4 sweeps a pass 4
# rows at a time), blocks of 4 (int16, float32) or 8 (int8) columns, turns of 8 columns (M3).
SHAPES = [(1, 1), (1, 7), (3, 5), (4, 4), (5, 3), (4, 64), (7, 63), (8, 2), (192, 64),
          (192, 3), (6, 1), (5, 9), (4, 8), (4, 12), (3, 17), (9, 16), (8, 8), (15, 33),
          (16, 12), (17, 9), (12, 20), (24, 64)]
MAX_COLS = max(cols for _, cols in SHAPES)  # tag_matvec refuses more (TAG_NN_MAX_COLS)
# float32: 4 rows per pass, blocks of 4; fewer shapes, so that the check fits the collar's flash.
FLOAT_SHAPES = [(1, 1), (1, 7), (3, 5), (4, 4), (5, 3), (4, 64), (7, 63), (8, 2), (192, 64),
                (192, 3), (6, 1), (5, 9), (4, 8), (4, 12), (3, 17), (9, 16)]


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


def _c_array(ctype: str, name: str, values, attributes: str = "") -> str:
    items = ", ".join(f"{float(v):.9e}f" if ctype == "float" else str(int(v)) for v in values)
    return f"static const {ctype} {name}[]{attributes} = {{{items}}};\n"


def _write_header(folder: Path, kernels_h: str, ctype: str, aligned: str,
                  word_bits: int | None, cases, expected: str) -> None:
    """kernel_cases.h: the cases' shapes and offsets, the weights in matvec_layout's order, the
    inputs, and `expected` (the C arrays of what the check compares with)."""
    laid_out = [matvec_layout(w, word_bits) for w, _ in cases]
    rows = [w.shape[0] for w, _ in cases]
    cols = [w.shape[1] for w, _ in cases]
    text = (f"#define KERNEL_CASES {len(cases)}\n#define KERNEL_MAX_ROWS {max(rows)}\n"
            f"#define KERNEL_MAX_COLS {max(cols)}\n#include \"{kernels_h}\"\n"
            + _c_array("uint16_t", "kernel_rows", rows) + _c_array("uint16_t", "kernel_cols", cols)
            + _c_array("uint32_t", "kernel_weight_at", np.cumsum([0, *map(len, laid_out)])[:-1])
            + _c_array("uint32_t", "kernel_input_at", np.cumsum([0, *cols])[:-1])
            + _c_array("uint32_t", "kernel_sum_at", np.cumsum([0, *rows])[:-1])
            + _c_array(ctype, "kernel_weights", np.concatenate(laid_out), f" {aligned}")
            + _c_array(ctype, "kernel_inputs", np.concatenate([x for _, x in cases]))
            + expected)
    (folder / "kernel_cases.h").write_text(text)


def _write_cases(folder: Path, bits: int, cases, wrong_sum: bool = False) -> None:
    sums = np.concatenate([w.astype(np.int64) @ x.astype(np.int64) for w, x in cases])
    assert np.abs(sums).max() < 2**31
    if wrong_sum:
        sums[len(sums) // 2] += 1
    _write_header(folder, "tag_nn.h", f"int{bits}_t", "TAG_NN_ALIGNED", bits,
                  cases, _c_array("int32_t", "kernel_sums", sums))


def _float_cases(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """float32 (weights, input) pairs: unit-scale random, and magnitudes far apart (1e-15 to
    1e15 in one row), where the order of the additions shows."""
    rng = np.random.default_rng(seed)
    cases = []
    for rows, cols in FLOAT_SHAPES:
        cases.append((rng.standard_normal((rows, cols)), rng.standard_normal(cols)))
        spread = 10.0 ** rng.integers(-15, 16, (rows, cols))
        cases.append((rng.standard_normal((rows, cols)) * spread, rng.standard_normal(cols)))
    return [(w.astype(np.float32), x.astype(np.float32)) for w, x in cases]


def _float_sums(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's sum in column order, a float32 product and a float32 add at a time (what the
    plain kernel computes), and a tolerance for a kernel that fuses them (VFMA): the rounding
    of every product, 2^-24 of its size, over the row."""
    acc = np.zeros(w.shape[0], np.float32)
    for c in range(w.shape[1]):
        acc = (acc + w[:, c] * x[c]).astype(np.float32)
    products = np.abs(w.astype(np.float64) * x.astype(np.float64))
    return acc, (products.sum(axis=1) * 2.0**-22).astype(np.float32)


def _write_float_cases(folder: Path, cases, wrong_sum: bool = False) -> None:
    sums, tolerances = map(np.concatenate, zip(*(_float_sums(w, x) for w, x in cases),
                                               strict=True))
    if wrong_sum:
        sums[len(sums) // 2] = np.nextafter(sums[len(sums) // 2], np.float32(np.inf)) * 2
    _write_header(folder, "tag_nn_f32.h", "float", "TAG_F32_ALIGNED", None, cases,
                  _c_array("float", "kernel_sums", sums)
                  + _c_array("float", "kernel_tolerances", tolerances))


def _host_check(folder: Path, check: Path = CHECK, kernels: str = "tag_nn.c") -> tuple[int, str]:
    import subprocess

    program = toolchain.compile_host([check, folder / kernels], folder / "kernel_check",
                                     [folder], {"TAG_KERNEL_CHECK_HOST": ""})
    result = subprocess.run([str(program)], capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout


@pytest.mark.requires("gcc")
@pytest.mark.parametrize("bits", [16, 8])
def test_the_plain_c_kernel_equals_numpy_on_the_host(tmp_path, bits):
    folder = write_kernels(tmp_path, bits, max_cols=MAX_COLS)
    _write_cases(folder, bits, _cases(bits))
    assert _host_check(folder) == (0, "")


@pytest.mark.requires("gcc")
def test_the_check_finds_a_wrong_sum(tmp_path):
    folder = write_kernels(tmp_path, 16, max_cols=MAX_COLS)
    _write_cases(folder, 16, _cases(16), wrong_sum=True)
    status, printed = _host_check(folder)
    assert status == 1 and "numpy" in printed


@pytest.mark.hil(backend="qemu")
@pytest.mark.requires("arm-none-eabi-gcc", "newlib")
@pytest.mark.parametrize("bits", [16, 8])
@pytest.mark.parametrize("target_name", ["eartag", "collar"])  # M4 with DSP, M3 without
def test_each_cores_kernel_equals_numpy_in_qemu(tmp_path, target_name, bits):
    target = load_target(target_name)
    folder = write_kernels(tmp_path / "src", bits, max_cols=MAX_COLS)
    _write_cases(folder, bits, _cases(bits, seed=bits))
    elf = build_firmware(target, target.platform_for("qemu"), [CHECK, folder / "tag_nn.c"],
                         [folder], tmp_path / "build", name=f"kernel_check_{bits}")
    with QemuDevice(elf, target) as device:
        device.open()  # QEMU boots the guest once its UART is connected
        assert device.wait() == 0  # no wrong sum, by semihosting


def test_a_table_word_holds_its_entry_and_the_step_to_the_next():
    for table in (fixedpoint.SIGMOID_LUT, fixedpoint.TANH_LUT):
        words = lut_steps(table)
        assert len(words) == len(table) - 1
        assert np.array_equal(words.astype(np.int16), table[:-1])  # the low half
        assert np.array_equal(words >> 16, np.diff(table))


@pytest.mark.requires("gcc")
def test_sigmoid_and_tanh_equal_numpy_on_every_16_bit_input(tmp_path):
    import subprocess

    folder = write_kernels(tmp_path, 16)
    program = toolchain.compile_host([ACTIVATION_CHECK], tmp_path / "activation_check",
                                     [folder])
    pre = np.arange(-32768, 32768)
    for frac in (8, 11, 12, 13, 15):  # narrowing, widening and equal to the tables' Q12
        printed = subprocess.run([str(program), str(frac)], capture_output=True, check=True,
                                 timeout=60).stdout
        sigmoid, tanh = np.frombuffer(printed, dtype="<i2").reshape(2, -1)
        assert np.array_equal(sigmoid, fixedpoint.sigmoid_q15(pre, frac)), frac
        assert np.array_equal(tanh, fixedpoint.tanh_q15(pre, frac)), frac


@pytest.mark.requires("gcc")
def test_the_plain_float_kernel_equals_numpy_on_the_host(tmp_path):
    folder = write_float_kernels(tmp_path)
    _write_float_cases(folder, _float_cases())
    assert _host_check(folder, CHECK_F32, "tag_nn_f32.c") == (0, "")


@pytest.mark.requires("gcc")
def test_the_float_check_finds_a_wrong_sum(tmp_path):
    folder = write_float_kernels(tmp_path)
    _write_float_cases(folder, _float_cases(), wrong_sum=True)
    status, printed = _host_check(folder, CHECK_F32, "tag_nn_f32.c")
    assert status == 1 and "numpy" in printed


@pytest.mark.hil(backend="qemu")
@pytest.mark.requires("arm-none-eabi-gcc", "newlib")
@pytest.mark.parametrize("target_name", ["eartag", "collar"])  # VFMA on the M4F, soft float: M3
def test_each_cores_float_kernel_equals_numpy_in_qemu(tmp_path, target_name):
    target = load_target(target_name)
    folder = write_float_kernels(tmp_path / "src")
    _write_float_cases(folder, _float_cases(seed=1))
    elf = build_firmware(target, target.platform_for("qemu"),
                         [CHECK_F32, folder / "tag_nn_f32.c"], [folder], tmp_path / "build",
                         name="kernel_check_f32")
    with QemuDevice(elf, target) as device:
        device.open()
        assert device.wait() == 0
