"""Target profiles: one TOML file per device, the single source of its facts.

Everything derived from a target (training window and rate, linker regions, compiler flags,
latency deadline) is computed from the profile here, never restated elsewhere.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UnknownTargetError

PROFILE_DIR = Path(__file__).parent


@dataclass(frozen=True)
class TargetProfile:
    name: str
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
    qemu_machine: str
    renode_platform: str
    latency_share_of_hop: float
    cycles_per_instruction: float
    stack_bytes: int  # reserved for the firmware's stack
    thresholds: dict[str, float]

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


def target_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_target(name: str) -> TargetProfile:
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise UnknownTargetError(
            f"unknown target {name!r}; known targets: {', '.join(target_names())}")
    raw = tomllib.loads(path.read_text())
    budget = raw.pop("budget")
    return TargetProfile(**raw, latency_share_of_hop=budget["latency_share_of_hop"],
                         cycles_per_instruction=budget["cycles_per_instruction"],
                         stack_bytes=budget["stack_bytes"])
