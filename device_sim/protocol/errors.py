"""Errors of the wire protocol: a frame or message that breaks it, and an ERROR from the device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from device_sim.errors import HarnessError

if TYPE_CHECKING:
    from device_sim.protocol.codec import Message


class ProtocolError(HarnessError):
    """A frame or message that does not follow the wire protocol."""


# What the user reads for each ERROR.code; the fields of the ERROR message fill the braces.
_ERROR_TEXT = {
    "BAD_FRAME": "device rejected a host frame (bad CRC, COBS or length), detail={detail}",
    "BAD_SEQUENCE": "device expected host frame seq {expected_seq}: resend from there",
    "OVERFLOW": "device buffer overflow: the host sent samples beyond the granted credit "
                "(detail={detail})",
    "BAD_MESSAGE": "device rejected an unknown or malformed message (type 0x{detail:02x})",
    "HARD_FAULT": "device hard fault at pc=0x{pc:08x} (CFSR=0x{detail:08x}); find the line with "
                  "arm-none-eabi-addr2line -e <firmware.elf> 0x{pc:08x}",
    "DEADLINE": "device missed its real-time deadline (detail={detail})",
    "BAD_REPLAY": "device refused the replay image: {replay_reason}",
}

# ERROR(BAD_REPLAY).detail -> what the user reads (messages.toml, REPLAY's BAD_* constants).
_REPLAY_REASONS = {
    "BAD_NO_REGION": "the firmware's platform has no replay region (a real board): stream the "
                     "recording instead",
    "BAD_MAGIC": "no image at the replay origin (bad magic): was the image loaded?",
    "BAD_VERSION": "the image's version is not the firmware's: rebuild both from this harness",
    "BAD_AXES": "the image's axes are not 3",
    "BAD_SIZE": "header, segment table and samples run past the end of the replay region",
    "BAD_SEGMENTS": "the segment table's counts do not add up to the header's sample count",
}


def _replay_reason(detail: int) -> str:
    from device_sim.protocol.spec import MESSAGES

    names = {v: k for k, v in MESSAGES["REPLAY"].constants.items() if k.startswith("BAD_")}
    name = names.get(detail)
    return _REPLAY_REASONS.get(name, f"reason {detail}") if name else f"reason {detail}"


class DeviceError(ProtocolError):
    """An ERROR frame from the device, as an exception with a message a user can act on."""

    def __init__(self, code: int | str, expected_seq: int = 0, detail: int = 0,
                 pc: int = 0) -> None:
        # Imported here: loading the spec raises ProtocolError, so spec imports this module.
        from device_sim.protocol.spec import ErrorCode

        if isinstance(code, str):
            name = code
        else:
            name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else f"CODE_{code}"
        self.code, self.expected_seq, self.detail, self.pc = name, expected_seq, detail, pc
        template = _ERROR_TEXT.get(name, "device error {code} (detail={detail}, pc=0x{pc:08x})")
        reason = _replay_reason(detail) if name == "BAD_REPLAY" else ""
        super().__init__(template.format(code=name, expected_seq=expected_seq, detail=detail,
                                         pc=pc, replay_reason=reason))

    @classmethod
    def from_message(cls, message: Message) -> DeviceError:
        f = message.fields
        return cls(f["code"], f["expected_seq"], f["detail"], f["pc"])
