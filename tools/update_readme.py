"""Rewrite the generated tables of README.md from their single sources.

    python tools/update_readme.py          # rewrite them
    python tools/update_readme.py --check  # exit 1, naming the stale tables, if any differs

A generated table stands between `<!-- generated: NAME -->` and `<!-- end: NAME -->`:
`toolchain` (device_sim/toolchain.py), `backends` (device_sim/backends/), and `targets`,
`energy` and `timeouts` (the profiles in device_sim/targets/).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
README = REPOSITORY / "README.md"


def targets_table() -> str:
    from device_sim.targets import load_target, target_names

    lines = ["| target | MCU | clock | flash / RAM | sensor, rate | window / hop | platforms |",
             "|---|---|---|---|---|---|---|"]
    for name in target_names():
        t = load_target(name)
        platforms = ", ".join(f"{backend}: `{platform}`"
                              for backend, platform in t.backends.items())
        lines.append(f"| `{t.name}` | {t.mcu} ({t.core}) | {t.clock_hz / 1e6:g} MHz | "
                     f"{t.flash_bytes // 1024} KB / {t.ram_bytes // 1024} KB | "
                     f"{t.sensor}, {t.sample_rate_hz:g} Hz | {t.window} / {t.hop} | {platforms} |")
    return "\n".join(lines)


def energy_table() -> str:
    from device_sim.targets import load_target, target_names

    lines = ["| target | MCU | supply | active | sleep | battery | currents from |",
             "|---|---|---|---|---|---|---|"]
    for name in target_names():
        t = load_target(name)
        e = t.energy
        if e is None:
            lines.append(f"| `{t.name}` | {t.mcu} | – | – | – | – | no `[energy]` in the profile |")
            continue
        lines.append(f"| `{t.name}` | {t.mcu} | {e.supply_v:g} V | {e.active_ua_per_mhz:g} µA/MHz "
                     f"({e.active_ma(t.clock_hz):.2f} mA at {t.clock_hz / 1e6:g} MHz) | "
                     f"{e.sleep_ua:g} µA | {e.battery_mah:,.0f} mAh ({e.battery_note}) | "
                     f"{e.source} |")
    return "\n".join(lines)


def timeouts_table() -> str:
    from device_sim.backends import backend_names
    from device_sim.targets import DEFAULT_TIMEOUTS, load_target, target_names

    lines = ["| target | " + " | ".join(f"`{b}`" for b in backend_names())
             + f" | other backends (`{DEFAULT_TIMEOUTS}`) |",
             "|---|" + "---|" * (len(backend_names()) + 1)]
    for name in target_names():
        t = load_target(name)
        cells = [t.timeouts_for(b) for b in [*backend_names(), DEFAULT_TIMEOUTS]]
        lines.append(f"| `{name}` | " + " | ".join(f"{c.start:g} / {c.reply:g} s" for c in cells)
                     + " |")
    return "\n".join(lines)


def tables() -> dict[str, Callable[[], str]]:
    from device_sim import backends, toolchain

    return {"toolchain": toolchain.markdown_table, "backends": backends.markdown_table,
            "targets": targets_table, "energy": energy_table, "timeouts": timeouts_table}


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated: {name} -->\n)(.*?)(<!-- end: {name} -->)", re.S)


def stale(text: str) -> list[str]:
    """The tables of `text` that differ from what their sources make now."""
    found = []
    for name, make in tables().items():
        match = _block(name).search(text)
        if match is None or match.group(2) != make() + "\n":
            found.append(name)
    return found


def updated(text: str) -> str:
    for name, make in tables().items():
        match = _block(name).search(text)
        if match is not None:
            text = text[:match.start(2)] + make() + "\n" + text[match.end(2):]
    return text


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPOSITORY))
    text = README.read_text()
    if argv == ["--check"]:
        names = stale(text)
        if names:
            print(f"README.md: stale generated tables: {', '.join(names)}; run "
                  "`python tools/update_readme.py`", file=sys.stderr)
        return 1 if names else 0
    README.write_text(updated(text))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
