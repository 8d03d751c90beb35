"""A conversation with one device over any pyserial URL: the host half of the wire protocol.

QEMU hands back `socket://127.0.0.1:PORT`, the host-native build a pseudo-terminal path, a real
tag `/dev/ttyUSB0`: the session does not know or care which. It

- waits for the device's HELLO before sending anything; a device that has talked to a host
  before (a board is not reset between runs) has stopped announcing, so after HELLO_LISTEN_S
  of silence it is asked (HELLO_REQUEST, which starts its link again as at boot);
- sends samples only up to the device's limit (CREDIT), which the device sets at its next
  inference point: nothing is on the wire while it computes, so a polled UART never overruns,
  and a lost CREDIT costs nothing because the next carries the limit again;
- keeps every unacknowledged frame and, when the device reports a bad or out-of-order frame or
  says nothing for a few measured round trips, sends it again, byte for byte, from there
  (go-back-N): a frame corrupted on the way in is lost, reported and recovered, and never
  re-framed, so that a duplicate can never shift the stream; on a noisy line new frames are
  made smaller;
- asks again for an answer (PONG, STATS, the CREDIT after RESET) that was lost on the way out;
- notices RESULT frames lost on the way out by the gap in window indices, and reports them;
- refuses a HELLO of another protocol version, turns device ERROR frames into DeviceError,
  never reads without a timeout, and gives up on a device that makes no progress;
- runs a bulk replay (replay): the recording is in the emulator's memory already, and only
  RESULT frames come back;
- keeps the TRACE_CRC and TRACE_TENSOR frames of a trace build in `traces`, for the caller to
  read and clear (harness/trace.py), and tells such a build what to trace (trace_request).
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

from device_sim.ports import open_port
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
from harness.errors import DeviceTimeoutError, NoHelloError, PortUnavailableError

# fault://URL?options wraps any URL with injected line faults (harness/urlhandler).
if "harness.urlhandler" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("harness.urlhandler")

SAMPLES_PER_FRAME = MESSAGES["SAMPLES"].constants["MAX"]
MAX_FRAMES_IN_FLIGHT = 100  # well inside the 256 sequence numbers go-back-N can tell apart
POLL_S = 0.02  # how long one read waits; the session's own timeout bounds the whole wait
FIRST_ROUND_TRIP_S = 0.1  # until measured
# A booting device says HELLO at once and again every 0.25 s of its time: a second of silence
# means it stopped announcing (it heard a host before) or is slow (Renode's virtual time), and
# either may be asked, again each HELLO_LISTEN_S.
HELLO_LISTEN_S = 1.0
MIN_RETRANSMIT_S = 0.1
MIN_ECHO_S = 0.02
TRACE_FRAMES = ("TRACE_CRC", "TRACE_TENSOR")  # kept in DeviceSession.traces, never answered


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
    hello_requests: int = 0  # HELLO_REQUESTs sent: the device had stopped announcing

    def count_error(self, code: str) -> None:
        self.device_errors[code] = self.device_errors.get(code, 0) + 1


@dataclass
class _Outstanding:
    """A host frame the device has not acknowledged yet."""

    seq: int
    frame: bytes
    sent_at: float  # when it first went out


class DeviceSession:
    """The host side of one device connection. Use as a context manager."""

    def __init__(self, url: str, timeout: float = 10.0, baudrate: int | None = None,
                 check_alive: Callable[[], None] | None = None,
                 hello_timeout: float | None = None) -> None:
        """`timeout`: longest wait for any answer; `hello_timeout` (default `timeout`): for the
        HELLO, which a device sends once it has booted (a target profile's start timeout)."""
        self.url, self.timeout, self.baudrate = url, timeout, baudrate
        self.hello_timeout = timeout if hello_timeout is None else hello_timeout
        self._check_alive = check_alive or (lambda: None)
        self._port: serial.SerialBase | None = None
        self._decoder = FrameDecoder()
        self._inbox: deque[Message] = deque()
        self._seq = 0  # next host sequence number
        self._unacked: deque[_Outstanding] = deque()  # sent, not yet acknowledged by a CREDIT
        self._sent_at = 0.0  # when the oldest unacknowledged frame last went out
        self._last_rewind: tuple[int, float] | None = None  # (expected seq, when)
        self._frame_samples = SAMPLES_PER_FRAME  # shrinks on a noisy line, grows back
        self._round_trip_s = FIRST_ROUND_TRIP_S
        self._acknowledged = 0  # frames acknowledged in all: the link's progress
        self._clean_frames = 0  # acknowledged since the last bad frame
        self._device_seq: int | None = None
        self.info: DeviceInfo | None = None
        self.link = LinkStats()
        self.traces: list[Message] = []  # a trace build's frames, in arrival order

    # --- connection ------------------------------------------------------------------------

    def open(self) -> DeviceInfo:
        """Connect and wait for HELLO: listen first, then ask for it (HELLO_REQUEST)."""
        try:
            # A UART's speed comes from the target profile; a pty or a socket has none.
            speed = {} if self.baudrate is None else {"baudrate": self.baudrate}
            self._port = open_port(self.url, timeout=POLL_S, **speed)
        except (serial.SerialException, OSError) as error:
            raise PortUnavailableError(f"cannot open {self.url}: {error} (is the port busy or "
                                       "the device unplugged?)") from error
        hello = self._wait_for(lambda m: m.name == "HELLO", "the device's HELLO",
                               self.hello_timeout, NoHelloError, ask=self._ask_for_hello)
        self.info = DeviceInfo.from_hello(hello)
        self._write(b"\x00")  # flush whatever half-frame the device's receiver holds
        return self.info

    def _ask_for_hello(self) -> None:
        """HELLO_REQUEST, after a flush byte: the device takes it whatever its seq, and expects
        seq 0 next, as after boot (so this session's numbering stays as it is)."""
        self._write(b"\x00" + encode_frame("HELLO_REQUEST", 0))
        self.link.hello_requests += 1

    @property
    def injected_faults(self) -> dict[str, int]:
        """What a fault:// URL did to the bytes (empty for any other URL)."""
        return dict(getattr(self._port, "injected", {}))

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
            raise PortUnavailableError(f"lost the connection to {self.url}: {error}") \
                from error
        if not data:
            return
        before = self._decoder.bad_frames
        for message in self._decoder.feed(data):
            if message.name == "HELLO":
                # It numbers its frames from here (boot or HELLO_REQUEST); a second answer to
                # an early HELLO_REQUEST says nothing new.
                self._device_seq = message.seq
                if self.info is not None:
                    continue
            else:
                self._note_device_seq(message.seq)
            if message.name == "ERROR" and message.fields["code"] == ErrorCode.HARD_FAULT:
                raise DeviceError.from_message(message)
            if message.name in TRACE_FRAMES:
                self.traces.append(message)  # whatever the session waits for meanwhile
                continue
            self._inbox.append(message)
        self.link.bad_frames_received += self._decoder.bad_frames - before

    def _note_device_seq(self, seq: int) -> None:
        if self._device_seq is not None:
            self.link.lost_device_frames += (seq - self._device_seq - 1) % 256
        self._device_seq = seq

    def _wait_for(self, wanted: Callable[[Message], bool], what: str,
                  timeout: float | None = None,
                  error: type[DeviceTimeoutError] = DeviceTimeoutError,
                  ask: Callable[[], None] | None = None) -> Message:
        """The first message `wanted` accepts; others stay queued. Raises `error` after
        `timeout` (default the session's). `ask` is called after each HELLO_LISTEN_S of
        waiting."""
        timeout = self.timeout if timeout is None else timeout
        now = time.monotonic()
        deadline, ask_at = now + timeout, now + HELLO_LISTEN_S
        while True:
            for message in self._inbox:
                if wanted(message):
                    self._inbox.remove(message)
                    return message
            now = time.monotonic()
            if now > deadline:
                self._check_alive()
                asked = (f" (asked {self.link.hello_requests} times)"
                         if ask is not None and self.link.hello_requests else "")
                raise error(f"no answer from {self.url} within {timeout:g} s while waiting "
                            f"for {what}{asked}")
            if ask is not None and now >= ask_at:
                ask()
                ask_at = now + HELLO_LISTEN_S
            self._poll()

    # --- sending ---------------------------------------------------------------------------
    #
    # Every host frame is kept until the device acknowledges it: a CREDIT's ack_seq, or the
    # expected_seq of an ERROR (the device holds every frame before it). A frame the device
    # reports bad or out of order, or one left unacknowledged for `retransmit_s`, is sent again
    # from there, byte for byte (go-back-N): a seq always carries the same samples, so a frame
    # that arrives twice is refused as a duplicate and can never shift the stream. While the
    # line keeps corrupting frames, new frames are made smaller, so that more of them get
    # through; they grow back once it is clean.

    @property
    def retransmit_s(self) -> float:
        """How long a frame may go unacknowledged before it is sent again: a few round trips
        as measured, which include the device's inference (nothing is acknowledged while it
        computes)."""
        return min(max(4 * self._round_trip_s, MIN_RETRANSMIT_S), self.timeout / 4)

    @property
    def _echo_s(self) -> float:
        """An ERROR this soon after a resend is about frames sent before it."""
        return min(max(2 * self._round_trip_s, MIN_ECHO_S), self.retransmit_s)

    def _write(self, data: bytes) -> None:
        assert self._port is not None, "session not open"
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as error:
            self._check_alive()
            raise PortUnavailableError(f"lost the connection to {self.url}: {error}") \
                from error

    def _send(self, name: str, **fields: Any) -> None:
        """Send one frame and keep it until the device acknowledges it."""
        frame = _Outstanding(self._seq, encode_frame(name, self._seq, **fields),
                             time.monotonic())
        if not self._unacked:
            self._sent_at = time.monotonic()
        self._write(frame.frame)
        self._unacked.append(frame)
        self._seq = (self._seq + 1) % 256

    def _acknowledge(self, ack_seq: int) -> None:
        acknowledged, now = 0, time.monotonic()
        while self._unacked and (ack_seq - self._unacked[0].seq) % 256 < 128:
            frame = self._unacked.popleft()
            acknowledged += 1
        self._acknowledged += acknowledged
        if acknowledged:
            if self._last_rewind is None or frame.sent_at > self._last_rewind[1]:
                # Smoothed round trip (as TCP's), from frames that went out once only.
                self._round_trip_s += (now - frame.sent_at - self._round_trip_s) / 8
            self._sent_at = time.monotonic()
            self._clean_frames += acknowledged
            if self._clean_frames >= 2 * SAMPLES_PER_FRAME // self._frame_samples:
                self._frame_samples = min(SAMPLES_PER_FRAME, 2 * self._frame_samples)
                self._clean_frames = 0

    def _on_error(self, message: Message) -> int | None:
        """An ERROR frame: raises what cannot be recovered; else acknowledges what the device
        holds and returns the seq to send again from (None: an echo, already answered)."""
        error = DeviceError.from_message(message)  # an unknown code becomes CODE_<n>
        self.link.count_error(error.code)
        if error.code not in ("BAD_FRAME", "BAD_SEQUENCE", "OVERFLOW"):
            raise error
        expected = message.fields["expected_seq"]
        self._acknowledge((expected - 1) % 256)
        if error.code == "BAD_FRAME":
            self._frame_samples = max(1, self._frame_samples // 2)
            self._clean_frames = 0
        now = time.monotonic()
        if self._last_rewind is not None and self._last_rewind[0] == expected \
                and now - self._last_rewind[1] < self._echo_s:
            return None  # about frames sent before the last rewind: it is on its way
        return expected

    def _rewind(self, expected: int) -> None:
        """Send every outstanding frame from host seq `expected` on again, as it was."""
        if not self._unacked or self._unacked[0].seq != expected:
            return  # nothing of ours from there on is outstanding
        self._last_rewind = (expected, time.monotonic())
        self._sent_at = time.monotonic()
        for frame in self._unacked:
            self._write(frame.frame)
        self.link.resent_frames += len(self._unacked)

    def _overdue(self) -> bool:
        return bool(self._unacked) and time.monotonic() - self._sent_at > self.retransmit_s

    def _transact(self, name: str, wanted: Callable[[Message], bool], what: str,
                  **fields: Any) -> Message:
        """Send a request and wait for the answer `wanted` accepts; on a noisy line send it
        again, and ask again when it arrived but its answer was lost."""
        deadline = time.monotonic() + self.timeout
        self._send(name, **fields)
        asked_at = time.monotonic()
        while True:
            self._poll()
            while self._inbox:
                message = self._inbox.popleft()
                if wanted(message):
                    self._acknowledge_credit(message)
                    return message
                if message.name == "CREDIT":
                    self._acknowledge(message.fields["ack_seq"])
                elif message.name == "ERROR" and (again := self._on_error(message)) is not None:
                    self._rewind(again)
            now = time.monotonic()
            if self._overdue():
                self._rewind(self._unacked[0].seq)
            elif not self._unacked and now - asked_at > self.retransmit_s:
                self._send(name, **fields)  # it arrived; its answer did not
                asked_at = now
            if now > deadline:
                self._check_alive()
                raise DeviceTimeoutError(f"no answer from {self.url} within {self.timeout:g} s "
                                         f"while waiting for {what}")

    def _acknowledge_credit(self, message: Message) -> None:
        if message.name == "CREDIT":
            self._acknowledge(message.fields["ack_seq"])

    def ping(self, token: int = 0x5EED) -> None:
        self._transact("PING", lambda m: m.name == "PONG" and m.fields["token"] == token,
                       "PONG", token=token)

    def stats(self) -> dict[str, int]:
        return dict(self._transact("STATS_REQUEST", lambda m: m.name == "STATS",
                                   "STATS").fields)

    def reset(self) -> None:
        """Restart the device's stream: window numbering, buffered samples, credit."""
        self._inbox = deque(m for m in self._inbox if m.name not in ("CREDIT", "RESULT"))
        reset_seq = self._seq

        def covers_reset(m: Message) -> bool:  # a CREDIT sent after the device took RESET
            return m.name == "CREDIT" and (m.fields["ack_seq"] - reset_seq) % 256 < 128

        self._transact("RESET", covers_reset, "CREDIT after RESET")
        self._unacked.clear()

    def trace_request(self, mode: str, layer: int = 0, step: int = 0) -> None:
        """Tell a trace build what to trace from the next window on: "CRC_ONLY" (a TRACE_CRC
        per tensor), or "DUMP" (also the tensor of (layer, step) in full). It lasts across
        RESET. A firmware built without the trace answers DeviceError BAD_MESSAGE."""
        modes = MESSAGES["TRACE_REQUEST"].constants
        if mode not in modes:
            raise ProtocolError(f"unknown trace mode {mode!r}; the protocol has {sorted(modes)}")
        request_seq = self._seq

        def covers_request(m: Message) -> bool:  # a CREDIT sent after the device took it
            return m.name == "CREDIT" and (m.fields["ack_seq"] - request_seq) % 256 < 128

        self._transact("TRACE_REQUEST", covers_request, "CREDIT after TRACE_REQUEST",
                       mode=modes[mode], layer=layer, step=step)

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
        seen: set[int] = set()  # window indices with a result: a repeat is not a new one
        while not (closing and not self._unacked):
            due = total if sample_rate_hz is None else min(
                total, int((time.monotonic() - started) * sample_rate_hz) + 1)
            n = min(self._frame_samples, limit - sent, due - sent)
            if n > 0 and len(self._unacked) < MAX_FRAMES_IN_FLIGHT:
                self._send("SAMPLES", samples=counts[sent:sent + n].reshape(-1))
                sent += n
                continue
            if sent == total and not closing:
                self._send("PING", token=total)
                closing = True
            self._poll()
            # Progress is what moves the stream on: a frame acknowledged, more credit, a new
            # window's result. A device that only answers (errors, repeats) makes none, and
            # the session gives up on it after `timeout`.
            before = (self._acknowledged, limit, len(seen))
            rewind_to = None
            while self._inbox:
                message = self._inbox.popleft()
                if message.name == "RESULT" and message.fields["window_index"] not in seen:
                    seen.add(message.fields["window_index"])
                    results.append(self._result(message))
                    if on_result is not None:
                        on_result(results[-1])
                elif message.name == "CREDIT":
                    # The limit is mod 65536 and never behind what we have sent.
                    limit = max(limit, sent + (message.fields["limit"] - sent) % 65536)
                    self._acknowledge(message.fields["ack_seq"])
                elif message.name == "ERROR":
                    rewind_to = self._on_error(message)
            if rewind_to is None and self._overdue():
                rewind_to = self._unacked[0].seq  # nothing came back for it: send it again
            if rewind_to is not None:
                self._rewind(rewind_to)
            now = time.monotonic()
            if (self._acknowledged, limit, len(seen)) != before:
                last_progress = now
            elif not self._unacked and now - last_progress > self.retransmit_s:
                # Waiting for a CREDIT that was lost: PING makes the device say it again.
                self._send("PING", token=0)
            elif now - last_progress > self.timeout:
                self._check_alive()
                raise DeviceTimeoutError(
                    f"{self.url}: no answer for {self.timeout:g} s after {sent} of {total} "
                    f"samples were sent ({len(results)} results so far)")
        return results

    # --- bulk replay -----------------------------------------------------------------------

    def replay(self, timeout_per_window: float | None = None,
               on_result: Callable[[WindowResult], None] | None = None) -> list[WindowResult]:
        """Run the replay image the emulator loaded (DeviceOptions.replay_image) and collect
        a result per window; window indices count from 0 across the image's segments.

        The device takes REPLAY with a CREDIT (or refuses it: DeviceError BAD_REPLAY), then
        sends RESULT frames only, and REPLAY_DONE. Each wait for the next frame lasts at most
        `timeout_per_window` (default: the session's timeout); a device that stops mid-replay
        raises DeviceTimeoutError (EmulatorError if the emulator died), as when streaming. A
        RESULT lost on the wire is missing from the list: the gap in window indices shows it.
        """
        assert self.info is not None, "session not open"
        wait = self.timeout if timeout_per_window is None else timeout_per_window
        self._inbox = deque(m for m in self._inbox if m.name not in ("CREDIT", "RESULT"))
        replay_seq = self._seq

        def covers_replay(m: Message) -> bool:  # a CREDIT sent after the device took REPLAY
            return m.name == "CREDIT" and (m.fields["ack_seq"] - replay_seq) % 256 < 128

        self._transact("REPLAY", covers_replay, "CREDIT after REPLAY")
        self._unacked.clear()  # nothing may be sent again while the device replays
        results: list[WindowResult] = []
        seen: set[int] = set()
        last_progress = time.monotonic()
        while True:
            while self._inbox:
                message = self._inbox.popleft()
                if message.name == "RESULT" and message.fields["window_index"] not in seen:
                    seen.add(message.fields["window_index"])
                    results.append(self._result(message))
                    last_progress = time.monotonic()
                    if on_result is not None:
                        on_result(results[-1])
                elif message.name == "REPLAY_DONE":
                    return results
                elif message.name == "ERROR":
                    self._on_error(message)  # raises all but link errors, which change nothing
            if time.monotonic() - last_progress > wait:
                self._check_alive()
                raise DeviceTimeoutError(
                    f"{self.url}: no answer for {wait:g} s during the replay "
                    f"({len(results)} results so far)")
            self._poll()

    def _result(self, message: Message) -> WindowResult:
        f = message.fields
        logits = decode_logits(f["logits"], LogitType[self.info.logit_type])
        if self.info.logit_type != "float32":
            logits = logits.astype(np.int64)
        return WindowResult(f["window_index"], f["class_index"], logits, f["latency"],
                            time.monotonic())
