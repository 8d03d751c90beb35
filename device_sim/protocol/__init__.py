"""Host <-> device wire protocol, read from messages.toml (the single source of truth).

A frame on the wire is COBS(payload) + 0x00; payload = type u8, seq u8, body, crc u16 LE where
crc is CRC-16/CCITT-FALSE over type, seq and body. The package encodes and decodes frames for the
host and generates tag_proto.h, the C view of the same TOML, for the firmware (tag_link.c):

- spec: messages.toml read into message layouts, limits and enums
- framing: COBS, CRC-16 and the frame delimiter
- codec: messages to and from bodies, payloads and frames; FrameDecoder for a byte stream
- errors: ProtocolError and DeviceError (an ERROR frame from the device)
- cgen: tag_proto.h for the firmware, with tag_link.h (the link layer API) beside it
"""

from device_sim.protocol.cgen import (
    HEADER_NAME,
    LINK_HEADER,
    LINK_SOURCE,
    generate_c_header,
    write_c_header,
)
from device_sim.protocol.codec import (
    FrameDecoder,
    Message,
    decode_body,
    decode_frame,
    decode_logits,
    decode_payload,
    encode_body,
    encode_frame,
    encode_payload,
)
from device_sim.protocol.errors import DeviceError, ProtocolError
from device_sim.protocol.framing import DELIMITER, FLUSH, cobs_decode, cobs_encode, crc16
from device_sim.protocol.spec import (
    MAX_BODY,
    MAX_ENCODED,
    MAX_FRAME,
    MAX_PAYLOAD,
    MESSAGES,
    MESSAGES_BY_ID,
    PROTOCOL_VERSION,
    SPEC_PATH,
    STR_LEN,
    CounterUnit,
    ErrorCode,
    Field,
    LogitType,
    MessageSpec,
    MessageType,
)

__all__ = [
    "DELIMITER",
    "FLUSH",
    "HEADER_NAME",
    "LINK_HEADER",
    "LINK_SOURCE",
    "MAX_BODY",
    "MAX_ENCODED",
    "MAX_FRAME",
    "MAX_PAYLOAD",
    "MESSAGES",
    "MESSAGES_BY_ID",
    "PROTOCOL_VERSION",
    "SPEC_PATH",
    "STR_LEN",
    "CounterUnit",
    "DeviceError",
    "ErrorCode",
    "Field",
    "FrameDecoder",
    "LogitType",
    "Message",
    "MessageSpec",
    "MessageType",
    "ProtocolError",
    "cobs_decode",
    "cobs_encode",
    "crc16",
    "decode_body",
    "decode_frame",
    "decode_logits",
    "decode_payload",
    "encode_body",
    "encode_frame",
    "encode_payload",
    "generate_c_header",
    "write_c_header",
]
