"""`fault://`: a pyserial URL that wraps any other and damages the bytes on the way, as a noisy
UART, a flaky USB adapter or a loose connector would.

    fault://socket://127.0.0.1:4000?corrupt=0.01&seed=3
    fault:///dev/ttyUSB0?drop=0.001&cut=0.0001&on=rx

Everything after `fault://` up to the last `?` is the wrapped URL; the options say what
happens to each byte, independently, from a seeded generator (so a run can be repeated):

    corrupt=P    flip one bit of the byte with probability P
    drop=P       lose the byte
    duplicate=P  deliver it twice
    burst=P      start a burst: this byte and the next 7 get a random bit flipped
    cut=P        cut the link: this byte and the next 255 are lost
    delay=S      hold every chunk back S seconds (latency, not loss)
    on=rx|tx|both  which direction is damaged: rx = device to host (default both)
    seed=N

`Serial.injected` counts what was done, by kind and direction. Registered with pyserial by
harness.session (`serial.protocol_handler_packages`), so `serial.serial_for_url` knows it.
"""

from __future__ import annotations

import random
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

from device_sim.ports import open_port

BURST_BYTES = 8
CUT_BYTES = 256
_RATES = ("corrupt", "drop", "duplicate", "burst", "cut")


@dataclass
class Faults:
    """What a fault:// URL asks for."""

    corrupt: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    burst: float = 0.0
    cut: float = 0.0
    delay: float = 0.0
    directions: tuple[str, ...] = ("rx", "tx")
    seed: int = 0
    injected: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> tuple[str, Faults]:
        """(the wrapped URL, the faults) of `fault://INNER?OPTIONS`."""
        if not url.startswith("fault://"):
            raise SerialException(f"expected fault://URL?options, got {url!r}")
        inner, _, query = url[len("fault://"):].rpartition("?")
        if not inner:
            inner, query = query, ""
        faults = cls()
        for option, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
            value = values[-1]
            try:
                if option in _RATES:
                    rate = float(value)
                    if not 0.0 <= rate <= 1.0:
                        raise ValueError(f"{rate} is not a probability")
                    setattr(faults, option, rate)
                elif option == "delay":
                    faults.delay = max(0.0, float(value))
                elif option == "seed":
                    faults.seed = int(value)
                elif option == "on":
                    faults.directions = {"rx": ("rx",), "tx": ("tx",),
                                         "both": ("rx", "tx")}[value]
                else:
                    raise ValueError(f"unknown option {option!r}; known: "
                                     f"{', '.join((*_RATES, 'delay', 'on', 'seed'))}")
            except (KeyError, ValueError) as error:
                raise SerialException(f"{url}: {option}={value}: {error}") from None
        return inner, faults


class _Damage:
    """The byte-by-byte damage of one direction, with its own generator and state."""

    def __init__(self, faults: Faults, direction: str) -> None:
        self.faults, self.direction = faults, direction
        self.random = random.Random(f"{faults.seed}:{direction}")
        self.burst_left = self.cut_left = 0

    def _count(self, kind: str) -> None:
        key = f"{kind}_{self.direction}"
        self.faults.injected[key] = self.faults.injected.get(key, 0) + 1

    def apply(self, data: bytes) -> bytes:
        if self.direction not in self.faults.directions:
            return data
        f, rng, out = self.faults, self.random, bytearray()
        for byte in data:
            if self.cut_left or rng.random() < f.cut:
                if not self.cut_left:
                    self._count("cut")
                    self.cut_left = CUT_BYTES
                self.cut_left -= 1
                continue
            if rng.random() < f.drop:
                self._count("drop")
                continue
            if self.burst_left or rng.random() < f.burst:
                if not self.burst_left:
                    self._count("burst")
                    self.burst_left = BURST_BYTES
                self.burst_left -= 1
                byte ^= 1 << rng.randrange(8)
            elif rng.random() < f.corrupt:
                self._count("corrupt")
                byte ^= 1 << rng.randrange(8)
            out.append(byte)
            if rng.random() < f.duplicate:
                self._count("duplicate")
                out.append(byte)
        return bytes(out)


class Serial(SerialBase):
    """A serial port that passes everything to the wrapped URL's port, damaged as asked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._inner: SerialBase | None = None
        self.faults = Faults()
        super().__init__(*args, **kwargs)

    @property
    def injected(self) -> dict[str, int]:
        return self.faults.injected

    def open(self) -> None:
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        inner, self.faults = Faults.parse(self._port)
        self._rx, self._tx = _Damage(self.faults, "rx"), _Damage(self.faults, "tx")
        self._inner = open_port(inner, baudrate=self._baudrate,
                                 timeout=self._timeout, write_timeout=self._write_timeout)
        self.is_open = True

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
            self._inner = None
        self.is_open = False

    def _reconfigure_port(self) -> None:
        if self._inner is not None:
            self._inner.timeout = self._timeout

    def _port_or_fail(self) -> SerialBase:
        if self._inner is None:
            raise PortNotOpenError()
        return self._inner

    @property
    def in_waiting(self) -> int:
        return self._port_or_fail().in_waiting

    def read(self, size: int = 1) -> bytes:
        data = self._port_or_fail().read(size)
        if data and self.faults.delay:
            time.sleep(self.faults.delay)  # the injected latency itself
        return self._rx.apply(data)

    def write(self, data: bytes) -> int:
        port = self._port_or_fail()
        if self.faults.delay:
            time.sleep(self.faults.delay)
        port.write(self._tx.apply(bytes(data)))
        return len(data)  # what the caller handed over, lost or not

    def reset_input_buffer(self) -> None:
        self._port_or_fail().reset_input_buffer()

    def reset_output_buffer(self) -> None:
        self._port_or_fail().reset_output_buffer()

    def flush(self) -> None:
        self._port_or_fail().flush()

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    def _update_break_state(self) -> None:
        pass
