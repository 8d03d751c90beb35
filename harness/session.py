"""A conversation with one device over any pyserial URL: the host half of the wire protocol.

QEMU hands back `socket://127.0.0.1:PORT`, the host-native build a pseudo-terminal path, a real
tag `/dev/ttyUSB0`: the session does not know or care which. It

- waits for the device's HELLO before sending anything;
- sends samples only up to the device's limit (CREDIT), which the device sets at its next
  inference point: nothing is on the wire while it computes, so a polled UART never overruns,
  and a lost CREDIT costs nothing because the next carries the limit again;
- keeps every unacknowledged SAMPLES frame and, when the device reports a bad or out-of-order
  frame, sends again from the sequence number the device expects (go-back-N): a frame corrupted
  on the way in is lost, reported and recovered;
- notices RESULT frames lost on the way out by the gap in window indices, and reports them;
- turns device ERROR frames into DeviceError, and never reads without a timeout.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import serial

from device_sim.protocol import (
    MESSAGES,
    PROTOCOL_VERSION,
    CounterUnit,
    DeviceError,
    ErrorCode,
    FrameDecoder,
    LogitType,
    Message,
    ProtocolError,
    decode_logits,
    encode_frame,
)
from harness.errors import DeviceTimeoutError

SAMPLES_PER_FRAME = MESSAGES["SAMPLES"].constants["MAX"]
MAX_FRAMES_IN_FLIGHT = 100  # well inside the 256 sequence numbers go-back-N can tell apart
POLL_S = 0.02  # how long one read waits; the session's own timeout bounds the whole wait


@dataclass(frozen=True)
class DeviceInfo:
    """What the device announced in its HELLO."""

    protocol_version: int
    target: str
    build_id: str
    model_hash: str
    model_variant: str
    sample_rate_hz: float
    window: int
    hop: int
    clock_hz: int
    counter_unit: str
    n_classes: int
    logit_type: str
    logit_frac: int
    input_frac: int
    rx_capacity: int

    @classmethod
    def from_hello(cls, message: Message) -> DeviceInfo:
        """The HELLO's fields, refused (ProtocolError) unless they are this protocol's."""
        f = message.fields
        if f["protocol_version"] != PROTOCOL_VERSION:
            raise ProtocolError(f"the device speaks protocol version {f['protocol_version']}, "
                                f"this harness version {PROTOCOL_VERSION}: build and flash the "
                                "firmware from this harness")
        return cls(f["protocol_version"], f["target"], f["build_id"], f["model_hash"],
                   f["model_variant"], f["sample_rate_mhz"] / 1000.0, f["window"], f["hop"],
                   f["clock_hz"], _enum_name(CounterUnit, f["counter_unit"], "counter_unit"),
                   f["n_classes"], _enum_name(LogitType, f["logit_type"], "logit_type"),
                   f["logit_frac"], f["input_frac"], f["rx_capacity"])


def _enum_name(kind: type[enum.IntEnum], value: int, field: str) -> str:
    try:
        return kind(value).name
    except ValueError:
        raise ProtocolError(f"HELLO.{field} = {value} is none of the protocol's "
                            f"{', '.join(f'{m.value} ({m.name})' for m in kind)}") from None


@dataclass
class WindowResult:
    index: int  # window number since the last RESET
    class_index: int
    logits: np.ndarray  # int64 for fixed point (in Q(logit_frac)), float32 for float
    latency: int  # in DeviceInfo.counter_unit
    received_at: float  # host monotonic time, seconds


@dataclass
class LinkStats:
    """What went wrong on the wire, and was survived."""

    resent_frames: int = 0  # host frames sent again after a device error
    device_errors: dict[str, int] = field(default_factory=dict)  # ERROR frames by code
    bad_frames_received: int = 0  # device frames the host could not decode
    lost_device_frames: int = 0  # gaps in the device's sequence numbers

    def count_error(self, code: str) -> None:
        self.device_errors[code] = self.device_errors.get(code, 0) + 1


@dataclass
class _Outstanding:
    seq: int
    frame: bytes


class DeviceSession:
    """The host side of one device connection. Use as a context manager."""

    def __init__(self, url: str, timeout: float = 10.0, baudrate: int | None = None,
                 check_alive: Callable[[], None] | None = None) -> None:
        self.url, self.timeout, self.baudrate = url, timeout, baudrate
        self._check_alive = check_alive or (lambda: None)
        self._port: serial.SerialBase | None = None
        self._decoder = FrameDecoder()
        self._inbox: deque[Message] = deque()
        self._seq = 0  # next host sequence number
        self._unacked: deque[_Outstanding] = deque()  # sent, not yet acknowledged by a CREDIT
        self._last_resend: tuple[int, float] | None = None
        self._device_seq: int | None = None
        self.info: DeviceInfo | None = None
        self.link = LinkStats()

    # --- connection ------------------------------------------------------------------------

    def open(self) -> DeviceInfo:
        """Connect and wait for HELLO; the host sends nothing before it."""
        try:
            # A UART's speed comes from the target profile; a pty or a socket has none.
            speed = {} if self.baudrate is None else {"baudrate": self.baudrate}
            self._port = serial.serial_for_url(self.url, timeout=POLL_S, **speed)
        except (serial.SerialException, OSError) as error:
            raise DeviceTimeoutError(f"cannot open {self.url}: {error} (is the port busy or the "
                                     "device unplugged?)") from error
        hello = self._wait_for(lambda m: m.name == "HELLO", "the device's HELLO")
        self.info = DeviceInfo.from_hello(hello)
        self._write(b"\x00")  # flush whatever half-frame the device's receiver holds
        return self.info

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

    def __enter__(self) -> DeviceSession:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- receiving -------------------------------------------------------------------------

    def _poll(self) -> None:
        """Read what has arrived (waiting at most POLL_S) into the inbox."""
        assert self._port is not None, "session not open"
        try:
            data = self._port.read(max(1, self._port.in_waiting))
        except (serial.SerialException, OSError) as error:
            self._check_alive()
            raise DeviceTimeoutError(f"lost the connection to {self.url}: {error}") from error
        if not data:
            return
        before = self._decoder.bad_frames
        for message in self._decoder.feed(data):
            self._note_device_seq(message.seq)
            if message.name == "ERROR" and message.fields["code"] == ErrorCode.HARD_FAULT:
                raise DeviceError.from_message(message)
            self._inbox.append(message)
        self.link.bad_frames_received += self._decoder.bad_frames - before

    def _note_device_seq(self, seq: int) -> None:
        if self._device_seq is not None:
            self.link.lost_device_frames += (seq - self._device_seq - 1) % 256
        self._device_seq = seq

    def _wait_for(self, wanted: Callable[[Message], bool], what: str) -> Message:
        """The first message `wanted` accepts; others stay queued. Raises after the timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            for message in self._inbox:
                if wanted(message):
                    self._inbox.remove(message)
                    return message
            if time.monotonic() > deadline:
                self._check_alive()
                raise DeviceTimeoutError(f"no answer from {self.url} within {self.timeout:g} s "
                                         f"while waiting for {what}")
            self._poll()

    # --- sending ---------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        assert self._port is not None, "session not open"
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as error:
            self._check_alive()
            raise DeviceTimeoutError(f"lost the connection to {self.url}: {error}") from error

    def _send(self, name: str, **fields: Any) -> None:
        """Send one frame and keep it until a CREDIT acknowledges it, to resend if need be."""
        assert self._port is not None, "session not open"
        frame = _Outstanding(self._seq, encode_frame(name, self._seq, **fields))
        self._write(frame.frame)
        self._unacked.append(frame)
        self._seq = (self._seq + 1) % 256

    def _acknowledge(self, ack_seq: int) -> None:
        while self._unacked and (ack_seq - self._unacked[0].seq) % 256 < 128:
            self._unacked.popleft()

    def _recover(self, message: Message) -> None:
        """Go back to the frame the device expects and send everything from there again."""
        error = DeviceError.from_message(message)  # an unknown code becomes CODE_<n>
        self.link.count_error(error.code)
        if error.code not in ("BAD_FRAME", "BAD_SEQUENCE", "OVERFLOW"):
            raise error
        expected = message.fields["expected_seq"]
        now = time.monotonic()
        if self._last_resend is not None and self._last_resend[0] == expected \
                and now - self._last_resend[1] < self.timeout / 4:
            return  # an echo of the error we already answered: the resend is on its way
        self._last_resend = (expected, now)
        resend = [frame for frame in self._unacked if (frame.seq - expected) % 256 < 128]
        for frame in resend:
            self._write(frame.frame)
        self.link.resent_frames += len(resend)

    def ping(self, token: int = 0x5EED) -> None:
        self._send("PING", token=token)
        self._wait_for(lambda m: m.name == "PONG" and m.fields["token"] == token, "PONG")

    def stats(self) -> dict[str, int]:
        self._send("STATS_REQUEST")
        return dict(self._wait_for(lambda m: m.name == "STATS", "STATS").fields)

    def reset(self) -> None:
        """Restart the device's stream: window numbering, buffered samples, credit."""
        self._inbox = deque(m for m in self._inbox if m.name not in ("CREDIT", "RESULT"))
        reset_seq = self._seq
        self._send("RESET")
        self._wait_for(lambda m: m.name == "CREDIT" and m.fields["ack_seq"] == reset_seq,
                       "CREDIT after RESET")
        self._acknowledge(reset_seq)

    # --- streaming -------------------------------------------------------------------------

    def stream(self, counts: np.ndarray, sample_rate_hz: float | None = None,
               on_result: Callable[[WindowResult], None] | None = None) -> list[WindowResult]:
        """Send one bout of samples (S, 3) int16 and collect a result per window.

        With sample_rate_hz, samples leave no earlier than the sensor would deliver them (real
        time); without, as fast as the device's credit allows. The device is RESET first, so
        window indices count from 0 within the bout. A RESULT lost on the wire is simply
        missing from the list; the caller sees the gap in window indices.
        """
        assert self.info is not None, "session not open"
        counts = np.ascontiguousarray(counts, dtype=np.int16)
        total = len(counts)
        self.reset()
        results: list[WindowResult] = []
        limit = self.info.rx_capacity  # samples we may have sent: the device's next inference
        sent = 0
        closing = False  # a final PING makes the device acknowledge the last frames
        started = last_progress = time.monotonic()
        pinged = False
        while not (closing and not self._unacked):
            due = total if sample_rate_hz is None else min(
                total, int((time.monotonic() - started) * sample_rate_hz) + 1)
            n = min(SAMPLES_PER_FRAME, limit - sent, due - sent)
            if n > 0 and len(self._unacked) < MAX_FRAMES_IN_FLIGHT:
                self._send("SAMPLES", samples=counts[sent:sent + n].reshape(-1))
                sent += n
                continue
            if sent == total and not closing:
                self._send("PING", token=total)
                closing = True
            self._poll()
            progressed = bool(self._inbox)
            while self._inbox:
                message = self._inbox.popleft()
                if message.name == "RESULT":
                    results.append(self._result(message))
                    if on_result is not None:
                        on_result(results[-1])
                elif message.name == "CREDIT":
                    # The limit is mod 65536 and never behind what we have sent.
                    limit = sent + (message.fields["limit"] - sent) % 65536
                    self._acknowledge(message.fields["ack_seq"])
                elif message.name == "ERROR":
                    self._recover(message)
            now = time.monotonic()
            if progressed:
                last_progress, pinged = now, False
            elif now - last_progress > self.timeout / 2 and not pinged:
                # A lost CREDIT, or our last frame lost: PING makes the device repeat its
                # limit, or report the gap so that we resend.
                self._send("PING", token=0)
                pinged = True
            elif now - last_progress > self.timeout:
                self._check_alive()
                raise DeviceTimeoutError(
                    f"{self.url}: no answer for {self.timeout:g} s after {sent} of {total} "
                    f"samples were sent ({len(results)} results so far)")
        return results

    def _result(self, message: Message) -> WindowResult:
        f = message.fields
        logits = decode_logits(f["logits"], LogitType[self.info.logit_type])
        if self.info.logit_type != "float32":
            logits = logits.astype(np.int64)
        return WindowResult(f["window_index"], f["class_index"], logits, f["latency"],
                            time.monotonic())
