"""A run checks what it tests: the device it talks to, the freshness of what it was built from,
and never leaves an old report looking current."""

from __future__ import annotations

import json
import shutil
import socket
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from device_sim.backends.native import NativeDevice
from device_sim.model_sources import ModelSources
from device_sim.protocol import PROTOCOL_VERSION, FrameDecoder, ProtocolError, encode_frame
from device_sim.targets import load_target
from harness.cli import main
from harness.errors import DeviceError, DeviceMismatchError, HarnessError, RunDirectoryError
from harness.run import RunOptions, run_on_device
from harness.session import DeviceSession
from models.pipeline import export_run, quantize_run
from models.rundir import RunDirectory

EARTAG = pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")


def retrain(run_dir) -> None:
    """What `harness train --force` leaves for the other steps: other weights, same names."""
    run = RunDirectory(run_dir)
    state = torch.load(run.checkpoint("student_kd"), weights_only=True)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()},
               run.checkpoint("student_kd"))


# --- derived files carry what they were made from -----------------------------------------

@EARTAG
def test_a_retrained_run_refuses_its_stale_quantized_models_and_c(run_copy, capsys):
    run = RunDirectory(run_copy)
    run.load_quantized("q16")
    run.model_sources("f32")
    retrain(run_copy)
    with pytest.raises(RunDirectoryError, match=r"quantized/q16 was made from another "
                                                 r"student_kd\.pt.*harness quantize"):
        run.load_quantized("q16")
    with pytest.raises(RunDirectoryError, match=r"c/f32 was made from another.*harness export"):
        run.model_sources("f32")
    assert main(["run", str(run_copy), "--backend", "native"]) == 2  # before any build
    assert "run `harness quantize`, then `harness export`" in capsys.readouterr().err
    quantize_run(run_copy)
    run.load_quantized("q16")
    with pytest.raises(RunDirectoryError, match="harness export"):
        run.model_sources("q16")  # quantized again, exported not yet
    export_run(run_copy, check=False)
    assert run.model_sources("q16").manifest.model_hash == run.load_quantized("q16").model_hash


@EARTAG
def test_train_into_an_existing_run_is_refused_unless_forced(run_copy, capsys):
    tiny = ["--synthetic", "--synthetic-animals", "3", "--synthetic-seconds", "12",
            "--epochs", "1", "--teacher-filters", "4,4,4", "--hidden", "4", "--perceptron",
            "4", "--head", "4", "--quiet", "--out", str(run_copy)]
    before = RunDirectory(run_copy).config()
    assert main(["train", *tiny]) == 2
    assert "holds a run already" in capsys.readouterr().err
    assert RunDirectory(run_copy).config() == before
    assert main(["train", *tiny, "--force"]) == 0
    assert not (run_copy / "quantized").exists() and not (run_copy / "c").exists()
    assert RunDirectory(run_copy).config()["models"]["student_kd"]["hidden"] == 4


# --- the device must be the run's -----------------------------------------------------------

def _native(model: ModelSources, target: str, out):
    from device_sim.appbuild import build_native

    return NativeDevice(build_native(model, load_target(target), out), target, timeout=10)


@pytest.mark.requires("gcc", "arm-none-eabi-gcc", "newlib")  # serial builds its ELF for memory
@EARTAG
def test_a_device_running_other_firmware_is_refused_before_streaming(run_copy, tmp_path):
    run = RunDirectory(run_copy)
    # The ear tag run's float32 firmware, and its q16 model retargeted to the collar's framing.
    collar = tmp_path / "collar-c"
    shutil.copytree(run.c_dir("q16"), collar)
    manifest = json.loads((collar / "manifest.json").read_text())
    manifest["framing"] |= {"rate_hz": 50.0, "target": "collar"}
    (collar / "manifest.json").write_text(json.dumps(manifest))
    wrong = {"f32 firmware": (run.model_sources("f32"), "eartag", ["variant 'f32'",
                                                                   "model hash"]),
             "collar firmware": (ModelSources.load(collar), "collar", ["target 'collar'",
                                                                       "sample rate"])}
    for name, (model, target, differences) in wrong.items():
        with _native(model, target, tmp_path / name) as device:
            options = RunOptions(target="eartag", backend="serial", port=device.url,
                                 max_windows=2, timeout=10, report=tmp_path / "report")
            with pytest.raises(DeviceMismatchError) as raised:
                run_on_device(run_copy, options)
        message = str(raised.value)
        assert all(difference in message for difference in differences), message
        assert "where the run needs" in message and "Flash the firmware" in message
        assert not (tmp_path / "report" / "report.json").exists()


@pytest.mark.requires("gcc")
@EARTAG
def test_a_failed_run_leaves_no_old_report(run_copy, tmp_path):
    report = tmp_path / "report"
    options = RunOptions(target="eartag", backend="native", max_windows=2, report=report)
    assert run_on_device(run_copy, options).passed
    assert (report / "report.json").exists()
    retrain(run_copy)  # the next run cannot start
    with pytest.raises(RunDirectoryError):
        run_on_device(run_copy, options)
    assert not (report / "report.json").exists()


# --- a hostile device ------------------------------------------------------------------------

HELLO = dict(protocol_version=PROTOCOL_VERSION, target="eartag", build_id="0" * 16,
             model_hash="0" * 16, model_variant="q16", sample_rate_mhz=62500, window=256,
             hop=64, clock_hz=64_000_000, counter_unit=0, n_classes=4, logit_type=0,
             logit_frac=10, input_frac=12, rx_capacity=256)


class FakeDevice:
    """A TCP peer that, like the firmware, repeats its `frames` until the host speaks, then
    answers each host message by its name (`answers`: name -> wire bytes)."""

    REPEAT_S = 0.1

    def __init__(self, frames: bytes, answers: dict[str, bytes] | None = None) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self._frames, self._answers = frames, answers or {}
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        connection, _ = self._server.accept()
        connection.settimeout(self.REPEAT_S)
        decoder = FrameDecoder()
        with connection:
            try:
                data = b""
                while not data:  # pyserial empties its input at open: say it again until heard
                    connection.sendall(self._frames)
                    try:
                        data = connection.recv(4096)
                    except TimeoutError:
                        continue
                connection.settimeout(10)
                while data:
                    for message in decoder.feed(data):
                        connection.sendall(self._answers.get(message.name, b""))
                    data = connection.recv(4096)
            except OSError:
                pass

    def close(self) -> None:
        self._server.close()


@pytest.mark.parametrize(("change", "match"), [
    ({"protocol_version": 99}, r"protocol version 99, this harness version 1"),
    ({"counter_unit": 9}, r"HELLO\.counter_unit = 9 is none of the protocol's 0 \(instruc"),
    ({"logit_type": 7}, r"HELLO\.logit_type = 7 is none of"),
])
def test_a_hello_outside_the_protocol_is_refused(change, match):
    device = FakeDevice(encode_frame("HELLO", 0, **HELLO | change))
    try:
        with pytest.raises(ProtocolError, match=match):
            DeviceSession(device.url, timeout=5).open()
    finally:
        device.close()


def test_an_error_code_outside_the_protocol_is_a_device_error():
    answers = {"RESET": encode_frame("CREDIT", 1, limit=256, ack_seq=0),
               "SAMPLES": encode_frame("ERROR", 2, code=77, expected_seq=1, detail=5, pc=0)}
    device = FakeDevice(encode_frame("HELLO", 0, **HELLO), answers)
    try:
        with DeviceSession(device.url, timeout=5) as session, \
                pytest.raises(DeviceError, match="device error CODE_77"):
            session.stream(np.zeros((256, 3), np.int16))
    finally:
        device.close()


# A device that answers anything with anything: the session must end, in results or in a
# HarnessError, never hang and never fail otherwise.
U8, U16, U32 = (st.integers(0, 2**n - 1) for n in (8, 16, 32))
I32 = st.integers(-(2**31), 2**31 - 1)
DEVICE_FRAMES = st.one_of(
    st.builds(lambda seq, *f: encode_frame("RESULT", seq, window_index=f[0], class_index=f[1],
                                           latency=f[2], logits=f[3]),
              U8, U32, U8, U32, st.lists(I32, max_size=32)),
    st.builds(lambda seq, limit, ack: encode_frame("CREDIT", seq, limit=limit, ack_seq=ack),
              U8, U16, U8),
    st.builds(lambda seq, code, expected, detail, pc: encode_frame(
        "ERROR", seq, code=code, expected_seq=expected, detail=detail, pc=pc),
        U8, U8, U8, U32, U32),
    st.builds(lambda seq, token: encode_frame("PONG", seq, token=token), U8, U32),
    st.binary(max_size=48),
)
ANSWERS = st.fixed_dictionaries({name: st.lists(DEVICE_FRAMES, max_size=3).map(b"".join)
                                 for name in ("RESET", "SAMPLES", "PING", "STATS_REQUEST")})


@settings(max_examples=30, deadline=None)
@given(answers=ANSWERS, after_hello=st.lists(DEVICE_FRAMES, max_size=4).map(b"".join))
def test_a_hostile_device_never_hangs_a_session(answers, after_hello):
    device = FakeDevice(encode_frame("HELLO", 0, **HELLO) + after_hello, answers)
    try:
        with DeviceSession(device.url, timeout=0.3) as session:
            results = session.stream(np.zeros((300, 3), np.int16))
            session.stats()
        assert all(0 <= r.index < 2**32 for r in results)
    except HarnessError:
        pass  # refused, timed out or reported: all fine, as long as it ends
    finally:
        device.close()
