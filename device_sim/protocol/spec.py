"""The protocol's specification: messages.toml read into message layouts, limits and enums."""

from __future__ import annotations

import enum
import struct
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_sim.protocol.errors import ProtocolError

SPEC_PATH = Path(__file__).resolve().parent / "messages.toml"

# Scalar types of the TOML: name -> (struct code, min, max); f32 has no integer range.
SCALARS: dict[str, tuple[str, int, int]] = {
    "u8": ("B", 0, 0xFF),
    "u16": ("H", 0, 0xFFFF),
    "u32": ("I", 0, 0xFFFF_FFFF),
    "i8": ("b", -0x80, 0x7F),
    "i16": ("h", -0x8000, 0x7FFF),
    "i32": ("i", -0x8000_0000, 0x7FFF_FFFF),
    "f32": ("f", 0, 0),
}
_ARRAY_ELEMENTS = ("i16", "i32", "f32")


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
        return struct.calcsize("<" + SCALARS[self.element][0])


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
        codes = "".join(f"{STR_LEN}s" if f.element == "str16" else SCALARS[f.element][0]
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
    if kind != "str16" and kind not in SCALARS:
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
