"""labgrid backend: a tag on a shared board farm, reached through a labgrid place.

labgrid (https://labgrid.readthedocs.io) is the field's board-farm engine: a coordinator knows
the places (one tag each), exporters on the hosts the tags are plugged into publish their
resources, and a client acquires a place for as long as it uses it, so that two people never
talk to one tag at once. This backend is such a client:

    start()  acquires the place (`labgrid-client -p PLACE acquire`); a place someone else holds
             is PlaceBusyError naming who; one this user already holds (acquired by hand
             beforehand, as labgrid's own workflow does) is used and left acquired;
    url      the place's NetworkSerialPort as a pyserial URL: `rfc2217://HOST:PORT` (what an
             exporter's ser2net serves for a RawSerialPort or USBSerialPort) or
             `socket://HOST:PORT` (a NetworkSerialPort of protocol raw, e.g. an emulator's TCP
             serial);
    stop()   releases the place, on success, failure or Ctrl-C (context manager, finalizer),
             but only if start() acquired it.

It talks to the coordinator through `labgrid-client` child processes rather than labgrid's
asyncio API in this process: each call has a timeout and is ended when it expires, in its own
session (Ctrl-C reaches the harness, which then releases the place, and not the release itself).
The firmware is built, as for the serial backend, for the platform the target names for
`labgrid` (else for `serial`), for the report's memory figures; a tag is flashed beforehand,
or, with `flash` and a labgrid environment file (`lg_env`), through the place (flash_place).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import weakref
from pathlib import Path

import yaml

from device_sim.appbuild import build_model_firmware
from device_sim.backends import Backend, DeviceOptions, Firmware
from device_sim.crossbuild import elf_memory
from device_sim.errors import (
    FlashError,
    FlashUnavailableError,
    PlaceBusyError,
    PlaceError,
    PlaceNotFoundError,
    ReplayUnavailableError,
)
from device_sim.flash import FLASH_TIMEOUT_S, OUTPUT_LINES
from device_sim.model_sources import ModelSources
from device_sim.process import run_to_end
from device_sim.targets import Platform, TargetProfile

DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's own default
CLIENT_TIMEOUT_S = 30.0  # one labgrid-client call: the coordinator answers in about a second
POLL_S = 0.2  # between looks at a place whose serial port the exporter has not published yet
# Variables that would make labgrid-client act on other places than the one named (LG_ENV
# makes `acquire` take every place of an environment file).
_CLIENT_ENV_DROPPED = ("LG_ENV", "LG_PLACE", "LG_STATE", "LG_INITIAL_STATE")


def default_coordinator() -> str:
    """The coordinator labgrid itself would use: LG_COORDINATOR, else 127.0.0.1:20408."""
    return os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR


def client_executable() -> str:
    """The labgrid-client of this Python's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("labgrid-client")
    found = str(beside) if beside.is_file() else shutil.which("labgrid-client")
    if found is None:
        raise PlaceError("labgrid-client not found: install labgrid (pip install 'labgrid>=26') "
                         "in the harness's environment")
    return found


def labgrid_client(coordinator: str, place: str | None, *args: str,
                   timeout: float = CLIENT_TIMEOUT_S,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `labgrid-client -x COORDINATOR [-p PLACE] ARGS...`; its result whatever the exit
    status. The child is ended on a timeout (PlaceError) and on any interruption."""
    command = [client_executable(), "-x", coordinator, *(["-p", place] if place else []), *args]
    environment = {k: v for k, v in (env or os.environ).items() if k not in _CLIENT_ENV_DROPPED}
    try:
        return run_to_end(command, timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=environment)
    except subprocess.TimeoutExpired:
        raise PlaceError(f"labgrid-client {' '.join(args)} got no answer from the coordinator "
                         f"at {coordinator} within {timeout:g} s") from None


def _client_error(result: subprocess.CompletedProcess[str], place: str,
                  coordinator: str) -> PlaceError:
    """What a failed labgrid-client call means, as the error a user can act on."""
    said = (result.stderr.strip() or result.stdout.strip()).removeprefix("labgrid-client: ")
    if "connect to coordinator" in said or "coordinator is unavailable" in said:
        return PlaceError(f"cannot reach the labgrid coordinator at {coordinator}: start "
                          "labgrid-coordinator there, or name another with --coordinator "
                          "(pytest: --lg-coordinator) or LG_COORDINATOR")
    if "matches nothing" in said:
        known = ", ".join(list_places(coordinator)) or "none"
        return PlaceNotFoundError(f"the labgrid coordinator at {coordinator} has no place "
                                  f"{place!r}; it has: {known} (create one: labgrid-client "
                                  f"-p {place} create)")
    held = re.search(r"already acquired by (\S+?)\.(\s|$)", said)
    if held:
        return PlaceBusyError(f"labgrid place {place!r} is held by {held[1]} (host/user): wait "
                              f"until they release it or use another place; they can share it "
                              f"with `labgrid-client -p {place} allow {_me()}`")
    if "already acquired place" in said:  # this user, on another host
        return PlaceBusyError(f"labgrid place {place!r} is held by you on another host: "
                              f"{said.removeprefix('Error: ')}")
    if "no matching remote resource" in said:
        return PlaceError(f"labgrid place {place!r} matches no resource the coordinator has: "
                          f"{said} (is its exporter running?)")
    return PlaceError(f"labgrid-client {' '.join(result.args[3:])} failed: {said}")


def _me() -> str:
    """host/user, as labgrid names whoever holds a place."""
    return (f"{os.environ.get('LG_HOSTNAME') or socket.gethostname()}/"
            f"{os.environ.get('LG_USERNAME') or getpass.getuser()}")


def list_places(coordinator: str, timeout: float = CLIENT_TIMEOUT_S) -> list[str]:
    """The names of the coordinator's places ([] if it cannot say)."""
    result = labgrid_client(coordinator, None, "places", timeout=timeout)
    return result.stdout.split() if result.returncode == 0 else []


def acquire_place(place: str, coordinator: str, timeout: float = CLIENT_TIMEOUT_S) -> bool:
    """Acquire `place`: True if this call acquired it, False if this user on this host held it
    already (then it is not ours to release). PlaceBusyError if anyone else holds it."""
    result = labgrid_client(coordinator, place, "acquire", timeout=timeout)
    if result.returncode == 0:
        return True
    said = result.stderr + result.stdout
    if f"You have already acquired place {place}." in said:  # on this host, as labgrid says
        return False
    raise _client_error(result, place, coordinator)


def release_place(place: str, coordinator: str, timeout: float = CLIENT_TIMEOUT_S) -> None:
    """Release `place`, which this user holds."""
    result = labgrid_client(coordinator, place, "release", timeout=timeout)
    if result.returncode != 0:
        raise _client_error(result, place, coordinator)


def serial_url(resource: dict[str, object]) -> str | None:
    """A NetworkSerialPort's parameters as a pyserial URL; None while its exporter has not
    published a port (ser2net starts when the place is acquired)."""
    host, port = resource.get("host"), resource.get("port")
    if not host or not port:
        return None
    protocol = resource.get("protocol", "rfc2217")
    if protocol == "raw":
        return f"socket://{host}:{port}"
    if protocol == "rfc2217":
        # ser2net does not acknowledge modem-control requests on every port (a pty has none):
        # labgrid's SerialDriver opens its ports with ign_set_control too.
        return f"rfc2217://{host}:{port}?ign_set_control"
    raise PlaceError(f"NetworkSerialPort protocol {protocol!r} is neither rfc2217 nor raw")


def place_serial_url(place: str, coordinator: str, timeout: float = CLIENT_TIMEOUT_S) -> str:
    """The pyserial URL of the acquired `place`'s one NetworkSerialPort, once its exporter has
    published where it listens (polled until `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        result = labgrid_client(coordinator, place, "env",
                                timeout=max(deadline - time.monotonic(), 1.0))
        if result.returncode != 0:
            raise _client_error(result, place, coordinator)
        targets = (yaml.safe_load(result.stdout) or {}).get("targets", {})
        ports = [args for resources in targets.values()
                 for entry in resources.get("resources", [])
                 for cls, args in entry.items() if cls == "NetworkSerialPort"]
        if len(ports) > 1:
            raise PlaceError(f"labgrid place {place!r} has {len(ports)} serial ports "
                             f"({', '.join(str(p.get('name')) for p in ports)}): give the tag "
                             "a place of its own with one")
        url = serial_url(ports[0]) if ports else None
        if url is not None:
            return url
        if time.monotonic() > deadline:
            what = ("no serial port (add-match its exporter's NetworkSerialPort)" if not ports
                    else "a serial port its exporter has not published (is ser2net running?)")
            raise PlaceError(f"labgrid place {place!r} has {what} after {timeout:g} s")
        time.sleep(POLL_S)  # pacing between polls, not synchronisation: the deadline decides


def flash_place(place: str, firmware: Path, coordinator: str, env_file: Path,
                timeout: float = FLASH_TIMEOUT_S) -> str:
    """Flash `firmware` (the ELF) onto the tag of the acquired `place` with labgrid's own
    bootstrap driver, as `labgrid-client -c ENV_FILE -p PLACE bootstrap FIRMWARE` does.

    `env_file` is a labgrid environment file whose target has a RemotePlace of `place` and the
    driver that flashes it: labgrid's OpenOCDDriver on the place's (Network)USBDebugger, e.g.

        targets:
          main:
            resources:
              RemotePlace: {name: collar-1}
            drivers:
              OpenOCDDriver:
                board_config: board/ti_cc26x0_launchpad.cfg
                load_commands: ["init", "program {filename} verify reset", "exit"]

    The place must be held (LabgridDevice.start). Returns what labgrid-client printed;
    FlashError quoting it when the flash fails."""
    if not env_file.is_file():
        raise FlashUnavailableError(f"labgrid environment file {env_file} does not exist")
    try:
        result = labgrid_client(coordinator, place, "-c", str(env_file), "bootstrap",
                                str(firmware), timeout=timeout)
    except PlaceError as error:
        raise FlashError(f"flashing through labgrid place {place!r}: {error}") from None
    said = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        tail = "\n".join(said.splitlines()[-OUTPUT_LINES:])
        raise FlashError(f"flashing failed (labgrid place {place!r}, environment {env_file}): "
                         f"`labgrid-client bootstrap` exited with status {result.returncode}:"
                         f"\n{tail}")
    return said


def _release_if_held(place: str, coordinator: str, timeout: float) -> None:
    """The finalizer: release a place this process acquired and did not release."""
    release_place(place, coordinator, timeout)


class LabgridDevice:
    """A tag behind a labgrid place: held from start() to stop()."""

    def __init__(self, place: str, coordinator: str | None = None,
                 timeout: float = CLIENT_TIMEOUT_S,
                 flash: tuple[Path, Path] | None = None) -> None:
        self.place = place
        self.coordinator = coordinator or default_coordinator()
        self.timeout = timeout
        self.flash_with = flash  # (firmware, environment file): flashed once the place is held
        self.flash_output: str | None = None
        self._url: str | None = None
        self._release: weakref.finalize | None = None  # set only when start() acquired it

    @property
    def url(self) -> str:
        if self._url is None:
            raise PlaceError(f"labgrid place {self.place!r} is not acquired: call start() or "
                             "use `with`")
        return self._url

    def start(self) -> LabgridDevice:
        if self._url is not None:
            raise PlaceError(f"labgrid place {self.place!r} was already started")
        try:
            if acquire_place(self.place, self.coordinator, self.timeout):
                self._release = weakref.finalize(self, _release_if_held, self.place,
                                                 self.coordinator, self.timeout)
            if self.flash_with is not None:
                firmware, env_file = self.flash_with
                self.flash_output = flash_place(self.place, firmware, self.coordinator, env_file)
            self._url = place_serial_url(self.place, self.coordinator, self.timeout)
        except BaseException:
            with contextlib.suppress(PlaceError):
                self.stop()
            raise
        return self

    def stop(self) -> None:
        """Release the place if start() acquired it; once."""
        self._url = None
        release, self._release = self._release, None
        if release is not None:
            release()  # a finalizer runs once: never twice, also not at exit

    def check_alive(self) -> None:
        pass  # a remote board cannot tell us it died; the session's timeouts do

    def __enter__(self) -> LabgridDevice:
        return self.start()

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        try:
            self.stop()
        except PlaceError:
            if exc_type is None:  # a failed release must not hide why the run ended
                raise


class LabgridBackend(Backend):
    name = "labgrid"
    label = "labgrid place"
    kind = "board"
    summary = ("nothing: acquires a labgrid place (a shared tag, flashed beforehand or by "
               "the place's bootstrap driver)")
    url_form = "rfc2217://HOST:PORT or socket://HOST:PORT (the --place's serial port)"
    tools = ("arm-none-eabi-gcc", "newlib")
    needs_port = True  # where the tag is: its --place (not for unattended runs: demo)

    def platform(self, target: TargetProfile) -> Platform:
        """The platform built for: the target's `labgrid` entry, else its `serial` one (the
        same boards, shared)."""
        return target.platform_for(self.name if self.name in target.backends else "serial")

    def build(self, model: ModelSources, target: TargetProfile, out_dir: Path, *,
              test_hooks: bool = False, trace: bool = False) -> Firmware:
        platform = self.platform(target)
        elf = build_model_firmware(model, target, platform, out_dir, test_hooks=test_hooks,
                                   trace=trace)
        return Firmware(elf, elf_memory(elf), platform.uart_baud, platform.name)

    def replay_capacity(self, target: TargetProfile) -> int:
        raise ReplayUnavailableError(
            "bulk replay needs an emulator's loader to put the recording in the device's "
            "memory; a board behind a labgrid place has none: stream it (drop --bulk)")

    def check_options(self, options: DeviceOptions) -> None:
        if not options.place:
            raise PlaceError("the labgrid backend needs a place (--place NAME, pytest "
                             "--hil-place NAME; `labgrid-client places` lists them)")

    def device(self, firmware: Firmware, target: TargetProfile,
               options: DeviceOptions) -> LabgridDevice:
        self.check_options(options)
        flash = None
        if options.flash:
            if options.lg_env is None:
                raise FlashUnavailableError(
                    "flashing through a labgrid place is labgrid's bootstrap driver of the "
                    "place's debugger, configured in a labgrid environment file: give it with "
                    "--lg-env FILE (see flash_place in device_sim/backends/labgrid_place.py)")
            flash = (firmware.path, options.lg_env)
        return LabgridDevice(options.place, options.coordinator,
                             options.start_timeout(target, self.name), flash)


BACKEND = LabgridBackend()
