"""`pytest -m hil`: the exported model inside real firmware on the emulated tags.

Each test runs once per --hil-target (collar and ear tag by default) on --hil-backend (QEMU by
default). In CI, --hil-strict (on when CI is set) makes a missing emulator or toolchain fail.
"""

from __future__ import annotations

import socket
import subprocess
import threading

import numpy as np
import pytest

from device_sim.backends import prepare_device
from device_sim.process import group_members
from harness.assertions import (
    assert_fits,
    assert_float_agreement,
    assert_int_exact,
    assert_no_missed_windows,
)
from harness.errors import DeviceTimeoutError, EmulatorError
from harness.session import DeviceSession
from models.quantize import counts_from_g
from models.recordings import make_windows
from models.rundir import RunDirectory

pytestmark = pytest.mark.hil


def lying_still(samples: int) -> np.ndarray:
    """Wire counts of a tag at rest: 1 g on z."""
    return counts_from_g(np.tile([0.0, 0.0, 1.0], (samples, 1)))


def test_q16_gru_mlp_is_bit_exact_on_the_device(hil_run, hil_target):
    report = hil_run("q16", max_windows=40)
    assert report.windows == 40
    # A sample stratified by class: the scores mean something.
    assert sum(1 for n in report.windows_per_class.values() if n) >= 3
    assert report.scores_assessed
    assert_int_exact(report)
    assert_no_missed_windows(report)
    assert_float_agreement(report, minimum=0.95)
    assert_fits(report)
    assert report.target == hil_target.name
    assert report.counter_unit == "instructions"  # an emulator's counter
    assert report.platform == hil_target.platform_for(report.backend).name
    assert 0 < report.latency.p50 <= report.latency.max
    assert 0 < report.memory.stack_peak <= report.memory.stack_reserved


def test_q16_is_bit_exact_when_streamed_in_real_time(hil_run):
    report = hil_run("q16", max_windows=3, realtime=True)
    assert report.realtime is True
    assert_int_exact(report)
    assert_no_missed_windows(report)
    assert report.deadline_misses is not None


def test_float_variant_runs_and_shows_the_cost_of_software_float(hil_run, hil_target):
    f32 = hil_run("f32", max_windows=3)
    q16 = hil_run("q16", max_windows=3)
    assert f32.windows == q16.windows == 3
    assert f32.float_max_abs_logit_error < 1e-3
    if not hil_target.fpu:  # the collar's Cortex-M3 emulates every float operation
        assert f32.latency.p50 > 2 * q16.latency.p50


def test_the_same_target_answers_the_same_way_twice(dut, hil_run_dir):
    """Under -icount the instruction count of a window is a property of the firmware."""
    window = lying_still(dut.info.window)
    first = dut.session.stream(window)
    second = dut.session.stream(window)
    assert [r.latency for r in first] == [r.latency for r in second]
    np.testing.assert_array_equal(first[0].logits, second[0].logits)


def test_a_new_host_is_answered_by_a_device_that_was_not_reset(dut):
    """A board stays powered between runs and stops announcing once a host spoke: the next
    session asks it for HELLO (HELLO_REQUEST) and finds it as after boot."""
    window = lying_still(dut.info.window)
    first = dut.session.stream(window)
    assert dut.session.link.hello_requests == 0  # it announced itself at boot
    dut.session.close()
    with DeviceSession(dut.device.url, dut.session.timeout, baudrate=dut.session.baudrate,
                       check_alive=dut.device.check_alive) as again:
        assert again.info == dut.info
        assert again.link.hello_requests >= 1
        second = again.stream(window)
        assert again.stats()["windows"] == 1  # counted from the request, not from boot
    assert [r.index for r in second] == [0]
    np.testing.assert_array_equal(first[0].logits, second[0].logits)


# --- faults on the wire and in the emulator ------------------------------------------------

class CorruptingProxy:
    """A TCP relay between the host session and the device that flips one byte of the n-th
    frame going one way: a noisy UART in a box."""

    def __init__(self, device_url: str, direction: str, frame_number: int) -> None:
        host, port = device_url.removeprefix("socket://").split(":")
        self._upstream = socket.create_connection((host, int(port)), timeout=10)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"
        self.direction, self.frame_number = direction, frame_number
        self.corrupted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        to_device = (client, self._upstream, "to_device")
        to_host = (self._upstream, client, "to_host")
        for source, sink, way in (to_device, to_host):
            threading.Thread(target=self._pump, args=(source, sink, way), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, way: str) -> None:
        frames = 0
        try:
            while data := source.recv(4096):
                data = bytearray(data)
                for i, byte in enumerate(data):
                    if byte == 0:
                        frames += 1
                    elif (way == self.direction and frames == self.frame_number
                          and not self.corrupted):
                        data[i] ^= 0x10  # one flipped bit inside the frame
                        self.corrupted += 1
                sink.sendall(bytes(data))
        except OSError:
            pass

    def close(self) -> None:
        self._listener.close()
        self._upstream.close()


def _reference(hil_run_dir, recording, session):
    bout = np.flatnonzero(recording.bouts == recording.bouts[0])
    counts = counts_from_g(recording.accel_g[bout])
    windows = make_windows(recording, session.info.window, session.info.hop)
    first = windows.bouts == recording.bouts[0]
    reference = RunDirectory(hil_run_dir).load_quantized("q16").run(
        counts_from_g(windows.x[first]))
    return counts, reference


@pytest.mark.hil(backend="qemu")  # the proxy relays QEMU's TCP serial port
@pytest.mark.parametrize("direction", ["to_device", "to_host"])
def test_a_corrupted_frame_costs_one_frame_and_the_run_goes_on(hil_target, hil_run_dir,
                                                               hil_recording, tmp_path,
                                                               direction):
    model = RunDirectory(hil_run_dir).model_sources("q16")
    prepared = prepare_device("qemu", model, hil_target, tmp_path)
    with prepared.device as device:
        # Frame 4 on the way in is a SAMPLES frame; on the way out, the first RESULT or so.
        proxy = CorruptingProxy(device.url, direction, frame_number=4)
        try:
            with DeviceSession(proxy.url, timeout=10, check_alive=device.check_alive) as s:
                counts, reference = _reference(hil_run_dir, hil_recording, s)
                results = s.stream(counts)
                link = s.link
        finally:
            proxy.close()
    assert proxy.corrupted == 1
    got = {r.index: r.logits for r in results}
    if direction == "to_device":
        # The device dropped the frame, said so, and the session sent it again: nothing lost.
        assert link.device_errors.get("BAD_FRAME", 0) + link.device_errors.get(
            "BAD_SEQUENCE", 0) >= 1
        assert link.resent_frames >= 1
        assert sorted(got) == list(range(len(reference)))
    else:
        # One device frame was lost and counted; every other window still came back.
        assert link.bad_frames_received >= 1
        assert len(got) >= len(reference) - 1
    for index, logits in got.items():
        np.testing.assert_array_equal(logits, reference[index])


def test_killing_the_emulator_mid_run_is_a_clear_error_and_leaves_no_process(dut):
    window = lying_still(dut.info.window * 4)
    dut.session.timeout = 5.0
    with pytest.raises((DeviceTimeoutError, EmulatorError)) as error:
        dut.session.stream(window, on_result=lambda result: dut.device.stop())
    assert "127.0.0.1" in str(error.value) or dut.device.label in str(error.value)
    assert not dut.device.alive
    assert not group_members(dut.device.pid)  # nor any child of it (Renode's Mono)
    leftover = subprocess.run(["pgrep", "-f", str(dut.artefact)], capture_output=True)
    assert leftover.returncode == 1, leftover.stdout


@pytest.mark.hil(backend="qemu")
@pytest.mark.requires("gcc")
def test_host_native_build_gives_the_same_integer_logits(hil_target, hil_run_dir,
                                                         hil_recording, tmp_path):
    model = RunDirectory(hil_run_dir).model_sources("q16")
    logits = {}
    for backend in ("qemu", "native"):
        prepared = prepare_device(backend, model, hil_target, tmp_path / backend)
        with prepared.device as device, DeviceSession(device.url,
                                                      check_alive=device.check_alive) as s:
            counts, reference = _reference(hil_run_dir, hil_recording, s)
            logits[backend] = np.stack([r.logits for r in s.stream(counts)])
    np.testing.assert_array_equal(logits["native"], logits["qemu"])
    np.testing.assert_array_equal(logits["qemu"], reference)
