"""`harness trace`: the trace build of the firmware against the integer reference, layer by
layer, on QEMU, the host-native build and Renode.

A clean model is equal at every layer; a kernel broken on purpose (one dense layer's output
format off by one, in a copy of the exported C) is named with the first time step it goes wrong
at, and the element whose device and reference values differ.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from elftools.elf.elffile import ELFFile

from device_sim import crossbuild
from device_sim.appbuild import build_model_firmware
from device_sim.backends import prepare_device
from device_sim.model_sources import TRACE_HOOK, ModelSources
from device_sim.protocol import MESSAGES
from device_sim.targets import Framing, load_target
from harness.cli import build_parser, main
from harness.errors import DeviceError, HarnessError, ModelSourcesError, NothingToStreamError
from harness.run import plan_stream, trace_command
from harness.session import DeviceSession
from harness.trace import (
    TraceReport,
    compare,
    heldout_window,
    trace_device,
    trace_window,
)
from models.export import export_float, export_quantized
from models.fixedpoint import QFormat
from models.quantize import QuantizedModel, fold_student, quantize
from models.rundir import RunDirectory
from models.students import build_model
from models.tracing import reference_tensors, tensor_crc, traced_layers

ON_QEMU = pytest.mark.hil(backend="qemu")
ON_NATIVE = pytest.mark.hil(backend="native")
ON_RENODE = pytest.mark.hil(backend="renode")
CROSS = pytest.mark.requires("arm-none-eabi-gcc", "newlib")
CLASSES = ("a", "b", "c")
TOY_WINDOW = 32  # as tests/conftest.py


# --- helpers --------------------------------------------------------------------------------

def break_dense(folder: Path, name: str) -> None:
    """Make dense layer `name` of an exported tag_model.c round to one fractional bit less
    than the reference: its out_frac, the sixth field of its tag_dense_t, minus one."""
    path = folder / "tag_model.c"
    pattern = re.compile(rf"(static const tag_dense_t {name} = \{{(?:-?\d+, ){{5}})(-?\d+)")
    text, n = pattern.subn(lambda m: f"{m.group(1)}{int(m.group(2)) - 1}", path.read_text())
    assert n == 1, f"no tag_dense_t {name} in {path}"
    path.write_text(text)


def with_broken_dense(model: QuantizedModel, name: str) -> QuantizedModel:
    """The reference of what break_dense makes the C compute."""
    ops = [dataclasses.replace(op, y=QFormat(op.y.bits, op.y.frac - 1)) if op.name == name
           else op for op in model.ops]
    return dataclasses.replace(model, ops=ops)


def first_change(good: QuantizedModel, broken: QuantizedModel,
                 counts: np.ndarray) -> tuple[int, int]:
    """(layer, step) of the first tensor, in execution order, that breaking changes."""
    pairs = zip(reference_tensors(good, counts), reference_tensors(broken, counts), strict=True)
    return next((a.layer, a.step) for a, b in pairs if not np.array_equal(a.values, b.values))


def broken_copy(sources: ModelSources, folder: Path, name: str) -> ModelSources:
    shutil.copytree(sources.folder, folder)
    break_dense(folder, name)
    return ModelSources.load(folder)


def tiny_mlp(run: RunDirectory, target, bits: int) -> QuantizedModel:
    """An untrained MLP student for the target's window, quantized on the run's calibration
    windows: no training, so cheap; q8 traces an int16 pool beside int8 layers."""
    calibration = run.calibration_g()
    torch.manual_seed(0)
    student = build_model({"kind": "mlp", "n_classes": len(CLASSES), "window": target.window,
                           "pool": 8, "hidden": [8]})
    flat = calibration.reshape(-1, 3)
    student.set_normalization(torch.tensor(flat.mean(0)), torch.tensor(flat.std(0)))
    net = fold_student(student.eval(), CLASSES, target.window)
    return quantize(net, calibration, bits)


def assert_every_layer_equal(report: TraceReport, model: QuantizedModel) -> None:
    assert report.equal and report.first is None, report.format()
    assert [t.layer.name for t in report.layers] == [op.name for op in model.ops]
    assert all(t.equal and t.diverging == 0 for t in report.layers)
    assert report.frames == len(reference_tensors(model, np.zeros((model.window, 3))))
    assert report.device_logits == report.reference_logits
    assert "every layer equals the integer reference" in report.format()


# --- the reference and the CRC convention, without a device -----------------------------------

@pytest.mark.parametrize("kind", ["gru_mlp", "mlp"])
@pytest.mark.parametrize("bits", [16, 8])
def test_the_traced_reference_runs_the_reference_op_by_op(tiny_students, toy_windows_g, kind,
                                                          bits):
    model = quantize(fold_student(tiny_students[kind], CLASSES, TOY_WINDOW), toy_windows_g, bits)
    counts = np.clip(np.rint(toy_windows_g[5] * 4096), -32768, 32767).astype(np.int64)
    tensors = reference_tensors(model, counts)
    layers = traced_layers(model.ops)
    assert [layer.index for layer in layers] == list(range(len(model.ops)))
    if kind == "gru_mlp":  # input, perceptron and GRU per step, in that order; then the head
        assert [layer.per_step for layer in layers] == [True, True, True, False, False]
        assert [(t.layer, t.step) for t in tensors[:6]] == [(0, 0), (1, 0), (2, 0),
                                                            (0, 1), (1, 1), (2, 1)]
        assert len(tensors) == 3 * TOY_WINDOW + 2
        assert [t.layer for t in tensors[-2:]] == [3, 4]
    else:
        assert not any(layer.per_step for layer in layers)
        assert [(t.layer, t.step) for t in tensors] == [(i, 0) for i in range(len(model.ops))]
    np.testing.assert_array_equal(tensors[-1].values, model.run(counts[None])[0])


def test_the_tensor_crc_is_zlib_crc32_of_int16_little_endian():
    values = [1, -1, 256, -32768, 32767]
    assert tensor_crc(values) == zlib.crc32(struct.pack("<5h", *values))
    assert tensor_crc(np.array([-128, 127], dtype=np.int8)) == zlib.crc32(b"\x80\xff\x7f\x00")
    assert tensor_crc([]) == 0
    with pytest.raises(ValueError, match="int16"):
        tensor_crc([40000])


def test_the_first_divergence_is_first_in_execution_order(tiny_students, toy_windows_g):
    model = quantize(fold_student(tiny_students["gru_mlp"], CLASSES, TOY_WINDOW),
                     toy_windows_g, 16)
    tensors = reference_tensors(model, np.zeros((TOY_WINDOW, 3), dtype=np.int64))
    crcs = {(t.layer, t.step): (len(t.values), t.crc32) for t in tensors}
    crcs[(1, 5)] = (crcs[(1, 5)][0], crcs[(1, 5)][1] ^ 1)  # perceptron wrong from step 5 on
    crcs[(2, 3)] = (crcs[(2, 3)][0] + 1, crcs[(2, 3)][1])  # the GRU state earlier, at step 3
    traces, first = compare(traced_layers(model.ops), tensors, crcs)
    assert first == (2, 3)  # step 3 runs before step 5, whatever the layer
    assert [(t.layer.name, t.diverging, t.first_step) for t in traces] == [
        ("input", 0, None), ("perceptron", 1, 5), ("gru", 1, 3), ("mlp0", 0, None),
        ("mlp1", 0, None)]


def test_trace_command_is_what_the_cli_parses():
    command = trace_command(Path("runs/my run"), "eartag", "qemu", "q8", 17)
    assert command == ("harness trace 'runs/my run' --target eartag --backend qemu "
                       "--variant q8 --window 17")
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.run_dir, args.target, args.backend, args.variant, args.window) == (
        Path("runs/my run"), "eartag", "qemu", "q8", 17)


def test_the_float_variant_is_refused(tmp_path, tiny_students):
    with pytest.raises(HarnessError, match="fixed-point"):
        trace_window(tmp_path, "eartag", "qemu", "f32", 0)
    folder = export_float(fold_student(tiny_students["mlp"], CLASSES, TOY_WINDOW),
                          tmp_path / "f32")
    target = load_target("eartag")
    with pytest.raises(ModelSourcesError, match="no layer trace"):
        build_model_firmware(ModelSources.load(folder), target, target.platform_for("qemu"),
                             tmp_path / "build", trace=True)
    assert '#error "the float32 variant has no layer trace' in (folder / "tag_model.h").read_text()


def test_c_exported_before_the_trace_existed_is_refused_not_traced_silently(tmp_path,
                                                                           tiny_students):
    net = fold_student(tiny_students["mlp"], CLASSES, TOY_WINDOW)
    folder = export_quantized(quantize(net, np.zeros((4, TOY_WINDOW, 3)), 16), tmp_path / "q16",
                              Framing(62.5, TOY_WINDOW, 64, "eartag"))
    source = folder / "tag_model.c"
    source.write_text("\n".join(line for line in source.read_text().splitlines()
                                if TRACE_HOOK not in line) + "\n")  # as an older export wrote it
    target = dataclasses.replace(load_target("eartag"), window=TOY_WINDOW)
    with pytest.raises(ModelSourcesError, match="exported before the layer trace existed"):
        build_model_firmware(ModelSources.load(folder), target, target.platform_for("qemu"),
                             tmp_path / "build", trace=True)


def _text_sections(obj: Path) -> dict[str, bytes]:
    with obj.open("rb") as f:
        elf = ELFFile(f)
        return {s.name: s.data() for s in elf.iter_sections() if s.name.startswith(".text")}


@CROSS
@pytest.mark.parametrize("kind", ["gru_mlp", "mlp"])
def test_without_the_define_the_model_code_is_unchanged(tmp_path, tiny_students, toy_windows_g,
                                                        kind):
    """The hook calls compile to nothing: the generated tag_model.c gives the same machine code
    as the same file with every trace line deleted, and calls the hook only with the define."""
    model = quantize(fold_student(tiny_students[kind], CLASSES, TOY_WINDOW), toy_windows_g, 16)
    folder = export_quantized(model, tmp_path / "c")
    stripped = tmp_path / "stripped"
    shutil.copytree(folder, stripped)
    source = (folder / "tag_model.c").read_text()
    assert source.count("TAG_MODEL_TRACE_OP(") == len(model.ops)
    (stripped / "tag_model.c").write_text(
        "".join(line for line in source.splitlines(keepends=True)
                if "TAG_MODEL_TRACE_OP(" not in line))
    target = load_target("eartag")
    flags = [f for f in crossbuild.compiler_flags(target) if f != "-g"]

    def compile_model(where: Path, *defines: str) -> Path:
        obj = where / f"tag_model{'_trace' if defines else ''}.o"
        subprocess.run([crossbuild.CC, *flags, *defines, f"-I{where}", "-c",
                        str(where / "tag_model.c"), "-o", str(obj)], check=True,
                       capture_output=True, text=True, timeout=120)
        return obj

    plain = _text_sections(compile_model(folder))
    assert plain == _text_sections(compile_model(stripped))
    traced = compile_model(folder, "-DTAG_MODEL_TRACE")
    symbols = subprocess.run(["arm-none-eabi-nm", "-u", str(traced)], capture_output=True,
                             text=True, check=True).stdout
    assert "tag_model_trace" in symbols
    assert _text_sections(traced) != plain


# --- on a device ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", [pytest.param("qemu", marks=ON_QEMU),
                                     pytest.param("native", marks=ON_NATIVE)])
def test_a_clean_gru_mlp_is_equal_at_every_layer(hil_run_dir, hil_target, backend):
    run = RunDirectory(hil_run_dir)
    model = run.load_quantized("q16")
    normal = run.build_dir(hil_target.name, backend, "q16")  # other tests may have built it
    before = _files(normal)
    report = trace_window(hil_run_dir, hil_target.name, backend, "q16", window_index=1)
    assert_every_layer_equal(report, model)
    assert [t.tensors for t in report.layers] == [hil_target.window] * 3 + [1, 1]
    # The window traced is the one `harness run` numbers 1: its reference logits.
    counts = heldout_window(run, hil_target, 1)
    assert report.reference_logits == model.run(counts[None])[0].tolist()
    assert report.window_index == 1 and report.passes == 1  # nothing diverged: no dump
    # The trace build has a folder of its own: the normal build is neither made nor replaced.
    trace_dir = run.trace_build_dir(hil_target.name, backend, "q16")
    assert any("_trace" in p.name for p in trace_dir.iterdir())
    assert _files(normal) == before


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file of a folder with its size and modification time: what a build would change."""
    if not folder.exists():
        return {}
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


@ON_QEMU
def test_the_device_crc_is_zlib_crc32_of_the_values_as_int16_le(hil_run_dir, hil_target,
                                                                 tmp_path):
    """Read from the device alone: the CRC of the last layer is that of the RESULT's logits,
    and a dumped tensor's CRC is that of its values; frames come in execution order."""
    run = RunDirectory(hil_run_dir)
    counts = heldout_window(run, hil_target, 0)
    model = run.load_quantized("q16")
    prepared = prepare_device("qemu", run.model_sources("q16"), hil_target, tmp_path,
                              trace=True)
    with prepared.device as device, DeviceSession(device.url,
                                                  check_alive=device.check_alive) as session:
        session.trace_request("DUMP", layer=2, step=7)  # the GRU state after step 7
        (result,) = session.stream(counts)
        crcs = [m.fields for m in session.traces if m.name == "TRACE_CRC"]
        chunks = [m.fields for m in session.traces if m.name == "TRACE_TENSOR"]
    last = len(model.ops) - 1
    assert [(f["layer"], f["step"]) for f in crcs] == [
        (t.layer, t.step) for t in reference_tensors(model, counts)]
    logits_crc = next(f for f in crcs if f["layer"] == last)
    assert logits_crc["crc32"] == zlib.crc32(np.asarray(result.logits, "<i2").tobytes())
    assert logits_crc["count"] == len(result.logits)
    hidden = model.ops[2].hidden
    assert [(c["layer"], c["step"], c["offset"], c["total"]) for c in chunks] == [(2, 7, 0,
                                                                                   hidden)]
    state_crc = next(f for f in crcs if (f["layer"], f["step"]) == (2, 7))
    assert state_crc["crc32"] == zlib.crc32(np.asarray(chunks[0]["values"], "<i2").tobytes())


@ON_NATIVE
def test_a_normal_build_sends_no_trace_and_refuses_trace_requests(hil_run_dir, hil_target,
                                                                  tmp_path):
    run = RunDirectory(hil_run_dir)
    prepared = prepare_device("native", run.model_sources("q16"), hil_target, tmp_path)
    with prepared.device as device, DeviceSession(device.url,
                                                  check_alive=device.check_alive) as session:
        results = session.stream(heldout_window(run, hil_target, 0))
        assert len(results) == 1 and session.traces == []
        with pytest.raises(DeviceError, match="0x14") as error:
            session.trace_request("CRC_ONLY")
        assert error.value.code == "BAD_MESSAGE"
        assert MESSAGES["TRACE_REQUEST"].id == 0x14


@ON_QEMU
def test_a_broken_per_step_layer_is_named_with_its_first_step(hil_run_dir, hil_target, tmp_path):
    run = RunDirectory(hil_run_dir)
    model = run.load_quantized("q16")
    counts = heldout_window(run, hil_target, 2)
    expected = first_change(model, with_broken_dense(model, "perceptron"), counts)
    assert expected[0] == 1  # the perceptron, op 1, goes wrong first
    broken = broken_copy(run.model_sources("q16"), tmp_path / "broken", "perceptron")
    report = trace_device(model, broken, hil_target, "qemu", counts, tmp_path / "build")
    assert report.first == expected
    perceptron = report.layer("perceptron")
    assert not perceptron.equal and perceptron.first_step == expected[1]
    assert perceptron.element is not None
    assert perceptron.device_value != perceptron.reference_value
    assert report.layer("input").equal  # what comes before it is fine
    assert not report.layer("gru").equal  # what comes after inherits the error
    assert report.device_logits != report.reference_logits
    text = report.format()
    assert f"first divergence: layer 1 (perceptron) at step {expected[1]}" in text
    assert f"element {perceptron.element}, device {perceptron.device_value}" in text


@ON_NATIVE
def test_a_noisy_line_costs_passes_not_the_trace(hil_run_dir, hil_target, tmp_path):
    """Trace frames lost on the line in one pass are taken from the next pass of the same
    window, for the CRCs and for the dump."""
    run = RunDirectory(hil_run_dir)
    model = run.load_quantized("q16")
    counts = heldout_window(run, hil_target, 0)
    broken = broken_copy(run.model_sources("q16"), tmp_path / "broken", "perceptron")
    report = trace_device(model, broken, hil_target, "native", counts, tmp_path / "build",
                          link_faults="corrupt=0.002&drop=0.001&seed=5")
    assert report.first == first_change(model, with_broken_dense(model, "perceptron"), counts)
    perceptron = report.layer("perceptron")
    assert perceptron.element is not None
    assert perceptron.device_value != perceptron.reference_value
    assert report.passes > 1 + 4  # one CRC pass and a dump per layer, had nothing been lost


@ON_QEMU
@pytest.mark.parametrize("bits", [8, 16])
def test_an_mlp_is_traced_and_a_broken_layer_named(hil_run_dir, hil_target, tmp_path, bits):
    run = RunDirectory(hil_run_dir)
    model = tiny_mlp(run, hil_target, bits)
    sources = ModelSources.load(export_quantized(model, tmp_path / "c", Framing.of(hil_target)))
    counts = heldout_window(run, hil_target, 0)
    clean = trace_device(model, sources, hil_target, "qemu", counts, tmp_path / "clean")
    assert_every_layer_equal(clean, model)
    assert [t.layer.name for t in clean.layers] == ["pool", "input", "mlp0", "mlp1"]
    # The logits layer: an untrained ReLU layer may be all zeros, whatever its rounding.
    assert first_change(model, with_broken_dense(model, "mlp1"), counts) == (3, 0)
    broken = broken_copy(sources, tmp_path / "broken", "mlp1")
    report = trace_device(model, broken, hil_target, "qemu", counts, tmp_path / "build")
    assert report.first == (3, 0)
    assert all(report.layer(name).equal for name in ("pool", "input", "mlp0"))
    mlp1 = report.layer("mlp1")
    assert mlp1.device_value != mlp1.reference_value and mlp1.element is not None
    assert report.device_logits[mlp1.element] == mlp1.device_value  # the RESULT says the same


@ON_RENODE
@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
def test_a_clean_gru_mlp_is_equal_at_every_layer_on_renode(hil_run_dir, hil_target):
    report = trace_window(hil_run_dir, hil_target.name, "renode", "q16", window_index=0)
    assert_every_layer_equal(report, RunDirectory(hil_run_dir).load_quantized("q16"))


@ON_NATIVE
def test_the_trace_command_exits_0_when_equal_and_2_on_a_bad_window(hil_run_dir, hil_target,
                                                                    capsys):
    base = ["trace", str(hil_run_dir), "--target", hil_target.name, "--backend", "native"]
    assert main([*base, "--window", "0"]) == 0
    printed = capsys.readouterr().out
    assert "every layer equals the integer reference" in printed
    assert re.search(r"^\s+2  gru\s+\d+  equal$", printed, re.MULTILINE)
    assert main([*base, "--window", "100000"]) == 2
    assert "windows (0 to" in capsys.readouterr().err
    with pytest.raises(NothingToStreamError):
        heldout_window(RunDirectory(hil_run_dir), hil_target, -1)


@pytest.mark.hil(backend="qemu")
@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
def test_a_run_that_differs_from_the_reference_points_at_the_trace_that_names_the_layer(
        run_copy, capsys):
    break_dense(RunDirectory(run_copy).c_dir("q16"), "perceptron")
    assert main(["run", str(run_copy), "--backend", "qemu", "--max-windows", "2"]) == 1
    out = capsys.readouterr().out
    report = json.loads((RunDirectory(run_copy).report_dir("eartag", "qemu", "q16")
                         / "report.json").read_text())
    assert report["first_mismatch"] == 0
    # The run streamed a sample of two windows; the trace numbers all the held-out windows.
    profile = load_target("eartag")
    sampled = plan_stream(RunDirectory(run_copy).heldout(), profile.window, profile.hop,
                          max_windows=2, seed=0)
    command = report["trace_command"]
    assert command == trace_command(run_copy, "eartag", "qemu", "q16",
                                    int(sampled.heldout_index[0]))
    assert f"trace it layer by layer: {command}" in out
    assert main(shlex.split(command)[1:]) == 1  # what the report says to run, as it says it
    assert "first divergence: layer 1 (perceptron) at step" in capsys.readouterr().out
