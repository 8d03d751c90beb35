"""Target profiles: one TOML file per device, the single source of its facts.

A profile is `common.toml` (the budget and thresholds every target starts from) overlaid with
`<name>.toml`. Everything derived from a target (training window and rate, linker regions,
compiler flags, drivers, latency deadline) is computed from the profile, never restated.

A profile describes the real device (MCU, clock, flash, RAM, sensor) and the platforms its
firmware is built for: `[backends]` names, for each backend, a `[platforms.<name>]` table with
the drivers (UART, counter), their parameters and the memory map. So a new board is one
profile and, if it needs one, one driver file in device_sim/firmware/.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_sim.errors import TargetProfileError, UnknownTargetError
from device_sim.names import is_identifier

PROFILE_DIR = Path(__file__).parent
COMMON_PROFILE = PROFILE_DIR / "common.toml"
DEFAULT_TARGET = "eartag"  # what a command trains for and runs on unless told otherwise


@dataclass(frozen=True)
class Framing:
    """How a recording is cut into windows: sample rate, window and hop (samples)."""

    rate_hz: float
    window: int
    hop: int
    target: str | None = None  # the target whose framing this is, if any

    @classmethod
    def of(cls, target: TargetProfile) -> Framing:
        """The framing of a target profile: its sensor rate, window and hop."""
        return cls(target.sample_rate_hz, target.window, target.hop, target.name)

    def cuts_like(self, other: Framing) -> bool:
        """The same rate, window and hop, whichever target each is of."""
        return (self.rate_hz, self.window, self.hop) == (other.rate_hz, other.window, other.hop)


@dataclass(frozen=True)
class Platform:
    """What a firmware is built for and runs on: an emulated board or the real MCU."""

    name: str
    description: str
    machine: str            # the emulator's name of it (QEMU's -M); "" for real silicon
    uart: str               # driver device_sim/firmware/uart_<uart>.c
    uart_baud: int
    counter: str            # driver device_sim/firmware/counter_<counter>.c
    counter_unit: str       # what the counter counts there: a protocol counter unit
    counter_per_tick: int   # counter units per hardware tick
    flash_origin: int
    ram_origin: int
    external_irqs: int      # external interrupt lines: the length of the vector table
    unmapped_address: int   # nothing is mapped here: a load is a precise BusFault
    semihosting: bool       # tag_exit() by semihosting (emulators); else it parks the core
    defines: Mapping[str, int | str] = field(default_factory=dict)  # the drivers' parameters
    # counter "dwt" only: what it counts where the core has no DWT (an emulator), per tick
    fallback_counter_unit: str = ""
    fallback_counter_per_tick: int = 0
    emulator_uart: str = ""  # the emulator's name of the UART the firmware uses (Renode's)
    # Bulk replay: guest memory an emulator's loader fills with the recording (device_sim/
    # replay.py) before the core starts; 0 bytes: none. On silicon nothing is there.
    replay_origin: int = 0
    replay_bytes: int = 0
    # How a board of this platform is flashed (device_sim/flash.py): "pyocd" with the target
    # name pyOCD knows it by (and a CMSIS pack where pyOCD has no built-in support), or a
    # command line; "" where the profile cannot say (a hardware map's board then must).
    flash: str = ""
    pyocd_target: str = ""
    pyocd_pack: str = ""

    @property
    def systick_per_tick(self) -> int:
        """Counter units per SysTick tick where the firmware counts SysTick: the counter's own
        for "systick", the fallback's for "dwt" (on a core without DWT)."""
        return self.fallback_counter_per_tick if self.counter == "dwt" else self.counter_per_tick


@dataclass(frozen=True)
class Energy:
    """The MCU's datasheet currents and the battery, for the charge inference costs."""

    supply_v: float          # the datasheet's test condition
    active_ua_per_mhz: float  # CPU running from flash
    sleep_ua: float          # between inferences: the lowest mode that keeps RAM and a timer
    battery_mah: float
    source: str              # where the currents come from
    battery_note: str        # where the capacity comes from (or that it is an assumption)

    def active_ma(self, clock_hz: float) -> float:
        return self.active_ua_per_mhz * clock_hz / 1e6 / 1000.0


@dataclass(frozen=True)
class Timeouts:
    """How long a run waits on its device, in seconds: to start it and hear its HELLO, and
    for any answer after that ([timeouts.<backend>] of a profile)."""

    start: float
    reply: float

    def scaled(self, multiplier: float) -> Timeouts:
        return Timeouts(self.start * multiplier, self.reply * multiplier)


DEFAULT_TIMEOUTS = "default"  # the [timeouts] entry of a backend that has none of its own


@dataclass(frozen=True)
class TargetProfile:
    name: str
    label: str  # how tables name it: "ear tag"
    description: str
    mcu: str
    core: str
    clock_hz: int
    fpu: bool
    dsp: bool
    flash_bytes: int
    ram_bytes: int
    sensor: str
    sample_rate_hz: float
    window: int
    hop: int
    os: str
    latency_share_of_hop: float
    cycles_per_instruction: float
    stack_bytes: int  # reserved for the firmware's stack
    thresholds: Mapping[str, float]
    tolerances: Mapping[str, float]  # how far a candidate may fall behind its baseline
    backends: Mapping[str, str]  # backend name -> platform name
    platforms: Mapping[str, Platform]
    timeouts: Mapping[str, Timeouts]  # backend name (or DEFAULT_TIMEOUTS) -> its timeouts
    energy: Energy | None = None  # [energy]; None: no battery figures for this target
    source: Path = PROFILE_DIR

    @property
    def hop_seconds(self) -> float:
        """Real-time deadline of one inference: a new window arrives every hop."""
        return self.hop / self.sample_rate_hz

    @property
    def deadline_cycles(self) -> int:
        return int(self.hop_seconds * self.clock_hz)

    @property
    def latency_budget_cycles(self) -> int:
        return int(self.deadline_cycles * self.latency_share_of_hop)

    def in_unit(self, cycles: float, unit: str) -> float | None:
        """A time at the target clock, in cycles, expressed in a counter unit; None for host
        nanoseconds, which say nothing about the tag."""
        if unit == "cycles":
            return cycles
        if unit == "instructions":
            return cycles / self.cycles_per_instruction
        return None

    def platform_for(self, backend: str) -> Platform:
        """The platform `backend` builds this target's firmware for."""
        if backend not in self.backends:
            raise TargetProfileError(
                f"target {self.name!r} names no platform for backend {backend!r}: add "
                f"`{backend} = \"<platform>\"` under [backends] in {self.source}")
        return self.platforms[self.backends[backend]]


    def timeouts_for(self, backend: str, timeout: float | None = None,
                     multiplier: float = 1.0) -> Timeouts:
        """How long a run on `backend` waits: [timeouts.<backend>], else [timeouts.default];
        `timeout` (an explicit --timeout) replaces both figures; `multiplier` scales them."""
        chosen = self.timeouts.get(backend, self.timeouts[DEFAULT_TIMEOUTS])
        if timeout is not None:
            chosen = Timeouts(timeout, timeout)
        return chosen.scaled(multiplier)


def target_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml") if p != COMMON_PROFILE)


def load_target(name: str) -> TargetProfile:
    path = PROFILE_DIR / f"{name}.toml"
    if name not in target_names():
        raise UnknownTargetError(
            f"unknown target {name!r}; known targets: {', '.join(target_names())}")
    return _profile(path, _merged(_read(COMMON_PROFILE), _read(path)))


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise TargetProfileError(f"{path}: {error}") from error


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`, table by table."""
    merged = dict(base)
    for key, value in over.items():
        both_tables = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merged(base[key], value) if both_tables else value
    return merged


def _build(kind: type, where: str, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    required = {f.name for f in dataclasses.fields(kind)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    absent = sorted(required - set(values))
    if unknown or absent:
        raise TargetProfileError(f"{where}: unknown keys {unknown}, missing keys {absent}")
    return kind(**values)


def _profile(path: Path, raw: dict[str, Any]) -> TargetProfile:
    raw = dict(raw)
    if raw.get("name") != path.stem or not is_identifier(path.stem):
        raise TargetProfileError(f"{path}: name = {raw.get('name')!r}; a profile's name is its "
                                 "file name, lower-case letters, digits and _")
    budget = raw.pop("budget", {})
    platforms = {name: _build(Platform, f"{path} [platforms.{name}]", {"name": name, **table})
                 for name, table in raw.pop("platforms", {}).items()}
    energy = raw.pop("energy", None)
    if energy is not None:
        energy = _build(Energy, f"{path} [energy]", energy)
    timeouts = {backend: _build(Timeouts, f"{path} [timeouts.{backend}]", table)
                for backend, table in raw.pop("timeouts", {}).items()}
    if DEFAULT_TIMEOUTS not in timeouts:
        raise TargetProfileError(f"{path}: no [timeouts.{DEFAULT_TIMEOUTS}] (common.toml has "
                                 "one), the timeouts of a backend without its own")
    backends = raw.pop("backends", {})
    for backend, platform in backends.items():
        if platform not in platforms:
            raise TargetProfileError(f"{path}: [backends] {backend} = {platform!r}, but there "
                                     f"is no [platforms.{platform}]")
    return _build(TargetProfile, str(path), raw | budget | {
        "backends": backends, "platforms": platforms, "timeouts": timeouts, "energy": energy,
        "source": path})
