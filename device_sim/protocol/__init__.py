"""Host <-> device wire protocol, read from messages.toml (the single source of truth).

A frame on the wire is COBS(payload) + 0x00; payload = type u8, seq u8, body, crc u16 LE where
crc is CRC-16/CCITT-FALSE over type, seq and body. This module encodes and decodes frames for the
host and generates tag_proto.h, the C view of the same TOML, for the firmware (tag_link.c).
"""

from __future__ import annotations

import binascii
import enum
import math
import operator
import struct
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError

HERE = Path(__file__).resolve().parent
SPEC_PATH = HERE / "messages.toml"
LINK_SOURCE = HERE / "tag_link.c"  # compile it with the folder given to write_c_header on -I
HEADER_NAME = "tag_proto.h"

DELIMITER = b"\x00"
# One delimiter flushes a receiver: send it at boot or reconnect so a torn frame from before
# cannot merge with the first new frame. Receivers ignore empty frames.
FLUSH = DELIMITER


class ProtocolError(HarnessError):
    """A frame or message that does not follow the wire protocol."""


# --------------------------------------------------------------------------- the specification

# name -> (struct code, min, max); f32 has no integer range
_SCALARS: dict[str, tuple[str, int, int]] = {
    "u8": ("B", 0, 0xFF),
    "u16": ("H", 0, 0xFFFF),
    "u32": ("I", 0, 0xFFFF_FFFF),
    "i8": ("b", -0x80, 0x7F),
    "i16": ("h", -0x8000, 0x7FFF),
    "i32": ("i", -0x8000_0000, 0x7FFF_FFFF),
    "f32": ("f", 0, 0),
}
_ARRAY_ELEMENTS = ("i16", "i32", "f32")
_C_TYPES = {"u8": "uint8_t", "u16": "uint16_t", "u32": "uint32_t", "i8": "int8_t",
            "i16": "int16_t", "i32": "int32_t", "f32": "float"}


@dataclass(frozen=True)
class Field:
    """One field of a message body, as declared in the TOML."""

    name: str
    type: str              # as written in the TOML: "u16", "str16", "i16[]"
    element: str           # scalar type of the value, or of each array element; "str16" for text
    is_array: bool = False
    max_count: int = 0     # arrays only
    multiple_of: int = 1   # arrays only
    doc: str = ""

    @property
    def size(self) -> int:
        """Bytes of a scalar or str16 field, or of one array element."""
        if self.element == "str16":
            return STR_LEN
        return struct.calcsize("<" + _SCALARS[self.element][0])


@dataclass(frozen=True)
class MessageSpec:
    """One message type: its id, direction and ordered fields."""

    name: str
    id: int
    direction: str  # "device_to_host" or "host_to_device"
    fields: tuple[Field, ...]
    constants: dict[str, int]
    doc: str

    @property
    def scalars(self) -> tuple[Field, ...]:
        """The fixed-offset fields (everything but a trailing array)."""
        return tuple(f for f in self.fields if not f.is_array)

    @property
    def array(self) -> Field | None:
        return self.fields[-1] if self.fields and self.fields[-1].is_array else None

    @property
    def fixed_struct(self) -> struct.Struct:
        codes = "".join(f"{STR_LEN}s" if f.element == "str16" else _SCALARS[f.element][0]
                        for f in self.scalars)
        return struct.Struct("<" + codes)

    @property
    def body_min(self) -> int:
        return self.fixed_struct.size + (1 if self.array else 0)

    @property
    def body_max(self) -> int:
        array = self.array
        return self.body_min + (array.max_count * array.size if array else 0)


def _parse_field(message: str, raw: dict[str, Any]) -> Field:
    name, kind = raw["name"], raw["type"]
    where = f"{SPEC_PATH.name}: {message}.{name}"
    if kind.endswith("[]"):
        element = kind[:-2]
        if element not in _ARRAY_ELEMENTS or "max" not in raw:
            raise ProtocolError(f"{where}: arrays are {_ARRAY_ELEMENTS} with a max count")
        if not 0 < raw["max"] <= 255:
            raise ProtocolError(f"{where}: max must fit the u8 count prefix")
        return Field(name, kind, element, True, raw["max"], raw.get("multiple_of", 1),
                     raw.get("doc", ""))
    if kind != "str16" and kind not in _SCALARS:
        raise ProtocolError(f"{where}: unknown type {kind!r}")
    return Field(name, kind, kind, doc=raw.get("doc", ""))


def _build_messages(raw: dict[str, Any]) -> dict[str, MessageSpec]:
    messages: dict[str, MessageSpec] = {}
    for name, body in raw["messages"].items():
        fields = tuple(_parse_field(name, f) for f in body["fields"])
        if any(f.is_array for f in fields[:-1]):
            raise ProtocolError(f"{SPEC_PATH.name}: {name}: only the last field may be an array")
        spec = MessageSpec(name, body["id"], body["direction"], fields,
                           dict(body.get("constants", {})), body.get("doc", ""))
        if spec.body_max + 4 > raw["protocol"]["max_payload"]:
            raise ProtocolError(f"{SPEC_PATH.name}: {name} can exceed max_payload")
        messages[name] = spec
    if len({m.id for m in messages.values()}) != len(messages):
        raise ProtocolError(f"{SPEC_PATH.name}: two messages share an id")
    return messages


_RAW = tomllib.loads(SPEC_PATH.read_text(encoding="utf-8"))
PROTOCOL_VERSION: int = _RAW["protocol"]["version"]
MAX_PAYLOAD: int = _RAW["protocol"]["max_payload"]
STR_LEN: int = _RAW["protocol"]["str_len"]
MAX_BODY = MAX_PAYLOAD - 4  # type, seq and crc take 4 bytes
MAX_ENCODED = MAX_PAYLOAD + MAX_PAYLOAD // 254 + 1  # COBS adds one byte per 254, at least one
MAX_FRAME = MAX_ENCODED + 1  # plus the delimiter
MESSAGES = _build_messages(_RAW)
MESSAGES_BY_ID = {m.id: m for m in MESSAGES.values()}

MessageType = enum.IntEnum("MessageType", {m.name: m.id for m in MESSAGES.values()})
ErrorCode = enum.IntEnum("ErrorCode", _RAW["errors"])
CounterUnit = enum.IntEnum("CounterUnit", _RAW["counter_units"])
LogitType = enum.IntEnum("LogitType", _RAW["logit_types"])


# --------------------------------------------------------------------------- COBS and CRC

def cobs_encode(data: bytes) -> bytes:
    """COBS without the delimiter; the result holds no 0x00."""
    out = bytearray()
    for chunk in bytes(data).split(b"\x00"):  # each zero ends a block
        while len(chunk) >= 254:  # a full block (code 0xFF) carries no implied zero
            out += b"\xff" + chunk[:254]
            chunk = chunk[254:]
        out.append(len(chunk) + 1)
        out += chunk
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode (data without the delimiter); ProtocolError if malformed."""
    data = bytes(data)
    if not data:
        raise ProtocolError("COBS: empty frame")
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        end = i + code
        if code == 0:
            raise ProtocolError(f"COBS: 0x00 inside a frame at byte {i}")
        if end > len(data):
            raise ProtocolError(f"COBS: block at byte {i} runs past the end (torn frame?)")
        block = data[i + 1:end]
        if 0 in block:
            raise ProtocolError(f"COBS: 0x00 inside a frame after byte {i}")
        out += block
        i = end
        if code != 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected, no final xor."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


# --------------------------------------------------------------------------- messages

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
    _, low, high = _SCALARS[kind]
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
    code = _SCALARS[field.element][0]
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
        code = _SCALARS[array.element][0]
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


# --------------------------------------------------------------------------- device errors

_ERROR_TEXT = {
    "BAD_FRAME": "device rejected a host frame (bad CRC, COBS or length), detail={detail}",
    "BAD_SEQUENCE": "device expected host frame seq {expected_seq}: resend from there",
    "OVERFLOW": "device buffer overflow: the host sent samples beyond the granted credit "
                "(detail={detail})",
    "BAD_MESSAGE": "device rejected an unknown or malformed message (type 0x{detail:02x})",
    "HARD_FAULT": "device hard fault at pc=0x{pc:08x} (CFSR=0x{detail:08x}); find the line with "
                  "arm-none-eabi-addr2line -e <firmware.elf> 0x{pc:08x}",
    "DEADLINE": "device missed its real-time deadline (detail={detail})",
}


class DeviceError(ProtocolError):
    """An ERROR frame from the device, as an exception with a message a user can act on."""

    def __init__(self, code: int | str, expected_seq: int = 0, detail: int = 0,
                 pc: int = 0) -> None:
        if isinstance(code, str):
            name = code
        else:
            name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else f"CODE_{code}"
        self.code, self.expected_seq, self.detail, self.pc = name, expected_seq, detail, pc
        template = _ERROR_TEXT.get(name, "device error {code} (detail={detail}, pc=0x{pc:08x})")
        super().__init__(template.format(code=name, expected_seq=expected_seq, detail=detail,
                                         pc=pc))

    @classmethod
    def from_message(cls, message: Message) -> DeviceError:
        f = message.fields
        return cls(f["code"], f["expected_seq"], f["detail"], f["pc"])


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


# --------------------------------------------------------------------------- C header

_C_LINK_API = """\
/* ---- Link layer: tag_link.c ---------------------------------------------------------- */

#define TAG_CRC16_INIT 0xFFFFu /* CRC-16/CCITT-FALSE: poly 0x1021, not reflected, no xorout */

uint16_t tag_crc16_update(uint16_t crc, uint8_t byte);
uint16_t tag_crc16(const uint8_t *data, size_t len);

/* COBS-encode len bytes into out (no delimiter). Returns the encoded length, or 0 if cap is
 * too small; len + len / 254 + 1 bytes always suffice. */
size_t tag_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/* Build the payload (type, seq, body, crc) and write COBS(payload) + 0x00 to out. Returns the
 * wire length, or 0 if body_len > TAG_PROTO_MAX_BODY or cap is too small.
 * cap >= TAG_PROTO_MAX_FRAME always suffices. */
size_t tag_frame_write(uint8_t type, uint8_t seq, const uint8_t *body, size_t body_len,
                       uint8_t *out, size_t cap);

/* Incremental receiver: push every byte from the UART. */
typedef enum {
    TAG_RX_MORE = 0,      /* nothing complete yet (also after an empty frame: a flush) */
    TAG_RX_FRAME = 1,     /* a payload with a good CRC is ready: read it before the next push */
    TAG_RX_BAD_FRAME = 2  /* a frame was dropped (COBS, CRC, length or size); count it */
} tag_rx_status_t;

typedef struct {
    uint8_t buf[TAG_PROTO_MAX_PAYLOAD]; /* decoded payload: type, seq, body, crc */
    uint16_t len;       /* bytes decoded so far in the current frame */
    uint16_t frame_len; /* payload length after TAG_RX_FRAME */
    uint8_t code;       /* code byte of the current COBS block; 0 before the first */
    uint8_t left;       /* data bytes left in the current block; 0: next byte is a code */
    uint8_t bad;        /* nonzero: drop bytes up to the next 0x00 */
} tag_rx_t;

void tag_rx_init(tag_rx_t *rx);
tag_rx_status_t tag_rx_push(tag_rx_t *rx, uint8_t byte);
/* Valid after TAG_RX_FRAME until the next push. */
uint8_t tag_rx_type(const tag_rx_t *rx);
uint8_t tag_rx_seq(const tag_rx_t *rx);
const uint8_t *tag_rx_body(const tag_rx_t *rx);
size_t tag_rx_body_len(const tag_rx_t *rx);

/* Little-endian field access; f32 moves the IEEE-754 bit pattern. */
void tag_put_u8(uint8_t *p, uint8_t v);
void tag_put_u16(uint8_t *p, uint16_t v);
void tag_put_u32(uint8_t *p, uint32_t v);
void tag_put_i8(uint8_t *p, int8_t v);
void tag_put_i16(uint8_t *p, int16_t v);
void tag_put_i32(uint8_t *p, int32_t v);
void tag_put_f32(uint8_t *p, float v);
void tag_put_str(uint8_t *p, const char *s); /* TAG_STR_LEN bytes, NUL-padded */
uint8_t tag_get_u8(const uint8_t *p);
uint16_t tag_get_u16(const uint8_t *p);
uint32_t tag_get_u32(const uint8_t *p);
int8_t tag_get_i8(const uint8_t *p);
int16_t tag_get_i16(const uint8_t *p);
int32_t tag_get_i32(const uint8_t *p);
float tag_get_f32(const uint8_t *p);
void tag_get_str(const uint8_t *p, char *s); /* TAG_STR_LEN bytes, not NUL-terminated if full */
"""


def _c_comment(text: str) -> str:
    return f" /* {text} */" if text else ""


def _c_struct(spec: MessageSpec) -> list[str]:
    lower = spec.name.lower()
    lines = [f"/* {spec.name} 0x{spec.id:02x}, {spec.direction.replace('_', ' ')}: {spec.doc} */",
             "typedef struct {"]
    for f in spec.fields:
        if f.is_array:
            limit = f"TAG_{spec.name}_{f.name.upper()}_MAX_COUNT"
            lines.append(f"    uint8_t {f.name}_count;")
            lines.append(f"    {_C_TYPES[f.element]} {f.name}[{limit}];{_c_comment(f.doc)}")
        elif f.element == "str16":
            lines.append(f"    char {f.name}[TAG_STR_LEN];{_c_comment(f.doc)}")
        else:
            lines.append(f"    {_C_TYPES[f.element]} {f.name};{_c_comment(f.doc)}")
    if not spec.fields:
        lines.append("    uint8_t unused; /* C99 has no empty structs */")
    lines.append(f"}} tag_{lower}_t;")
    return lines


def _c_pack(spec: MessageSpec) -> list[str]:
    lower, array = spec.name.lower(), spec.array
    returns = "its length" + ("; 0 if the array count is invalid" if array else "")
    lines = [f"/* Write a {spec.name} body to body[TAG_{spec.name}_BODY_MAX], return {returns}. */",
             f"static inline size_t tag_{lower}_pack(const tag_{lower}_t *m, uint8_t *body)",
             "{", "    size_t n = 0;"]
    if not spec.fields:
        lines += ["    (void)m;", "    (void)body;"]
    if array:
        count, prefix = f"m->{array.name}_count", f"TAG_{spec.name}_{array.name.upper()}"
        lines += ["    uint8_t i;",
                  f"    if ({count} > {prefix}_MAX_COUNT",
                  f"        || {count} % {prefix}_MULTIPLE != 0) {{",
                  "        return 0;", "    }"]
    for f in spec.scalars:
        put = "str" if f.element == "str16" else f.element
        lines.append(f"    tag_put_{put}(body + n, m->{f.name}); n += {f.size};")
    if array:
        lines += [f"    tag_put_u8(body + n, m->{array.name}_count); n += 1;",
                  f"    for (i = 0; i < m->{array.name}_count; i++) {{",
                  f"        tag_put_{array.element}(body + n, m->{array.name}[i]); "
                  f"n += {array.size};",
                  "    }"]
    return [*lines, "    return n;", "}"]


def _c_unpack(spec: MessageSpec) -> list[str]:
    lower, array = spec.name.lower(), spec.array
    limit = f"TAG_{spec.name}_BODY_MIN" if array else f"TAG_{spec.name}_BODY_SIZE"
    lines = [f"/* Read a {spec.name} body; returns 0, or -1 if its length or a count is wrong. */",
             f"static inline int tag_{lower}_unpack(const uint8_t *body, size_t len, "
             f"tag_{lower}_t *m)",
             "{", "    size_t n = 0;"]
    if array:
        lines.append("    uint8_t i;")
    lines += [f"    if (len {'<' if array else '!='} {limit}) {{", "        return -1;", "    }"]
    if not spec.fields:
        lines += ["    (void)body;", "    (void)n;", "    m->unused = 0;"]
    for f in spec.scalars:
        if f.element == "str16":
            lines.append(f"    tag_get_str(body + n, m->{f.name}); n += {f.size};")
        else:
            lines.append(f"    m->{f.name} = tag_get_{f.element}(body + n); n += {f.size};")
    if array:
        count, prefix = f"m->{array.name}_count", f"TAG_{spec.name}_{array.name.upper()}"
        lines += [f"    {count} = tag_get_u8(body + n); n += 1;",
                  f"    if ({count} > {prefix}_MAX_COUNT",
                  f"        || {count} % {prefix}_MULTIPLE != 0",
                  f"        || len != n + (size_t){count} * {array.size}u) {{",
                  "        return -1;", "    }",
                  f"    for (i = 0; i < {count}; i++) {{",
                  f"        m->{array.name}[i] = tag_get_{array.element}(body + n); "
                  f"n += {array.size};",
                  "    }"]
    return [*lines, "    return 0;", "}"]


def generate_c_header() -> str:
    """Text of tag_proto.h; deterministic (no dates, no paths), so rebuilds are stable."""
    out = [f"/* {HEADER_NAME}: the wire protocol for the tag firmware.",
           f" * Generated by device_sim.protocol from {SPEC_PATH.name}; do not edit. */",
           "#ifndef TAG_PROTO_H", "#define TAG_PROTO_H", "",
           "#include <stddef.h>", "#include <stdint.h>", "",
           f"#define TAG_PROTO_VERSION {PROTOCOL_VERSION}",
           f"#define TAG_PROTO_MAX_PAYLOAD {MAX_PAYLOAD} /* type + seq + body + crc */",
           f"#define TAG_PROTO_MAX_BODY {MAX_BODY}",
           f"#define TAG_PROTO_MAX_FRAME {MAX_FRAME} /* COBS(max payload) + 0x00 delimiter */",
           f"#define TAG_STR_LEN {STR_LEN} /* bytes in a str16 field, NUL-padded ASCII */", "",
           "/* Message types */"]
    for m in MESSAGES.values():
        out.append(f"#define TAG_MSG_{m.name} 0x{m.id:02x}u"
                   f" /* {m.direction.replace('_', ' ')} */")
    out += ["", "/* ERROR.code */"]
    out += [f"#define TAG_ERR_{name} {code}u" for name, code in _RAW["errors"].items()]
    out += ["", "/* HELLO.counter_unit: what RESULT.latency counts */"]
    out += [f"#define TAG_COUNTER_{name.upper()} {v}u"
            for name, v in _RAW["counter_units"].items()]
    out += ["", "/* HELLO.logit_type: how to read RESULT.logits */"]
    out += [f"#define TAG_LOGIT_{name.upper()} {v}u" for name, v in _RAW["logit_types"].items()]
    out += ["", "/* Body sizes and limits per message */"]
    for m in MESSAGES.values():
        for key, value in m.constants.items():
            out.append(f"#define TAG_{m.name}_{key} {value}u")
        if m.array:
            prefix = f"TAG_{m.name}_{m.array.name.upper()}"
            out += [f"#define {prefix}_MAX_COUNT {m.array.max_count}u",
                    f"#define {prefix}_MULTIPLE {m.array.multiple_of}u",
                    f"#define TAG_{m.name}_BODY_MIN {m.body_min}u",
                    f"#define TAG_{m.name}_BODY_MAX {m.body_max}u"]
        else:
            out += [f"#define TAG_{m.name}_BODY_SIZE {m.body_min}u",
                    f"#define TAG_{m.name}_BODY_MAX {m.body_max}u"]
    out += ["", _C_LINK_API,
            "/* ---- Messages: one struct, pack and unpack each ----------------------------- */"]
    for m in MESSAGES.values():
        out += ["", *_c_struct(m), "", *_c_pack(m), "", *_c_unpack(m)]
    out += ["", "#endif /* TAG_PROTO_H */", ""]
    return "\n".join(out)


def write_c_header(folder: Path) -> Path:
    """Write tag_proto.h into folder; leave it untouched if unchanged, so make does not rebuild."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HEADER_NAME
    text = generate_c_header()
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path
