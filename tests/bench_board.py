"""A tag on the bench, for the flashing tests: what a board with a USB serial adapter looks like
to the harness, made of real parts.

- Its "MCU" is Renode running the ELF last flashed to it (the nRF52840 build of the ear tag).
- Its "USB serial adapter" is a pseudo-terminal whose slave is linked at `board.port` (as
  /dev/serial/by-id/... links are): the link is there only while the board runs, and flashing
  takes it away and brings it back, as a board that re-enumerates does.
- Its "flasher" is this file run as a command, which a hardware map names:

      flash = "python tests/bench_board.py BOARD_DIR {elf}"

  It hands the ELF to the board (a FIFO), waits until the board has reset into it and exits 0,
  or prints the board's complaint and exits 1.

The board is served by a thread of the test process, which starts and ends Renode: nothing
outlives the test.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import sys
import threading
import tty
from pathlib import Path

REQUESTS = "flash.fifo"  # the flasher writes an ELF path here ("" ends the board)
ANSWERS = "reset.fifo"   # the board answers "ok" or what went wrong
PORT_LINK = "ttyTAG"


def flash(board_dir: Path, elf: Path) -> int:
    """The flasher: hand `elf` to the board, wait for its answer."""
    with open(board_dir / REQUESTS, "w") as requests:
        requests.write(str(elf.resolve()))
    with open(board_dir / ANSWERS) as answers:
        answer = answers.read().strip()
    if answer != "ok":
        print(f"bench board: {answer}", file=sys.stderr)
        return 1
    print(f"bench board: flashed {elf.name} and reset")
    return 0


class BenchBoard:
    """The board: `start()` makes its folder and serves it; `close()` ends Renode and the
    thread. It runs nothing until it is first flashed."""

    def __init__(self, folder: Path, target: str = "eartag", refuse: str | None = None) -> None:
        self.folder = folder
        self.target = target
        self.refuse = refuse  # a message to fail every flash with (a broken probe)
        self.port = str(folder / PORT_LINK)
        self.flashed: list[str] = []  # ELF names, in the order they were flashed
        self._thread: threading.Thread | None = None
        self._device = None
        self._relay: _Relay | None = None

    def flash_command(self) -> str:
        return f"{sys.executable} {Path(__file__).resolve()} {self.folder} {{elf}}"

    def start(self) -> BenchBoard:
        self.folder.mkdir(parents=True, exist_ok=True)
        for fifo in (REQUESTS, ANSWERS):
            os.mkfifo(self.folder / fifo)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            with open(self.folder / REQUESTS, "w") as requests:
                requests.write("")
            self._thread.join(120)
        self._power_off()

    def __enter__(self) -> BenchBoard:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the board's thread: it starts Renode and lives as long as Renode does ---------------

    def _serve(self) -> None:
        while True:
            with open(self.folder / REQUESTS) as requests:
                elf = requests.read()
            if not elf:
                return
            self._power_off()  # the port goes away while the board is flashed
            try:
                if self.refuse:
                    raise RuntimeError(self.refuse)
                self._power_on(Path(elf))
                answer = "ok"
            except Exception as error:  # the flasher reports it; the board stays off
                self._power_off()
                answer = f"{type(error).__name__}: {error}"
            with open(self.folder / ANSWERS, "w") as answers:
                answers.write(answer)

    def _power_on(self, elf: Path) -> None:
        from device_sim.backends.renode import RenodeDevice

        self._device = RenodeDevice(elf, self.target, timeout=60.0).start()
        self._relay = _Relay(self._device.url)
        os.symlink(self._relay.slave_name, self.port)
        self.flashed.append(elf.name)

    def _power_off(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.port)
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        if self._device is not None:
            self._device.stop()
            self._device = None


class _Relay:
    """The USB serial adapter: a pseudo-terminal whose master is joined to the emulator's UART
    socket. It holds the slave open too, so that the host closing the port is no hang-up."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("socket://").rsplit(":", 1)
        self.socket = socket.create_connection((host, int(port)), timeout=30)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.slave_name = os.ttyname(self.slave)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.master, selectors.EVENT_READ)
        selector.register(self.socket, selectors.EVENT_READ)
        selector.register(self._stop_r, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj == self._stop_r:
                    return
                if key.fileobj == self.master:
                    data = os.read(self.master, 4096)
                    self.socket.sendall(data)
                else:
                    data = self.socket.recv(4096)
                    if not data:
                        return  # the emulator went away
                    # An adapter nobody reads drops what its buffer cannot take.
                    with contextlib.suppress(BlockingIOError):
                        os.write(self.master, data)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(10)
        self.socket.close()
        for fd in (self.master, self.slave, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


if __name__ == "__main__":
    sys.exit(flash(Path(sys.argv[1]), Path(sys.argv[2])))
