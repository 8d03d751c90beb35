"""The tag application (device_sim/firmware/app_main.c) over the real transport.

Every test talks to a real device: the host-native build on a pseudo-terminal, and the Arm
firmware under QEMU for both targets (marked `hil`). The host side is written out here with the
protocol's codec (encode_frame, FrameDecoder), not with harness.session, so that these tests pin
down the firmware's behaviour on their own. The model is a tiny, untrained GRU-MLP for the
targets' 256-sample window, quantized to 16 bits; its numpy integer reference is the oracle for
the device's logits, bit for bit.

No test waits on wall-clock sleeps: every read has a timeout, and QEMU under -icount is
deterministic.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from elftools.elf.elffile import ELFFile

from device_sim.appbuild import build_info, build_model_firmware, build_native
from device_sim.backends import get_backend
from device_sim.backends.native import NativeDevice
from device_sim.backends.qemu import QemuDevice
from device_sim.crossbuild import elf_memory
from device_sim.model_sources import ModelSources
from device_sim.protocol import (
    PROTOCOL_VERSION,
    CounterUnit,
    ErrorCode,
    FrameDecoder,
    LogitType,
    Message,
    cobs_encode,
    crc16,
    decode_logits,
    encode_frame,
)
from device_sim.targets import Framing, TargetProfile, load_target
from harness.errors import (
    EmulatorError,
    FramingMismatchError,
    RunDirectoryError,
    SampleRateError,
)
from models.export import export_float, export_quantized
from models.quantize import (
    INPUT_FRAC,
    FloatNet,
    QuantizedModel,
    counts_from_g,
    fold_student,
    quantize,
)
from models.rundir import RunDirectory
from models.students import build_model

READ_TIMEOUT_S = 20.0  # generous: another job may share the CPU
WINDOW, HOP = 256, 64
CLASSES = ("a", "b", "c")
FRAME_SAMPLES = 40  # SAMPLES.MAX
EXIT_FAULT = 3  # TAG_EXIT_FAULT in platform.h
CFSR_PRECISERR = 0x200
FAULT_SAMPLE = (-32768, -32768, 12345)  # app_main.c, TAG_TEST_HOOKS

# The pytest plugin decides whether the tools of each are here: the native build needs host
# gcc, QEMU runs are hil tests (cross-compiler, newlib and QEMU).
NATIVE = pytest.mark.requires("gcc")
ON_QEMU = pytest.mark.hil(backend="qemu")

# (backend, target): the native build announces the target's facts but runs on the host.
BACKENDS = [
    pytest.param(("native", "eartag"), id="native", marks=NATIVE),
    pytest.param(("qemu", "eartag"), id="qemu-eartag", marks=ON_QEMU),
    pytest.param(("qemu", "collar"), id="qemu-collar", marks=ON_QEMU),
]
QEMU_TARGETS = [pytest.param(t, id=f"qemu-{t}", marks=ON_QEMU) for t in ("eartag", "collar")]


# --------------------------------------------------------------------------- the model


@dataclass
class TinyModel:
    q: QuantizedModel
    net: FloatNet
    runs: dict[str, Path]  # target name -> C folders (c/q16, c/f32) framed for that target


def _accelerometer_g(n_windows: int, length: int, seed: int) -> np.ndarray:
    """Collar-like signals in g: gravity on a tilted axis, a rhythm and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 50.0
    tilt = rng.normal(0.0, 0.3, size=(n_windows, 1, 3)) + np.array([0.0, 0.0, 1.0])
    freq = rng.uniform(0.3, 2.0, size=(n_windows, 1, 1))
    amp = rng.uniform(0.0, 0.6, size=(n_windows, 1, 3))
    phase = rng.uniform(0, 6, (n_windows, 1, 3))
    motion = amp * np.sin(2 * np.pi * freq * t[None, :, None] + phase)
    noise = rng.normal(0, 0.02, (n_windows, length, 3))
    return (tilt + motion + noise).astype(np.float32)


def stream_counts(n_samples: int, seed: int = 3) -> np.ndarray:
    """(n_samples, 3) int16 wire counts: what an accelerometer would deliver."""
    return counts_from_g(_accelerometer_g(1, n_samples, seed)[0]).astype(np.int16)


def windows_of(counts: np.ndarray) -> np.ndarray:
    """The windows the device classifies in a stream: at W, W+H, W+2H, ... samples."""
    n = 0 if len(counts) < WINDOW else 1 + (len(counts) - WINDOW) // HOP
    return np.stack([counts[i * HOP:i * HOP + WINDOW] for i in range(n)])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> TinyModel:
    torch.manual_seed(0)
    calibration = _accelerometer_g(32, WINDOW, seed=1)
    model = build_model({"kind": "gru_mlp", "n_classes": len(CLASSES), "hidden": 8,
                         "perceptron": 8, "head": 6})
    flat = calibration.reshape(-1, 3)
    model.set_normalization(flat.mean(0), flat.std(0))
    net = fold_student(model.eval(), CLASSES, WINDOW)
    q = quantize(net, calibration, 16)
    runs = {}
    for name in ("eartag", "collar"):
        framing = Framing.of(load_target(name))
        run = tmp_path_factory.mktemp(f"run-{name}")
        export_quantized(q, run / "c" / "q16", framing)
        export_float(net, run / "c" / "f32", framing)
        runs[name] = run
    return TinyModel(q, net, runs)


def sources(run: Path, variant: str = "q16") -> ModelSources:
    return ModelSources.load(run / "c" / variant)


# --------------------------------------------------------------------------- builds


@pytest.fixture(scope="module")
def firmware(tiny, tmp_path_factory):
    """get(backend, target, variant="q16", hooks=False) -> path, built by the backend as
    `harness run` builds it; each build made once."""
    cache: dict[tuple, Path] = {}
    out = tmp_path_factory.mktemp("firmware")

    def get(backend: str, target: str, variant: str = "q16", hooks: bool = False) -> Path:
        key = (backend, target, variant, hooks)
        if key not in cache:
            built = get_backend(backend).build(sources(tiny.runs[target], variant),
                                               load_target(target), out / backend / target,
                                               test_hooks=hooks)
            cache[key] = built.path
        return cache[key]

    return get


# --------------------------------------------------------------------------- the host side


class Link:
    """A minimal host: frames out with consecutive seqs, frames in through a FrameDecoder that,
    like the C receiver, does not salvage. Checks that the device's seqs are consecutive."""

    def __init__(self, device: NativeDevice | QemuDevice, backend: str, target: TargetProfile):
        self.device, self.backend, self.target = device, backend, target
        self.port = device.open(timeout=READ_TIMEOUT_S)
        self.decoder = FrameDecoder(salvage=False)
        self.inbox: deque[Message] = deque()
        self.seq = 0      # seq of the next host frame
        self.rx_seq = None  # seq the next device frame must carry: set by the first HELLO
        hello = self.read()
        assert hello.name == "HELLO", hello
        self.hello = hello.fields

    def frame(self, name: str, **fields) -> bytes:
        frame = encode_frame(name, self.seq, **fields)
        self.seq = (self.seq + 1) & 0xFF
        return frame

    def send(self, name: str, **fields) -> None:
        self.port.write(self.frame(name, **fields))

    def read(self, timeout: float = READ_TIMEOUT_S) -> Message:
        deadline = time.monotonic() + timeout
        while not self.inbox:
            if time.monotonic() > deadline:
                raise AssertionError(f"no frame from the {self.backend} device within "
                                     f"{timeout} s (alive={self.device.alive})")
            self.inbox.extend(self.decoder.feed(self.port.read(self.port.in_waiting or 1)))
        message = self.inbox.popleft()
        if self.rx_seq is not None:
            assert message.seq == self.rx_seq, f"device seq {message.seq}, expected {self.rx_seq}"
        self.rx_seq = (message.seq + 1) & 0xFF
        if message.name == "HELLO" and hasattr(self, "hello"):
            return self.read(timeout)  # a repeated announcement from before our first frame
        return message

    def expect(self, name: str, **fields) -> Message:
        message = self.read()
        assert message.name == name, f"expected {name}, got {message}"
        for key, value in fields.items():
            assert message.fields[key] == value, f"{name}.{key}: {message.fields}"
        return message

    def expect_error(self, code: ErrorCode, **fields) -> Message:
        return self.expect("ERROR", code=int(code), **fields)


def corrupted(frame: bytes) -> bytes:
    """The same frame with one byte in its middle changed (never to the 0x00 delimiter)."""
    bad = bytearray(frame)
    i = len(bad) // 2
    bad[i] ^= 0x5A
    if bad[i] == 0:
        bad[i] = 0x01
    return bytes(bad)


def stream(link: Link, counts: np.ndarray, corrupt: set[int] = frozenset(),
           frame_samples: int = FRAME_SAMPLES) -> tuple[list[Message], list[Message]]:
    """Send `counts` (from a stream start: boot or RESET) within the device's credit, resending
    from expected_seq after BAD_FRAME or BAD_SEQUENCE (go-back-N), until every window has its
    RESULT and the CREDIT that follows it. Frames whose seq is in `corrupt` are corrupted the
    first time they go out. Returns (results, errors)."""
    corrupt = set(corrupt)
    expected = len(windows_of(counts))
    limit = link.hello["rx_capacity"]  # the first CREDIT limit
    offsets: dict[int, int] = {}  # host seq -> first sample it carried
    sent = 0
    results: list[Message] = []
    errors: list[Message] = []
    awaiting_credit = False
    while len(results) < expected or awaiting_credit:
        credit = limit - sent
        if sent < len(counts) and credit > 0:
            n = min(frame_samples, credit, len(counts) - sent)
            seq = link.seq
            offsets[seq] = sent
            frame = link.frame("SAMPLES", samples=counts[sent:sent + n].ravel().tolist())
            if seq in corrupt:
                corrupt.discard(seq)
                frame = corrupted(frame)
            link.port.write(frame)
            sent += n
            continue
        message = link.read()
        if message.name == "RESULT":
            results.append(message)
            awaiting_credit = True
        elif message.name == "CREDIT":
            limit = message.fields["limit"]
            awaiting_credit = False
        elif message.name == "ERROR" and message.fields["code"] in (ErrorCode.BAD_FRAME,
                                                                    ErrorCode.BAD_SEQUENCE):
            errors.append(message)
            link.seq = message.fields["expected_seq"]
            sent = offsets[link.seq]
        else:
            raise AssertionError(f"unexpected frame while streaming: {message}")
    return results, errors


def assert_bit_exact(results: list[Message], counts: np.ndarray, q: QuantizedModel) -> None:
    reference = q.run(windows_of(counts))
    logits = np.array([r.fields["logits"] for r in results], dtype=np.int64)
    assert [r.fields["window_index"] for r in results] == list(range(len(reference)))
    np.testing.assert_array_equal(logits, reference)
    assert [r.fields["class_index"] for r in results] == reference.argmax(axis=1).tolist()


def open_device(path: Path, backend: str, target: str) -> NativeDevice | QemuDevice:
    if backend == "native":
        return NativeDevice(path, target, timeout=READ_TIMEOUT_S)
    return QemuDevice(path, target, timeout=READ_TIMEOUT_S)


@pytest.fixture(params=BACKENDS)
def link(request, firmware):
    """A booted q16 device on each backend, HELLO already read."""
    backend, target = request.param
    path = firmware(backend, target)
    with open_device(path, backend, target) as device:
        yield Link(device, backend, load_target(target))


def run_one(firmware, backend: str, target: str, counts: np.ndarray, variant: str = "q16"
            ) -> tuple[dict, list[Message]]:
    """Boot a device, stream `counts`, return (HELLO fields, results)."""
    path = firmware(backend, target, variant)
    with open_device(path, backend, target) as device:
        link = Link(device, backend, load_target(target))
        results, errors = stream(link, counts)
        assert errors == []
        return link.hello, results


# --------------------------------------------------------------------------- every backend


def test_hello_describes_target_and_model(link, tiny, firmware):
    target = link.target
    hello = link.hello
    unit = CounterUnit.nanoseconds if link.backend == "native" else CounterUnit.instructions
    assert hello["protocol_version"] == PROTOCOL_VERSION
    assert hello["target"] == target.name
    assert hello["window"] == target.window == WINDOW
    assert hello["hop"] == target.hop == HOP
    assert hello["sample_rate_mhz"] == round(target.sample_rate_hz * 1000)
    assert hello["clock_hz"] == target.clock_hz
    assert hello["counter_unit"] == unit
    assert hello["model_hash"] == tiny.q.model_hash
    assert hello["model_variant"] == "q16"
    assert hello["n_classes"] == len(CLASSES)
    assert hello["logit_type"] == LogitType.int16
    assert hello["logit_frac"] == tiny.q.logit_frac
    assert hello["input_frac"] == INPUT_FRAC
    assert hello["rx_capacity"] == WINDOW
    built = build_info(firmware(link.backend, target.name))
    assert hello["build_id"] == built["build_id"] and len(built["build_id"]) == 16


def test_stream_gives_bit_exact_results(link, tiny):
    counts = stream_counts(WINDOW + 3 * HOP)
    results, errors = stream(link, counts)
    assert errors == []
    assert len(results) == 4
    assert_bit_exact(results, counts, tiny.q)
    assert all(r.fields["latency"] > 0 for r in results)
    # The limit is the next inference point, and the last frame is acknowledged.
    link.send("PING", token=1)
    link.expect("PONG", token=1)
    link.expect("CREDIT", limit=len(counts) + HOP, ack_seq=link.seq - 1)


def test_window_completing_inside_a_frame(link, tiny):
    """Frames of 7 samples: the windows at 320 and 384 samples end inside a frame; the
    inference runs at that exact sample and the rest of the frame goes into the next window."""
    counts = stream_counts(WINDOW + 2 * HOP, seed=5)
    results, errors = stream(link, counts, frame_samples=7)
    assert errors == []
    assert_bit_exact(results, counts, tiny.q)


def test_corrupted_frame_is_reported_and_recovered(link, tiny):
    counts = stream_counts(WINDOW + 3 * HOP)
    results, errors = stream(link, counts, corrupt={2})
    # One error for the whole gap: the frames sent after the corrupted one are dropped quietly.
    assert [(e.fields["code"], e.fields["expected_seq"]) for e in errors] == \
        [(ErrorCode.BAD_FRAME, 2)]
    assert_bit_exact(results, counts, tiny.q)
    link.send("STATS_REQUEST")
    stats = link.expect("STATS").fields
    assert stats["bad_frames"] == 1
    assert stats["samples"] == len(counts)


def test_out_of_order_frame_gets_one_bad_sequence(link):
    samples = stream_counts(FRAME_SAMPLES).ravel().tolist()
    link.send("SAMPLES", samples=samples)            # seq 0: accepted
    link.seq = 2
    link.send("SAMPLES", samples=samples)            # seq 2: seq 1 is missing
    link.send("SAMPLES", samples=samples)            # seq 3: same gap, no second error
    link.expect_error(ErrorCode.BAD_SEQUENCE, expected_seq=1, detail=2)
    link.seq = 1
    link.send("PING", token=7)                       # seq 1: accepted, the gap is closed
    link.expect("PONG", token=7)
    link.expect("CREDIT", limit=WINDOW, ack_seq=1)
    link.seq = 5
    link.send("PING", token=8)                       # a new gap: reported again
    link.expect_error(ErrorCode.BAD_SEQUENCE, expected_seq=2, detail=5)


def test_unknown_message_is_rejected_and_skipped(link):
    payload = bytes([0x7F, link.seq])                 # no such message type
    link.port.write(cobs_encode(payload + crc16(payload).to_bytes(2, "little")) + b"\x00")
    link.seq += 1
    link.expect_error(ErrorCode.BAD_MESSAGE, expected_seq=1, detail=0x7F)
    link.send("PING", token=9)                        # the next seq is accepted
    link.expect("PONG", token=9)
    link.expect("CREDIT", limit=WINDOW, ack_seq=1)


def test_samples_beyond_the_credit_overflow(link):
    capacity = link.hello["rx_capacity"]
    counts = stream_counts(capacity + FRAME_SAMPLES)
    full = capacity // FRAME_SAMPLES  # whole frames that fit the first credit
    for i in range(full + 1):
        link.send("SAMPLES", samples=counts[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]
                  .ravel().tolist())
    link.expect_error(ErrorCode.OVERFLOW, expected_seq=full, detail=FRAME_SAMPLES)
    link.seq = full
    link.send("PING", token=3)
    link.expect("PONG", token=3)
    link.expect("CREDIT", limit=WINDOW, ack_seq=full)
    link.send("STATS_REQUEST")
    stats = link.expect("STATS").fields
    assert stats["overruns"] == 1
    assert stats["samples"] == full * FRAME_SAMPLES
    assert stats["windows"] == 0


def test_ping_answers_pong_and_credit(link):
    link.send("PING", token=0xDEADBEEF)
    link.expect("PONG", token=0xDEADBEEF)
    link.expect("CREDIT", limit=WINDOW, ack_seq=0)
    link.send("SAMPLES", samples=stream_counts(FRAME_SAMPLES).ravel().tolist())
    link.send("PING", token=2)
    link.expect("PONG", token=2)
    link.expect("CREDIT", limit=WINDOW, ack_seq=2)


def test_reset_restarts_window_numbering(link, tiny):
    first = stream_counts(WINDOW + HOP, seed=11)
    results, _ = stream(link, first)
    assert_bit_exact(results, first, tiny.q)
    # Half a window, then RESET: those samples must not reach the next window.
    link.send("SAMPLES", samples=stream_counts(FRAME_SAMPLES, seed=12).ravel().tolist())
    link.send("RESET")
    link.expect("CREDIT", limit=WINDOW, ack_seq=link.seq - 1)
    second = stream_counts(WINDOW, seed=13)
    results, errors = stream(link, second)
    assert errors == []
    assert_bit_exact(results, second, tiny.q)  # window_index 0 again
    link.send("STATS_REQUEST")
    assert link.expect("STATS").fields["windows"] == 3


def test_hello_request_starts_the_link_again_for_a_new_host(link, tiny):
    """A board is not reset between runs: the next host asks for HELLO, whatever the seq."""
    first = stream_counts(WINDOW + HOP, seed=21)
    results, _ = stream(link, first)
    assert_bit_exact(results, first, tiny.q)
    link.send("SAMPLES", samples=stream_counts(FRAME_SAMPLES, seed=22).ravel().tolist())
    # The new host: its own seq (any), a flush first, as DeviceSession sends it.
    link.port.write(b"\x00" + encode_frame("HELLO_REQUEST", 0x77))
    del link.hello
    link.rx_seq, link.seq = None, 0
    hello = link.read()
    assert hello.name == "HELLO" and hello.seq == 0  # numbered as after boot
    link.hello = hello.fields
    second = stream_counts(WINDOW, seed=23)
    results, errors = stream(link, second)  # host seq 0 is what the device expects
    assert errors == []
    assert_bit_exact(results, second, tiny.q)  # the old host's half window is gone
    link.send("STATS_REQUEST")
    stats = link.expect("STATS").fields
    assert (stats["windows"], stats["samples"]) == (1, WINDOW)  # counted from the request
    assert (stats["stack_peak"] > 0) == (link.backend != "native")  # since boot: kept


def test_stats_reports_the_stack(link):
    stream(link, stream_counts(WINDOW))
    link.send("STATS_REQUEST")
    stats = link.expect("STATS").fields
    assert stats["windows"] == 1 and stats["samples"] == WINDOW
    assert stats["bad_frames"] == 0 and stats["overruns"] == 0
    if link.backend == "native":
        assert stats["stack_peak"] == 0 and stats["stack_size"] == 0  # unknown on the host
    else:
        assert stats["stack_size"] == link.target.stack_bytes
        assert 0 < stats["stack_peak"] < stats["stack_size"]


def test_fault_trigger_is_off_in_normal_builds(link):
    link.send("SAMPLES", samples=list(FAULT_SAMPLE))
    link.send("PING", token=4)
    link.expect("PONG", token=4)
    link.expect("CREDIT", limit=WINDOW)
    assert link.device.alive


# --------------------------------------------------------------------------- faults


def _text_range(elf: Path) -> range:
    with elf.open("rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        return range(text["sh_addr"], text["sh_addr"] + text["sh_size"])


@pytest.mark.parametrize("target", QEMU_TARGETS)
def test_fault_hook_reports_hard_fault_under_qemu(firmware, target):
    elf = firmware("qemu", target, hooks=True)
    with QemuDevice(elf, target, timeout=READ_TIMEOUT_S) as device:
        link = Link(device, "qemu", load_target(target))
        link.send("PING", token=1)
        link.expect("PONG")
        link.expect("CREDIT")
        link.send("SAMPLES", samples=list(FAULT_SAMPLE))
        error = link.expect_error(ErrorCode.HARD_FAULT, expected_seq=2)
        pc, cfsr = error.fields["pc"], error.fields["detail"]
        assert pc in _text_range(elf) and pc < load_target(target).flash_bytes
        assert cfsr & CFSR_PRECISERR
        assert device.wait(READ_TIMEOUT_S) == EXIT_FAULT
        with pytest.raises(EmulatorError):
            device.check_alive()


@NATIVE
def test_fault_hook_reports_signal_natively(firmware):
    exe = firmware("native", "eartag", hooks=True)
    with NativeDevice(exe, "eartag", timeout=READ_TIMEOUT_S) as device:
        link = Link(device, "native", load_target("eartag"))
        link.send("SAMPLES", samples=list(FAULT_SAMPLE))
        error = link.expect_error(ErrorCode.HARD_FAULT, expected_seq=1)
        assert error.fields["detail"] in (signal.SIGSEGV, signal.SIGBUS)
        assert device.wait(READ_TIMEOUT_S) == EXIT_FAULT
        with pytest.raises(EmulatorError, match="ended with status 3"):
            device.check_alive()


# --------------------------------------------------------------------------- QEMU only


@pytest.mark.parametrize("target", QEMU_TARGETS)
def test_same_window_same_instruction_count(firmware, target):
    counts = stream_counts(WINDOW, seed=21)
    with QemuDevice(firmware("qemu", target), target, timeout=READ_TIMEOUT_S) as device:
        link = Link(device, "qemu", load_target(target))
        (first,), _ = stream(link, counts)
        link.send("RESET")
        link.expect("CREDIT", limit=WINDOW)
        (second,), _ = stream(link, counts)
    assert first.fields["logits"] == second.fields["logits"]
    assert first.fields["latency"] == second.fields["latency"] > 0


@pytest.mark.parametrize("target", QEMU_TARGETS)
def test_float_variant_runs(firmware, tiny, target):
    counts = stream_counts(WINDOW + HOP, seed=31)
    hello, results = run_one(firmware, "qemu", target, counts, variant="f32")
    assert hello["model_variant"] == "f32"
    assert hello["model_hash"] == tiny.net.model_hash
    assert hello["logit_type"] == LogitType.float32 and hello["logit_frac"] == 0
    assert [r.fields["window_index"] for r in results] == [0, 1]
    logits = np.stack([decode_logits(r.fields["logits"], hello["logit_type"])
                       for r in results])
    reference = tiny.net.run(windows_of(counts) / 2.0 ** INPUT_FRAC)
    np.testing.assert_allclose(logits, reference, rtol=1e-3, atol=1e-4)


@ON_QEMU
def test_float_is_slower_than_q16_on_the_collar(firmware):
    counts = stream_counts(WINDOW, seed=41)
    _, (q16,) = run_one(firmware, "qemu", "collar", counts, variant="q16")
    _, (f32,) = run_one(firmware, "qemu", "collar", counts, variant="f32")
    print(f"\ncollar (Cortex-M3, soft float) instructions per inference: "
          f"q16 {q16.fields['latency']}, f32 {f32.fields['latency']}")
    assert f32.fields["latency"] > q16.fields["latency"]


@ON_QEMU
@NATIVE
def test_native_and_qemu_give_identical_logits(firmware, tiny):
    counts = stream_counts(WINDOW + HOP, seed=51)
    logits = {}
    for backend, target in (("native", "eartag"), ("qemu", "eartag"), ("qemu", "collar")):
        _, results = run_one(firmware, backend, target, counts)
        logits[f"{backend}-{target}"] = [r.fields["logits"] for r in results]
    assert len(logits["native-eartag"]) == 2
    assert logits["native-eartag"] == logits["qemu-eartag"] == logits["qemu-collar"]
    np.testing.assert_array_equal(np.array(logits["native-eartag"]),
                                  tiny.q.run(windows_of(counts)))


@pytest.mark.requires("arm-none-eabi-gcc", "newlib")
def test_collar_q16_firmware_fits_the_collar(firmware):
    elf = firmware("qemu", "collar")
    memory = elf_memory(elf)
    collar = load_target("collar")
    print(f"\ncollar q16 firmware: flash {memory['flash']} B of {collar.flash_bytes}, "
          f"static RAM {memory['ram_static']} B + stack {memory['stack_reserved']} B of "
          f"{collar.ram_bytes}")
    assert memory["flash_limit"] == collar.flash_bytes
    assert memory["ram_limit"] == collar.ram_bytes
    assert 0 < memory["flash"] <= collar.flash_bytes
    assert memory["ram_static"] + memory["stack_reserved"] <= collar.ram_bytes


# --------------------------------------------------------------------------- build checks


def test_build_refuses_a_run_for_another_rate(tiny, tmp_path):
    eartag, collar = load_target("eartag"), load_target("collar")
    with pytest.raises(SampleRateError, match=r"50 Hz.*62\.5 Hz"):
        build_model_firmware(sources(tiny.runs["collar"]), eartag,
                             eartag.platform_for("qemu"), tmp_path)
    with pytest.raises(SampleRateError, match=r"62\.5 Hz.*50 Hz"):
        build_native(sources(tiny.runs["eartag"]), collar, tmp_path)


def test_build_refuses_a_run_for_another_window(tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny.runs["collar"], run)
    manifest = run / "c" / "q16" / "manifest.json"
    described = json.loads(manifest.read_text())
    described["framing"]["hop"] = 32
    manifest.write_text(json.dumps(described))
    collar = load_target("collar")
    with pytest.raises(FramingMismatchError, match=r"hop of 32 samples.*uses 64"):
        build_model_firmware(sources(run), collar, collar.platform_for("qemu"), tmp_path / "out")


def test_build_names_a_missing_variant(tiny, tmp_path):
    with pytest.raises(RunDirectoryError, match="harness export"):
        RunDirectory(tiny.runs["collar"]).model_sources("q8")


# --------------------------------------------------------------------------- native lifecycle


@NATIVE
def test_native_device_is_ended_on_every_exit_path(firmware):
    exe = firmware("native", "eartag")
    device = NativeDevice(exe, "eartag", timeout=READ_TIMEOUT_S)
    with pytest.raises(KeyboardInterrupt), device:
        Link(device, "native", load_target("eartag"))
        assert device.alive
        raise KeyboardInterrupt
    assert not device.alive and device.exit_code is not None
    device.stop()  # idempotent
    with pytest.raises(EmulatorError, match="ended with status"):
        device.check_alive()
    with pytest.raises(EmulatorError, match="not started"):
        _ = NativeDevice(exe).url


def _process_gone(pid: int) -> bool:
    """True once `pid` has exited (gone, or a zombie nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


ORPHAN_SCRIPT = """
import os, sys
from device_sim.backends.native import NativeDevice
device = NativeDevice(sys.argv[1], "eartag").start()
port = device.open(timeout=10)
assert port.read(1) == b"\\x00"       # booted: the flush byte before HELLO
print(device.pid, flush=True)
os._exit(9)                           # die without any cleanup
"""


@NATIVE
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_native_device_exits_when_its_host_dies(firmware, repository):
    """The host process dies without cleanup: the device sees its terminal go and exits."""
    exe = firmware("native", "eartag")
    result = subprocess.run([sys.executable, "-c", ORPHAN_SCRIPT, str(exe)], capture_output=True,
                            text=True, timeout=READ_TIMEOUT_S, cwd=repository)
    assert result.returncode == 9, result.stderr
    pid = int(result.stdout.strip())
    deadline = time.monotonic() + READ_TIMEOUT_S
    while not _process_gone(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"native device {pid} outlived its host")
        time.sleep(0.02)  # polling a condition with a deadline, not a guess at a duration
