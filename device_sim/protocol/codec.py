"""Messages on the wire: a Message to and from its body, payload (type, seq, body, crc) and frame.

FrameDecoder turns a byte stream into Messages, dropping and counting the frames that fail.
"""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from device_sim.protocol.errors import ProtocolError
from device_sim.protocol.framing import DELIMITER, cobs_decode, cobs_encode, crc16
from device_sim.protocol.spec import (
    MAX_ENCODED,
    MAX_PAYLOAD,
    MESSAGES,
    MESSAGES_BY_ID,
    SCALARS,
    STR_LEN,
    Field,
    LogitType,
    MessageSpec,
)


@dataclass
class Message:
    """A decoded frame: arrays come back as lists of int (or float for f32[])."""

    name: str
    seq: int
    fields: dict[str, Any]


def _check_int(where: str, value: Any, kind: str) -> int:
    if isinstance(value, bool | np.bool_):
        raise ProtocolError(f"{where}: expected an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ProtocolError(f"{where}: expected an integer, got {value!r}") from None
    _, low, high = SCALARS[kind]
    if not low <= number <= high:
        raise ProtocolError(f"{where}: {number} out of range for {kind} ({low}..{high})")
    return number


def _check_f32(where: str, value: Any) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise ProtocolError(f"{where}: expected a number, got {value!r}")
    number = float(value)
    if math.isfinite(number) and abs(number) > 3.4028234663852886e38:
        raise ProtocolError(f"{where}: {number} does not fit a float32")
    return number


def _check_str(where: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: expected a str, got {value!r}")
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise ProtocolError(f"{where}: {value!r} is not ASCII") from None
    if len(raw) > STR_LEN or b"\x00" in raw:
        raise ProtocolError(f"{where}: {value!r} must be at most {STR_LEN} characters, no NUL")
    return raw


def _pack_array(where: str, field: Field, values: Any) -> bytes:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise ProtocolError(f"{where}: expected a sequence of {field.element}, got {values!r}")
    count = len(values)
    if count > field.max_count or count % field.multiple_of:
        rule = f"at most {field.max_count}"
        if field.multiple_of > 1:
            rule += f", a multiple of {field.multiple_of}"
        raise ProtocolError(f"{where}: {count} values; the protocol allows {rule}")
    code = SCALARS[field.element][0]
    if field.element == "f32":
        numbers: list[Any] = [_check_f32(f"{where}[{i}]", v) for i, v in enumerate(values)]
    else:
        numbers = [_check_int(f"{where}[{i}]", v, field.element) for i, v in enumerate(values)]
    return bytes([count]) + struct.pack(f"<{count}{code}", *numbers)


def encode_body(spec: MessageSpec, fields: dict[str, Any]) -> bytes:
    """The body bytes of one message; ProtocolError names any missing, unknown or bad field."""
    expected = [f.name for f in spec.fields]
    missing = [n for n in expected if n not in fields]
    unknown = [n for n in fields if n not in expected]
    if missing or unknown:
        raise ProtocolError(f"{spec.name}: missing fields {missing}, unknown fields {unknown}; "
                            f"it has {expected}")
    values: list[Any] = []
    for field in spec.scalars:
        where, value = f"{spec.name}.{field.name}", fields[field.name]
        if field.element == "str16":
            values.append(_check_str(where, value))
        elif field.element == "f32":
            values.append(_check_f32(where, value))
        else:
            values.append(_check_int(where, value, field.element))
    body = spec.fixed_struct.pack(*values)
    if spec.array:
        body += _pack_array(f"{spec.name}.{spec.array.name}", spec.array, fields[spec.array.name])
    return body


def _message_spec(name: str) -> MessageSpec:
    try:
        return MESSAGES[name]
    except KeyError:
        raise ProtocolError(f"unknown message {name!r}; known: {sorted(MESSAGES)}") from None


def encode_payload(name: str, seq: int, **fields: Any) -> bytes:
    """type, seq, body, crc: the bytes that COBS then frames."""
    spec = _message_spec(name)
    head = bytes([spec.id, _check_int(f"{name} seq", seq, "u8")]) + encode_body(spec, fields)
    return head + crc16(head).to_bytes(2, "little")


def encode_frame(name: str, seq: int, **fields: Any) -> bytes:
    """Full wire bytes of one message, delimiter included."""
    return cobs_encode(encode_payload(name, seq, **fields)) + DELIMITER


def decode_body(spec: MessageSpec, body: bytes) -> dict[str, Any]:
    """The fields of one message body; ProtocolError if its length or a count is wrong."""
    fixed = spec.fixed_struct
    if len(body) < spec.body_min:
        raise ProtocolError(f"{spec.name}: body of {len(body)} bytes, needs {spec.body_min}")
    fields: dict[str, Any] = {}
    for field, value in zip(spec.scalars, fixed.unpack_from(body), strict=True):
        if field.element == "str16":
            try:
                value = value.split(b"\x00", 1)[0].decode("ascii")  # as C reads it
            except UnicodeDecodeError:
                raise ProtocolError(f"{spec.name}.{field.name}: not ASCII: {value!r}") from None
        fields[field.name] = value
    array, end = spec.array, fixed.size
    if array:
        count = body[end]
        if count > array.max_count or count % array.multiple_of:
            raise ProtocolError(f"{spec.name}.{array.name}: bad count {count}")
        code = SCALARS[array.element][0]
        end += 1 + count * array.size
        if len(body) == end:
            fields[array.name] = list(struct.unpack_from(f"<{count}{code}", body, fixed.size + 1))
    if len(body) != end:
        raise ProtocolError(f"{spec.name}: body of {len(body)} bytes, layout says {end}")
    return fields


def decode_payload(payload: bytes) -> Message:
    """Check length, CRC and layout of one COBS-decoded payload."""
    payload = bytes(payload)
    if not 4 <= len(payload) <= MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes; must be 4..{MAX_PAYLOAD}")
    stated, computed = int.from_bytes(payload[-2:], "little"), crc16(payload[:-2])
    if stated != computed:
        raise ProtocolError(f"CRC mismatch: frame says 0x{stated:04x}, data gives 0x{computed:04x}")
    spec = MESSAGES_BY_ID.get(payload[0])
    if spec is None:
        raise ProtocolError(f"unknown message type 0x{payload[0]:02x}")
    return Message(spec.name, payload[1], decode_body(spec, payload[2:-2]))


def decode_frame(frame: bytes) -> Message:
    """One frame as sent on the wire, with or without its trailing delimiter."""
    frame = bytes(frame)
    return decode_payload(cobs_decode(frame[:-1] if frame.endswith(DELIMITER) else frame))


def decode_logits(logits: Sequence[int], logit_type: int) -> np.ndarray:
    """RESULT.logits as numbers: int32 for the fixed-point types, float32 for LogitType.float32."""
    words = np.asarray(logits, dtype=np.int64).astype(np.int32)
    return words.view(np.float32) if logit_type == LogitType.float32 else words


# --------------------------------------------------------------------------- stream decoding

class FrameDecoder:
    """Incremental decoder of a byte stream: feed() returns the whole messages seen so far.

    Never raises on bad input: a frame that fails (COBS, CRC, length, unknown type, layout)
    is dropped up to its 0x00 and counted in bad_frames, with the reason in last_error. With
    salvage, a failed frame is also searched for a valid frame that starts inside it: a torn
    frame glued to the next one then costs only the torn frame. The C receiver does not
    salvage; FrameDecoder(salvage=False) behaves exactly like it.
    """

    def __init__(self, salvage: bool = True) -> None:
        self.salvage = salvage
        self.bad_frames = 0
        self.frames = 0
        self.last_error: str | None = None
        self._buffer = bytearray()
        self._oversize = False

    def feed(self, data: bytes) -> list[Message]:
        messages: list[Message] = []
        parts = bytes(data).split(DELIMITER)
        for i, part in enumerate(parts):
            self._append(part)
            if i < len(parts) - 1:  # every part but the last ended at a delimiter
                message = self._end_of_frame()
                if message is not None:
                    messages.append(message)
        return messages

    def _append(self, part: bytes) -> None:
        if self._oversize:
            return
        self._buffer += part
        if len(self._buffer) > MAX_ENCODED:
            # Keep the tail only: a salvaged frame would have to fit in it.
            self._oversize = True
            del self._buffer[:-MAX_ENCODED]

    def _end_of_frame(self) -> Message | None:
        frame, oversize = bytes(self._buffer), self._oversize
        self._buffer.clear()
        self._oversize = False
        if not frame:
            return None  # an empty frame is a flush, not an error
        if not oversize:
            try:
                message = decode_frame(frame)
            except ProtocolError as error:
                self.last_error = str(error)
            else:
                self.frames += 1
                return message
        else:
            self.last_error = f"frame longer than {MAX_ENCODED} bytes"
        self.bad_frames += 1
        return self._salvage(frame) if self.salvage else None

    def _salvage(self, frame: bytes) -> Message | None:
        # The longest valid suffix: a frame whose start was glued to garbage or a torn frame.
        for start in range(1, len(frame) - 3):
            try:
                message = decode_frame(frame[start:])
            except ProtocolError:
                continue
            self.frames += 1
            return message
        return None
