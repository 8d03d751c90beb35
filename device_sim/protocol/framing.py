"""Byte-level framing: COBS, CRC-16 and the 0x00 delimiter that ends every frame on the wire."""

from __future__ import annotations

import binascii

from device_sim.protocol.errors import ProtocolError

DELIMITER = b"\x00"
# One delimiter flushes a receiver: send it at boot or reconnect so a torn frame from before
# cannot merge with the first new frame. Receivers ignore empty frames.
FLUSH = DELIMITER


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
