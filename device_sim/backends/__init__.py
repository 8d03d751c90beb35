"""Backends: how a device is started and which pyserial URL it hands back; nothing else differs.

Every module of this package that defines `BACKEND` is a backend. The registry finds them, and
the command line's --backend, the pytest plugin's --hil-backend and its tool checks, the rows of
`harness targets` and the README's backend table are all made from it: a new backend is one new
module here. A backend says what it needs (`tools`, from device_sim.toolchain), what it builds
for a target (by default the Arm firmware for the platform the target profile names for it) and
how it starts a device, which then offers `url` for `serial.serial_for_url`:

    prepared = prepare_device("qemu", ModelSources.load(run / "c" / "q16"), target, build_dir)
    with prepared.device as device:
        session = DeviceSession(device.url, check_alive=device.check_alive)
"""

from __future__ import annotations

import abc
import functools
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from device_sim.appbuild import build_model_firmware
from device_sim.crossbuild import elf_memory
from device_sim.errors import ReplayUnavailableError, UnknownBackendError
from device_sim.model_sources import ModelSources
from device_sim.targets import TargetProfile

DEFAULT_BACKEND = "qemu"
KINDS = ("host", "emulator", "board")  # the order tables list backends in


class Device(Protocol):
    """A started (or startable) device: a context manager that always ends what it started."""

    @property
    def url(self) -> str: ...

    def start(self) -> Device: ...

    def stop(self) -> None: ...

    def check_alive(self) -> None: ...

    def __enter__(self) -> Device: ...

    def __exit__(self, *exc_info: object) -> None: ...


@dataclass(frozen=True)
class DeviceOptions:
    """What a user may say about the device beyond its target."""

    port: str | None = None  # where a physical device is attached: a path, serial-number:XYZ,
    #                          location:LOC or a board of the hardware map (device_sim.boards)
    hardware_map: Path | None = None  # default: pyproject.toml's [tool.harness.hardware]
    timeout: float | None = None  # longest wait for the device to start; None: the target
    #                               profile's [timeouts.<backend>] start
    realtime: bool = False   # an emulator's time follows the wall clock (Renode)
    replay_image: Path | None = None  # bulk replay: loaded into the replay region at start
    flash: bool = False      # flash the firmware on the board at start (device_sim/flash.py)
    place: str | None = None  # a labgrid place (backend labgrid: backends/labgrid_place.py)
    coordinator: str | None = None  # its coordinator HOST:PORT; default LG_COORDINATOR, else
    #                                 labgrid's 127.0.0.1:20408
    lg_env: Path | None = None  # a labgrid environment file: how the place flashes (flash)

    def start_timeout(self, target: TargetProfile, backend: str) -> float:
        """`timeout`, else the profile's start timeout for `backend`."""
        return target.timeouts_for(backend, self.timeout).start


@dataclass(frozen=True)
class Firmware:
    """What a backend built and runs: its path, its memory (from the ELF), its UART speed and
    the platform it was built for."""

    path: Path
    memory: dict[str, int] | None  # None for host programs
    baudrate: int | None           # None where the link is not a UART (pty, TCP)
    platform: str                  # a target profile's platform name, or "host"


class Backend(abc.ABC):
    """One way of running the tag firmware. Subclasses set the class attributes and `device`."""

    name: ClassVar[str]        # --backend NAME
    label: ClassVar[str]       # how tables name it: "QEMU"
    kind: ClassVar[str]        # one of KINDS
    summary: ClassVar[str]     # what it starts, in a few words
    url_form: ClassVar[str]    # what its URL looks like
    tools: ClassVar[tuple[str, ...]]  # device_sim.toolchain names it needs
    needs_port: ClassVar[bool] = False  # the user must say where the device is

    def build(self, model: ModelSources, target: TargetProfile, out_dir: Path, *,
              test_hooks: bool = False, trace: bool = False) -> Firmware:
        """The firmware this backend runs: by default the Arm ELF for the target's platform;
        `trace` makes the layer-trace build (harness/trace.py)."""
        platform = target.platform_for(self.name)
        elf = build_model_firmware(model, target, platform, out_dir, test_hooks=test_hooks,
                                   trace=trace)
        return Firmware(elf, elf_memory(elf), platform.uart_baud, platform.name)

    def replay_capacity(self, target: TargetProfile) -> int:
        """Bytes of replay image this backend's device can take for `target` (bulk replay):
        the replay region of the platform it runs. ReplayUnavailableError where there is none.
        """
        platform = target.platform_for(self.name)
        if not platform.replay_bytes:
            raise ReplayUnavailableError(
                f"platform {platform.name!r} of target {target.name!r} on {self.name} has no "
                f"replay region: add replay_origin and replay_bytes to [platforms."
                f"{platform.name}] in {target.source}, or stream the recording (no --bulk)")
        return platform.replay_bytes

    def check_options(self, options: DeviceOptions) -> None:
        """Refuse options this backend cannot start a device with, before anything is built;
        by default every backend takes any."""
        return None

    @abc.abstractmethod
    def device(self, firmware: Firmware, target: TargetProfile,
               options: DeviceOptions) -> Device:
        """A device (not yet started) that will run `firmware`."""


@dataclass
class PreparedDevice:
    backend: Backend
    firmware: Firmware
    device: Device


def prepare_device(backend: str, model: ModelSources, target: TargetProfile, build_dir: Path,
                   options: DeviceOptions | None = None, *, trace: bool = False) -> PreparedDevice:
    """Build what `backend` runs (the layer-trace build with `trace`) and make (not yet start)
    the device."""
    chosen = get_backend(backend)
    options = options or DeviceOptions()
    chosen.check_options(options)
    firmware = chosen.build(model, target, build_dir, trace=trace)
    return PreparedDevice(chosen, firmware, chosen.device(firmware, target, options))


# --- the registry -------------------------------------------------------------------------------

@functools.cache
def registry() -> dict[str, Backend]:
    """Every backend of this package, host first, then emulators, then boards."""
    found: list[Backend] = []
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        backend = getattr(module, "BACKEND", None)
        if isinstance(backend, Backend):
            found.append(backend)
    found.sort(key=lambda b: (KINDS.index(b.kind), b.name))
    return {backend.name: backend for backend in found}


def backend_names() -> list[str]:
    return list(registry())


def get_backend(name: str) -> Backend:
    try:
        return registry()[name]
    except KeyError:
        raise UnknownBackendError(f"unknown backend {name!r}; choose one of "
                                  f"{', '.join(registry())}") from None


def markdown_table() -> str:
    """The backends as the README lists them."""
    lines = ["| backend | starts | URL | needs |", "|---|---|---|---|"]
    lines += [f"| `{b.name}` | {b.summary} | `{b.url_form}` | "
              f"{', '.join(f'`{t}`' for t in b.tools)} |" for b in registry().values()]
    return "\n".join(lines)
