"""Wire protocol: COBS, CRC, message layouts, stream resynchronisation, and C/Python agreement."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_sim import protocol as p
from device_sim import toolchain
from harness.errors import HarnessError

C_TEST = Path(__file__).parent / "c" / "proto_roundtrip.c"
# On top of the project's host flags: the link layer must also be free of implicit conversions.
STRICT_FLAGS = ["-Wconversion", "-Wsign-conversion"]
C_FLAGS = [*toolchain.HOST_CFLAGS, *STRICT_FLAGS]

# Representative values per message, extremes included; a new message in the TOML must be added.
EXAMPLES: dict[str, dict[str, Any]] = {
    "HELLO": {"protocol_version": p.PROTOCOL_VERSION, "target": "eartag",
              "build_id": "0123456789abcdef", "model_hash": "9f2c1e", "model_variant": "q16",
              "sample_rate_mhz": 62500, "window": 256, "hop": 64, "clock_hz": 64_000_000,
              "counter_unit": p.CounterUnit.instructions, "n_classes": 4,
              "logit_type": p.LogitType.int16, "logit_frac": -128, "input_frac": 12,
              "rx_capacity": 65535},
    "RESULT": {"window_index": 0xFFFF_FFFF, "class_index": 3, "latency": 1_234_567,
               "logits": [-(2**31), -1, 0, 2**31 - 1]},
    "CREDIT": {"limit": 64, "ack_seq": 255},
    "STATS": {"stack_peak": 9550, "stack_size": 16384, "windows": 1000, "samples": 64_256,
              "bad_frames": 0, "overruns": 1},
    "ERROR": {"code": p.ErrorCode.HARD_FAULT, "expected_seq": 0, "detail": 0x0000_0400,
              "pc": 0x0000_8123},
    "PONG": {"token": 0xDEAD_BEEF},
    "TRACE_CRC": {"window_index": 0, "layer": 2, "step": 255, "count": 64,
                  "crc32": 0xFFFF_FFFF},
    "TRACE_TENSOR": {"window_index": 7, "layer": 255, "step": 65535, "offset": 116,
                     "total": 300, "values": [(-1) ** i * (i * 281) for i in range(116)]},
    "SAMPLES": {"samples": [(-1) ** i * (i * 273) for i in range(120)]},
    "STATS_REQUEST": {},
    "PING": {"token": 0},
    "RESET": {},
    "TRACE_REQUEST": {"mode": p.MESSAGES["TRACE_REQUEST"].constants["DUMP"], "layer": 1,
                      "step": 300},
    "REPLAY_DONE": {"windows": 0xFFFF_FFFF, "samples": 16_777_216},
    "REPLAY": {},
    "HELLO_REQUEST": {},
}


def frame(name: str, seq: int = 0) -> bytes:
    return p.encode_frame(name, seq, **EXAMPLES[name])


def all_frames() -> list[bytes]:
    return [frame(name, seq) for seq, name in enumerate(EXAMPLES)]


# ----------------------------------------------------------------------------- COBS and CRC

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600) | st.lists(st.sampled_from([b"\x00", b"\x01" * 254, b"\xff" * 255,
                                                           b"\x07" * 253, b"a"]),
                                          max_size=6).map(b"".join))
def test_cobs_round_trip(data: bytes) -> None:
    encoded = p.cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert p.cobs_decode(encoded) == data


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00", b"\x11" * 253, b"\x11" * 254,
                                  b"\x11" * 255, b"\x11" * 254 + b"\x00", b"\x00" * 300,
                                  bytes(range(256)) * 2])
def test_cobs_edges(data: bytes) -> None:
    assert p.cobs_decode(p.cobs_encode(data)) == data


def test_cobs_known_vectors() -> None:
    assert p.cobs_encode(b"") == b"\x01"
    assert p.cobs_encode(b"\x00") == b"\x01\x01"
    assert p.cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert p.cobs_encode(b"\x01" * 254) == b"\xff" + b"\x01" * 254 + b"\x01"


@pytest.mark.parametrize("bad", [b"", b"\x05ab", b"\x03a\x00", b"\x02a\x00\x01"])
def test_cobs_decode_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(p.ProtocolError, match="COBS"):
        p.cobs_decode(bad)


def _crc_bitwise(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def test_crc_check_value() -> None:
    assert p.crc16(b"123456789") == 0x29B1


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_crc_matches_bitwise_definition(data: bytes) -> None:
    assert p.crc16(data) == _crc_bitwise(data)


# ----------------------------------------------------------------------------- messages

def test_spec_constants() -> None:
    assert set(EXAMPLES) == set(p.MESSAGES)
    assert p.PROTOCOL_VERSION == 1 and p.MAX_PAYLOAD == 250
    assert p.MAX_FRAME <= 253
    assert p.MessageType.SAMPLES == 0x10 and p.ErrorCode.BAD_SEQUENCE == 2
    assert p.CounterUnit.cycles == 1 and p.LogitType.float32 == 2
    assert p.MESSAGES["SAMPLES"].constants == {"MAX": 40, "AXES": 3}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_message_round_trips(name: str) -> None:
    wire = frame(name, seq=200)
    assert wire.endswith(b"\x00") and wire.count(0) == 1 and len(wire) <= p.MAX_FRAME
    message = p.decode_frame(wire)
    assert message == p.Message(name, 200, {k: v for k, v in EXAMPLES[name].items()})
    assert p.decode_payload(p.encode_payload(name, 200, **EXAMPLES[name])) == message


def test_largest_frames_fit() -> None:
    samples = p.encode_frame("SAMPLES", 1, samples=[-1] * 120)
    logits = p.encode_frame("RESULT", 1, window_index=0, class_index=0, latency=0,
                            logits=[-1] * 32)
    chunk = p.encode_frame("TRACE_TENSOR", 1, window_index=2**32 - 1, layer=255, step=65535,
                           offset=65535, total=65535, values=[-1] * 116)
    assert max(len(samples), len(logits), len(chunk)) <= p.MAX_FRAME


def test_trace_messages_are_added_not_changed() -> None:
    """The trace's messages leave every existing layout as it was (protocol version 1): a
    normal build never sends them, and its answer to TRACE_REQUEST is BAD_MESSAGE."""
    assert p.MESSAGES["TRACE_CRC"].direction == p.MESSAGES["TRACE_TENSOR"].direction \
        == "device_to_host"
    assert p.MESSAGES["TRACE_REQUEST"].direction == "host_to_device"
    assert p.MESSAGES["TRACE_REQUEST"].constants == {"CRC_ONLY": 0, "DUMP": 1}
    assert p.MESSAGES["TRACE_TENSOR"].array.element == "i16"  # the CRC's element type too
    assert p.MESSAGES["HELLO"].body_min == 84 and p.MESSAGES["RESULT"].body_min == 10


def test_numpy_values_are_accepted() -> None:
    samples = np.arange(-60, 60, dtype=np.int16)
    message = p.decode_frame(p.encode_frame("SAMPLES", np.uint8(7), samples=samples))
    assert message.fields["samples"] == samples.tolist() and message.seq == 7


@pytest.mark.parametrize(("name", "change", "match"), [
    ("CREDIT", {"ack_seq": 256}, r"CREDIT\.ack_seq: 256 out of range for u8"),
    ("PONG", {"token": -1}, r"PONG\.token: -1 out of range for u32"),
    ("HELLO", {"logit_frac": 128}, r"HELLO\.logit_frac.*i8"),
    ("CREDIT", {"limit": 1.5}, r"CREDIT\.limit: expected an integer"),
    ("CREDIT", {"limit": True}, r"CREDIT\.limit: expected an integer"),
    ("HELLO", {"target": "x" * 17}, r"HELLO\.target.*at most 16"),
    ("HELLO", {"build_id": "μ"}, r"HELLO\.build_id.*not ASCII"),
    ("SAMPLES", {"samples": [0] * 123}, r"SAMPLES\.samples: 123 values.*at most 120"),
    ("SAMPLES", {"samples": [0] * 4}, r"multiple of 3"),
    ("SAMPLES", {"samples": [0, 0, 40000]}, r"SAMPLES\.samples\[2\]: 40000 out of range for i16"),
    ("SAMPLES", {"samples": "abc"}, r"expected a sequence"),
    ("RESULT", {"logits": [0] * 33}, r"at most 32"),
])
def test_field_errors_name_the_field(name: str, change: dict[str, Any], match: str) -> None:
    with pytest.raises(p.ProtocolError, match=match):
        p.encode_frame(name, 0, **{**EXAMPLES[name], **change})


def test_message_level_errors() -> None:
    with pytest.raises(p.ProtocolError, match="missing fields \\['token'\\]"):
        p.encode_frame("PING", 0)
    with pytest.raises(p.ProtocolError, match="unknown fields \\['extra'\\]"):
        p.encode_frame("RESET", 0, extra=1)
    with pytest.raises(p.ProtocolError, match="unknown message 'NOPE'"):
        p.encode_frame("NOPE", 0)
    with pytest.raises(p.ProtocolError, match="seq: 256 out of range"):
        p.encode_frame("RESET", 256)
    assert issubclass(p.ProtocolError, HarnessError)


def _with_crc(head: bytes) -> bytes:
    return head + p.crc16(head).to_bytes(2, "little")


@pytest.mark.parametrize(("payload", "match"), [
    (b"\x13\x00\x00", "3 bytes"),
    (_with_crc(b"\x13\x00")[:-1] + b"\x00", "CRC mismatch"),
    (_with_crc(b"\x7f\x00"), "unknown message type 0x7f"),
    (_with_crc(b"\x12\x00\x01\x02\x03"), "PING: body of 3 bytes"),
    (_with_crc(b"\x10\x00\x03\x01\x00\x02\x00"), "SAMPLES.*bad count 3|layout"),
    (_with_crc(b"\x10\x00\x03" + b"\x00" * 5), "layout says 7"),
])
def test_decode_payload_errors(payload: bytes, match: str) -> None:
    with pytest.raises(p.ProtocolError, match=match):
        p.decode_payload(payload)


def test_decode_logits_float_bit_pattern() -> None:
    words = np.array([1.5, -2.25], dtype=np.float32).view(np.int32).tolist()
    wire = p.encode_frame("RESULT", 0, window_index=0, class_index=0, latency=0, logits=words)
    logits = p.decode_frame(wire).fields["logits"]
    assert p.decode_logits(logits, p.LogitType.float32).tolist() == [1.5, -2.25]
    assert p.decode_logits([3, -4], p.LogitType.int16).dtype == np.int32


# ----------------------------------------------------------------------------- device errors

def test_device_error_hard_fault_message() -> None:
    message = p.decode_frame(frame("ERROR", 5))
    error = p.DeviceError.from_message(message)
    assert isinstance(error, p.ProtocolError) and isinstance(error, HarnessError)
    assert (error.code, error.detail, error.pc) == ("HARD_FAULT", 0x400, 0x8123)
    assert "hard fault at pc=0x00008123 (CFSR=0x00000400)" in str(error)
    assert "addr2line" in str(error)


def test_device_error_other_codes() -> None:
    error = p.DeviceError(p.ErrorCode.BAD_SEQUENCE, expected_seq=17)
    assert error.code == "BAD_SEQUENCE" and "seq 17" in str(error)
    assert "credit" in str(p.DeviceError("OVERFLOW", detail=3))
    assert p.DeviceError(99).code == "CODE_99"


# ----------------------------------------------------------------------------- stream decoding

def names(messages: list[p.Message]) -> list[str]:
    return [m.name for m in messages]


def test_decoder_split_feeding_byte_by_byte() -> None:
    stream = b"".join(all_frames())
    decoder = p.FrameDecoder()
    messages = [m for i in range(len(stream)) for m in decoder.feed(stream[i:i + 1])]
    assert names(messages) == list(EXAMPLES)
    assert messages == p.FrameDecoder().feed(stream)
    assert decoder.bad_frames == 0 and decoder.frames == len(EXAMPLES)


def test_decoder_garbage_before_and_between_frames() -> None:
    garbage = b"\x41\x42\xff\x00"  # line noise, ended by a delimiter of its own
    decoder = p.FrameDecoder()
    stream = garbage + frame("PONG") + garbage + frame("CREDIT") + b"\x00\x00" + frame("PING")
    assert names(decoder.feed(stream)) == ["PONG", "CREDIT", "PING"]
    assert decoder.bad_frames == 2  # the two garbage runs; empty frames are flushes


def test_decoder_salvages_a_frame_glued_to_garbage() -> None:
    stream = frame("PONG") + b"\x41\x42\xff" + frame("CREDIT") + frame("PING")
    decoder = p.FrameDecoder()
    assert names(decoder.feed(stream)) == ["PONG", "CREDIT", "PING"]
    assert decoder.bad_frames == 1
    strict = p.FrameDecoder(salvage=False)  # what the C receiver does: the glued frame is lost
    assert names(strict.feed(stream)) == ["PONG", "PING"] and strict.bad_frames == 1


def test_decoder_a_flipped_bit_costs_exactly_one_frame() -> None:
    first, target, last = frame("PONG", 1), frame("RESULT", 2), frame("PING", 3)
    for bit in range((len(target) - 1) * 8):  # every bit but the delimiter's
        corrupt = bytearray(target)
        corrupt[bit // 8] ^= 1 << (bit % 8)
        decoder = p.FrameDecoder()
        messages = decoder.feed(first + bytes(corrupt) + last)
        assert names(messages) == ["PONG", "PING"], f"bit {bit}"
        made_a_zero = corrupt[bit // 8] == 0  # splits the frame in two bad pieces
        assert decoder.bad_frames == (2 if made_a_zero else 1), f"bit {bit}"


def test_decoder_torn_frame_costs_one_frame() -> None:
    torn = frame("RESULT")[:9]  # the sender stopped mid-frame, then started a new one
    decoder = p.FrameDecoder()
    assert names(decoder.feed(torn + frame("HELLO") + frame("PONG"))) == ["HELLO", "PONG"]
    assert decoder.bad_frames == 1
    decoder = p.FrameDecoder()  # bytes lost in the middle of a frame
    lossy = frame("RESULT")[:5] + frame("RESULT")[12:]
    assert names(decoder.feed(lossy + frame("PONG"))) == ["PONG"] and decoder.bad_frames == 1


def test_decoder_oversize_run_costs_one_frame() -> None:
    decoder = p.FrameDecoder()
    assert names(decoder.feed(b"\x05" * 1000 + b"\x00" + frame("PONG"))) == ["PONG"]
    assert decoder.bad_frames == 1 and "longer than" in (decoder.last_error or "")


def test_decoder_valid_crc_unknown_type_is_a_bad_frame() -> None:
    decoder = p.FrameDecoder()
    alien = p.cobs_encode(_with_crc(b"\x7f\x00")) + b"\x00"
    assert names(decoder.feed(alien + frame("PONG"))) == ["PONG"]
    assert decoder.bad_frames == 1 and "unknown message type" in (decoder.last_error or "")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_decoder_survives_any_garbage(garbage: bytes) -> None:
    decoder = p.FrameDecoder()
    decoder.feed(garbage)  # never raises
    assert names(decoder.feed(p.FLUSH + frame("PONG"))) == ["PONG"]


# ----------------------------------------------------------------------------- C header and C code

def test_header_generation_is_deterministic(tmp_path: Path) -> None:
    text = p.generate_c_header()
    assert text == p.generate_c_header()
    path = p.write_c_header(tmp_path)
    stamp = path.stat().st_mtime_ns
    os.utime(path, ns=(stamp - 10**9, stamp - 10**9))
    assert p.write_c_header(tmp_path) == path and path.read_text() == text
    assert path.stat().st_mtime_ns == stamp - 10**9  # unchanged: not rewritten
    for define in ["#define TAG_PROTO_VERSION 1", "#define TAG_PROTO_MAX_PAYLOAD 250",
                   "#define TAG_MSG_SAMPLES 0x10u", "#define TAG_ERR_HARD_FAULT 5u",
                   "#define TAG_COUNTER_INSTRUCTIONS 0u", "#define TAG_LOGIT_FLOAT32 2u",
                   "#define TAG_SAMPLES_MAX 40u", "#define TAG_HELLO_BODY_SIZE 84u"]:
        assert define in text


def test_link_header_is_copied_beside_tag_proto(tmp_path: Path) -> None:
    link = p.write_c_header(tmp_path).parent / "tag_link.h"
    assert link.read_bytes() == p.LINK_HEADER.read_bytes()
    stamp = link.stat().st_mtime_ns
    os.utime(link, ns=(stamp - 10**9, stamp - 10**9))
    p.write_c_header(tmp_path)
    assert link.stat().st_mtime_ns == stamp - 10**9  # unchanged: not rewritten
    text = p.generate_c_header()  # the constants first, then the link API, then the messages
    assert (text.index("#define TAG_STR_LEN") < text.index('#include "tag_link.h"')
            < text.index("tag_hello_pack"))


@pytest.mark.requires("gcc")
def test_link_header_alone_asks_for_tag_proto(tmp_path: Path) -> None:
    p.write_c_header(tmp_path)
    (tmp_path / "only_link.c").write_text('#include "tag_link.h"\n')
    result = subprocess.run(["gcc", *C_FLAGS, f"-I{tmp_path}", "-fsyntax-only",
                             str(tmp_path / "only_link.c")], capture_output=True, text=True)
    assert result.returncode != 0 and "include tag_proto.h instead" in result.stderr


@pytest.fixture(scope="module")
def c_roundtrip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("proto_c")
    p.write_c_header(folder)
    return toolchain.compile_host([p.LINK_SOURCE, C_TEST], folder / "proto_roundtrip", [folder],
                                  extra_flags=STRICT_FLAGS)


def run_c(exe: Path, mode: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(exe), mode], input=data, capture_output=True, check=True,
                          timeout=10)


@pytest.mark.requires("gcc")
def test_c_crc_and_cobs_agree(c_roundtrip: Path) -> None:
    assert run_c(c_roundtrip, "crc", b"123456789").stdout == b"0x29b1\n"
    rng = np.random.default_rng(0)
    cases = [b"", b"\x00", b"\x01" * 254, b"\x02" * 255, b"\x03" * 253 + b"\x00" * 3,
             bytes(rng.integers(0, 4, 700, dtype=np.uint8)),
             bytes(rng.integers(1, 256, 600, dtype=np.uint8))]
    for data in cases:
        assert run_c(c_roundtrip, "cobs", data).stdout == p.cobs_encode(data), len(data)
    assert run_c(c_roundtrip, "crc", cases[-2]).stdout == f"0x{p.crc16(cases[-2]):04x}\n".encode()


@pytest.mark.requires("gcc")
def test_c_decodes_and_reencodes_every_message(c_roundtrip: Path) -> None:
    stream = b"".join(all_frames())
    result = run_c(c_roundtrip, "frames", stream)
    assert result.stdout == stream
    assert result.stderr == f"frames={len(EXAMPLES)} bad=0 malformed=0\n".encode()


@pytest.mark.requires("gcc")
def test_c_and_python_agree_on_corrupted_input(c_roundtrip: Path) -> None:
    rng = np.random.default_rng(1)
    good = all_frames()
    flipped = bytearray(frame("SAMPLES", 9))
    flipped[40] ^= 0x10
    parts = [
        b"\x41\x42\xff\x00",                      # garbage ended by a delimiter
        good[0], bytes(flipped), good[1],         # a flipped bit
        frame("RESULT")[:9], good[2],             # a torn frame glued to the next one
        b"\x07" * 600 + b"\x00", good[3],         # an oversize run
        p.cobs_encode(_with_crc(b"\x7f\x01")) + b"\x00",              # unknown type
        p.cobs_encode(_with_crc(b"\x12\x02\x01")) + b"\x00", good[4],  # short PING body
        bytes(rng.integers(0, 256, 300, dtype=np.uint8)) + b"\x00",   # random noise
        *good[5:],
    ]
    stream = b"".join(parts)
    decoder = p.FrameDecoder(salvage=False)  # the C receiver does not salvage
    expected = decoder.feed(stream)
    result = run_c(c_roundtrip, "frames", stream)
    assert result.stdout == b"".join(p.encode_frame(m.name, m.seq, **m.fields) for m in expected)
    counts = dict(item.split("=") for item in result.stderr.decode().split())
    assert int(counts["frames"]) == len(expected) == len(EXAMPLES) - 1  # the torn-into frame
    assert int(counts["bad"]) + int(counts["malformed"]) == decoder.bad_frames


@pytest.mark.requires("arm-none-eabi-gcc")
@pytest.mark.parametrize("cpu", ["cortex-m3", "cortex-m4"])
def test_c_compiles_for_cortex_m(tmp_path: Path, cpu: str) -> None:
    p.write_c_header(tmp_path)
    subprocess.run(["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", *C_FLAGS, "-Os",
                    f"-I{tmp_path}", "-c", str(p.LINK_SOURCE), "-o", str(tmp_path / "tag_link.o")],
                   check=True, capture_output=True, text=True)
    assert (tmp_path / "tag_link.o").stat().st_size > 0
