"""Bulk replay: the recording in guest memory (device_sim/replay.py), results only on the wire.

The image format is checked on the host; on real firmware (the host-native build, QEMU for both
targets, Renode) a replay gives the same RESULT frames, bit for bit, as streaming the same
segments, a bad image is refused with ERROR(BAD_REPLAY) and a clear exception, and `harness run
--bulk` checks its results with the same code as a streamed run. The model is a tiny untrained
GRU-MLP quantized to 16 bits, its numpy integer reference the oracle for the logits.

No test sleeps or asserts on wall-clock time: every read has a timeout.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from device_sim.backends import DeviceOptions, get_backend, prepare_device
from device_sim.backends.renode import renode_script
from device_sim.model_sources import ModelSources
from device_sim.protocol import MESSAGES, DeviceError
from device_sim.replay import (
    HEADER,
    MAGIC,
    VERSION,
    build_image,
    check_fits,
    image_size,
    parse_image,
    write_image,
)
from device_sim.targets import Framing, load_target
from harness.errors import (
    DeviceTimeoutError,
    EmulatorError,
    ReplayImageError,
    ReplayUnavailableError,
)
from harness.run import RunOptions, check_bulk, run_on_device
from harness.session import DeviceSession
from models.export import export_quantized
from models.quantize import counts_from_g, fold_student, quantize
from models.students import build_model

WINDOW, HOP = 256, 64
CLASSES = ("a", "b", "c")
TIMEOUT_S = 30.0  # generous: another job may share the CPU
BAD = {k: v for k, v in MESSAGES["REPLAY"].constants.items() if k.startswith("BAD_")}

NATIVE = pytest.mark.requires("gcc")
ON_QEMU = pytest.mark.hil(backend="qemu")
ON_RENODE = pytest.mark.hil(backend="renode")
DEVICES = [
    pytest.param(("native", "eartag"), id="native", marks=NATIVE),
    pytest.param(("qemu", "eartag"), id="qemu-eartag", marks=ON_QEMU),
    pytest.param(("qemu", "collar"), id="qemu-collar", marks=ON_QEMU),
]


def accelerometer_g(n: int, seed: int) -> np.ndarray:
    """(n, 3) samples in g: gravity on a tilted axis, a rhythm and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None] / 50.0
    g = (np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.3, 3)
         + rng.uniform(0, 0.6, 3) * np.sin(2 * np.pi * rng.uniform(0.3, 2.0) * t
                                           + rng.uniform(0, 6, 3))
         + rng.normal(0, 0.02, (n, 3)))
    return g.astype(np.float32)


def accelerometer_counts(n: int, seed: int) -> np.ndarray:
    """(n, 3) int16 wire counts of accelerometer_g."""
    return counts_from_g(accelerometer_g(n, seed)).astype(np.int16)


# Bouts as a run streams them: one ending inside a hop, one of exactly a window, one too short
# for any window (no RESULT, and the next segment's numbering is unaffected), one longer.
SEGMENTS = [accelerometer_counts(n, seed) for n, seed in
            ((WINDOW + 2 * HOP + 17, 1), (WINDOW, 2), (WINDOW - 1, 3), (WINDOW + 3 * HOP, 4))]


def windows_of(counts: np.ndarray) -> list[np.ndarray]:
    n = 0 if len(counts) < WINDOW else 1 + (len(counts) - WINDOW) // HOP
    return [counts[i * HOP:i * HOP + WINDOW] for i in range(n)]


# --------------------------------------------------------------------------- the image


def test_an_image_reads_back_as_its_segments():
    image = build_image(SEGMENTS)
    assert len(image) == image_size([len(s) for s in SEGMENTS])
    magic, version, axes, segments, samples = HEADER.unpack_from(image)
    assert (magic, version, axes, segments) == (MAGIC, VERSION, 3, len(SEGMENTS))
    assert samples == sum(len(s) for s in SEGMENTS)
    assert image[:4] == b"TRPL"
    for got, sent in zip(parse_image(image), SEGMENTS, strict=True):
        np.testing.assert_array_equal(got, sent)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b"XXXX" + b[4:], "not a replay image: magic"),
    (lambda b: b[:4] + struct.pack("<H", 9) + b[6:], "version 9"),
    (lambda b: b[:6] + struct.pack("<H", 2) + b[8:], "of 2 axes"),
    (lambda b: b[:8] + struct.pack("<I", 10**6) + b[12:], "table of 1000000 segments"),
    (lambda b: b[:12] + struct.pack("<I", 5) + b[16:], "adds up to"),
    (lambda b: b[:-6], "run past the image"),
    (lambda b: b[:10], "no room for its 16-byte header"),
])
def test_a_damaged_image_is_refused_saying_what_is_wrong(damage, message):
    with pytest.raises(ReplayImageError, match=message):
        parse_image(damage(build_image(SEGMENTS)))


def test_segments_must_be_triples_of_int16():
    with pytest.raises(ReplayImageError, match="shape"):
        build_image([np.zeros((10, 2), dtype=np.int16)])
    with pytest.raises(ReplayImageError, match="outside int16"):
        build_image([np.full((10, 3), 40000)])


def test_an_image_larger_than_the_region_is_refused(tmp_path):
    region = load_target("eartag").platform_for("qemu").replay_bytes
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(region + 1)  # sparse: nothing written
    with pytest.raises(ReplayImageError, match="--max-windows"):
        check_fits(big, region, "mps2-an386")


def test_every_emulated_platform_has_a_replay_region_clear_of_the_fault_address():
    for name in ("eartag", "collar"):
        target = load_target(name)
        for backend in ("qemu", "renode"):
            platform = target.platform_for(backend)
            end = platform.replay_origin + platform.replay_bytes
            assert platform.replay_bytes >= 1 << 20, platform.name
            assert not platform.replay_origin <= platform.unmapped_address < end
            assert end <= platform.ram_origin or platform.replay_origin >= \
                platform.ram_origin + target.ram_bytes


def test_the_renode_script_maps_and_loads_the_region_only_for_a_replay():
    target = load_target("eartag")
    platform = target.platform_for("renode")
    plain = renode_script(target, platform, Path("m.repl"), Path("fw.elf"), 4321)
    assert "MappedMemory" not in plain and "LoadBinary" not in plain
    script = renode_script(target, platform, Path("m.repl"), Path("fw.elf"), 4321,
                           replay_image=Path("replay.bin"))
    assert "Memory.MappedMemory @ sysbus 0x60000000 { size: 0x1000000 }" in script
    assert "sysbus LoadBinary @replay.bin 0x60000000" in script
    assert script.index("LoadBinary") < script.index("start")


# --------------------------------------------------------------------------- refusals


def test_bulk_is_refused_in_real_time_and_on_a_board():
    target = load_target("eartag")
    with pytest.raises(ReplayUnavailableError, match="--realtime"):
        check_bulk(RunOptions(bulk=True, realtime=True), target)
    with pytest.raises(ReplayUnavailableError, match="physical board"):
        check_bulk(RunOptions(bulk=True, backend="serial", port="/dev/null"), target)
    assert check_bulk(RunOptions(bulk=True, backend="qemu"), target) == 16 << 20


def test_bulk_is_refused_on_a_platform_without_a_replay_region():
    target = load_target("collar")
    platform = dataclasses.replace(target.platform_for("qemu"), replay_bytes=0)
    bare = dataclasses.replace(target, platforms={**target.platforms, platform.name: platform})
    with pytest.raises(ReplayUnavailableError, match="no replay region"):
        get_backend("qemu").replay_capacity(bare)


def test_harness_run_refuses_bulk_with_realtime_before_building(tmp_path):
    with pytest.raises(ReplayUnavailableError, match="choose one"):
        run_on_device(tmp_path / "no-run", RunOptions(bulk=True, realtime=True,
                                                      report=tmp_path / "report"))


# --------------------------------------------------------------------------- on devices


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(integer reference, {target: exported q16 folder}) of an untrained GRU-MLP."""
    torch.manual_seed(0)
    calibration_g = np.stack([accelerometer_g(WINDOW, 10 + i) for i in range(16)])
    model = build_model({"kind": "gru_mlp", "n_classes": len(CLASSES), "hidden": 8,
                         "perceptron": 8, "head": 6})
    flat = calibration_g.reshape(-1, 3)
    model.set_normalization(flat.mean(0), flat.std(0))
    q = quantize(fold_student(model.eval(), CLASSES, WINDOW), calibration_g, 16)
    folders = {}
    for name in ("eartag", "collar"):
        folder = tmp_path_factory.mktemp(f"replay-{name}") / "c" / "q16"
        export_quantized(q, folder, Framing.of(load_target(name)))
        folders[name] = folder
    return q, folders


def start(tiny, backend: str, target: str, build: Path, image: Path | None):
    model = ModelSources.load(tiny[1][target])
    return prepare_device(backend, model, load_target(target), build,
                          DeviceOptions(timeout=TIMEOUT_S, replay_image=image))


def result_fields(results) -> list[tuple]:
    return [(r.index, r.class_index, tuple(r.logits.tolist()), r.latency) for r in results]


@pytest.mark.parametrize("device", DEVICES)
def test_a_replay_gives_the_results_of_streaming_bit_for_bit(device, tiny, tmp_path):
    backend, target = device
    image = write_image(tmp_path / "replay.bin", SEGMENTS)
    prepared = start(tiny, backend, target, tmp_path / "build", image)
    with prepared.device as dev, DeviceSession(dev.url, TIMEOUT_S,
                                               check_alive=dev.check_alive) as session:
        replayed = session.replay()
        streamed = []
        for segment in SEGMENTS:  # each bout after a RESET, numbered on as a run numbers them
            offset = len(streamed)
            for r in session.stream(segment):
                r.index += offset
                streamed.append(r)
        again = session.replay()  # the stream state after a replay is as after RESET
        stats = session.stats()
    reference = tiny[0].run(np.stack([w for s in SEGMENTS for w in windows_of(s)]))
    assert len(reference) == 8
    assert [r.index for r in replayed] == list(range(len(reference)))
    np.testing.assert_array_equal(np.stack([r.logits for r in replayed]), reference)
    assert [r.class_index for r in replayed] == reference.argmax(axis=1).tolist()
    if backend == "native":  # nanoseconds of the host: only the logits can agree
        assert [f[:3] for f in result_fields(replayed)] == [f[:3] for f in
                                                            result_fields(streamed)]
    else:  # instructions under -icount: the whole RESULT, latency included
        assert result_fields(replayed) == result_fields(streamed) == result_fields(again)
    assert stats["windows"] == 3 * len(reference)
    assert stats["samples"] == 3 * sum(len(s) for s in SEGMENTS)


def bad_images(capacity: int) -> dict[str, bytes]:
    good = build_image(SEGMENTS)
    too_many = capacity  # samples whose counts alone outgrow the region
    return {
        "BAD_MAGIC": b"XXXX" + good[4:],
        "BAD_VERSION": good[:4] + struct.pack("<H", VERSION + 1) + good[6:],
        "BAD_SIZE": good[:8] + struct.pack("<II", 1, too_many) + struct.pack("<I", too_many)
        + good[20:],
        "BAD_SEGMENTS": good[:12] + struct.pack("<I", 1 + sum(len(s) for s in SEGMENTS))
        + good[16:] + b"\0" * 6,
    }


@pytest.mark.parametrize("device", DEVICES)
def test_a_bad_image_is_refused_with_bad_replay_and_the_device_streams_on(device, tiny,
                                                                          tmp_path):
    backend, target = device
    capacity = get_backend(backend).replay_capacity(load_target(target))
    cases = bad_images(min(capacity, 16 << 20))
    if backend != "native":  # nothing loaded: the emulator's region reads zeros
        cases["BAD_MAGIC_NONE"] = b""
    window = accelerometer_counts(WINDOW, 9)
    for name, data in cases.items():
        image = None
        if data:
            image = tmp_path / f"{name}.bin"
            image.write_bytes(data)
        prepared = start(tiny, backend, target, tmp_path / "build", image)
        with prepared.device as dev, DeviceSession(dev.url, TIMEOUT_S,
                                                   check_alive=dev.check_alive) as session:
            with pytest.raises(DeviceError) as error:
                session.replay()
            assert error.value.code == "BAD_REPLAY"
            assert error.value.detail == BAD[name.removesuffix("_NONE")], name
            assert "replay image" in str(error.value)
            np.testing.assert_array_equal(session.stream(window)[0].logits,
                                          tiny[0].run(window[None])[0])


@pytest.mark.parametrize("device", DEVICES[:2])
def test_a_device_that_dies_mid_replay_is_a_clear_error(device, tiny, tmp_path):
    backend, target = device
    image = write_image(tmp_path / "long.bin", [accelerometer_counts(WINDOW + 5000 * HOP, 5)])
    prepared = start(tiny, backend, target, tmp_path / "build", image)
    with prepared.device as dev, DeviceSession(dev.url, TIMEOUT_S,
                                               check_alive=dev.check_alive) as session:
        with pytest.raises((DeviceTimeoutError, EmulatorError)) as error:
            session.replay(timeout_per_window=5.0,
                           on_result=lambda result: os.kill(dev.pid, signal.SIGKILL))
        assert "ended with status" in str(error.value) or "127.0.0.1" in str(error.value)
    assert not dev.alive


@NATIVE
def test_a_native_device_without_an_image_has_no_replay_region(tiny, tmp_path):
    prepared = start(tiny, "native", "eartag", tmp_path / "build", None)
    with prepared.device as dev, DeviceSession(dev.url, TIMEOUT_S,
                                               check_alive=dev.check_alive) as session:
        with pytest.raises(DeviceError, match="no replay region") as error:
            session.replay()
        assert error.value.detail == BAD["BAD_NO_REGION"]


@ON_RENODE
@pytest.mark.parametrize("target", ["eartag", "collar"])
def test_renode_replays_from_its_mapped_memory_as_qemu_does(target, tiny, tmp_path):
    image = write_image(tmp_path / "replay.bin", SEGMENTS)
    results = {}
    for backend in ("renode", "qemu"):
        prepared = start(tiny, backend, target, tmp_path / backend, image)
        with prepared.device as dev, DeviceSession(dev.url, TIMEOUT_S,
                                                   check_alive=dev.check_alive) as session:
            results[backend] = session.replay()
    reference = tiny[0].run(np.stack([w for s in SEGMENTS for w in windows_of(s)]))
    for backend, got in results.items():
        assert [r.index for r in got] == list(range(len(reference))), backend
        np.testing.assert_array_equal(np.stack([r.logits for r in got]), reference)
    # Both count instructions of the same code: equal to within a counter tick of each.
    for on_renode, on_qemu in zip(results["renode"], results["qemu"], strict=True):
        assert abs(on_renode.latency - on_qemu.latency) < 64


# --------------------------------------------------------------------------- harness run --bulk


@pytest.mark.parametrize("backend", [pytest.param("qemu", marks=ON_QEMU),
                                     pytest.param("native", marks=pytest.mark.hil(
                                         backend="native"))])
def test_harness_run_bulk_checks_the_same_windows_as_streaming(backend, hil_run, tmp_path):
    """A stratified sample (segments of contiguous chosen windows) replayed and streamed."""
    streamed, replayed = hil_run("q16", max_windows=12), hil_run("q16", max_windows=12, bulk=True)
    assert replayed.backend == backend
    assert replayed.bulk and not streamed.bulk
    assert replayed.passed, replayed.failures
    assert replayed.int_exact_fraction == 1.0
    assert replayed.windows == streamed.windows == 12 and replayed.missed_windows == 0
    keep = ("id", "device", "exact") + (("latency",) if backend == "qemu" else ())
    assert [{k: w[k] for k in keep} for w in replayed.window_results] == \
        [{k: w[k] for k in keep} for w in streamed.window_results]
    assert (tmp_path / "q16-report-bulk" / "report.json").is_file()
    assert replayed.selection["method"] == "stratified by class and animal"
