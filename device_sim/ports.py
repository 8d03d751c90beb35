"""Opening a device's port: pyserial's `serial_for_url`, with what its socket:// handler leaves
out.

pyserial's socket:// leaves Nagle's algorithm on. The host writes a credit's SAMPLES frames one
after the other; with Nagle on, the second waits until the first is acknowledged, and the
emulator's TCP stack delays that ACK (tens of milliseconds per window). Every small frame is
worth sending at once, so the socket gets TCP_NODELAY.
"""

from __future__ import annotations

import socket
from typing import Any

import serial


def open_port(url: str, **options: Any) -> serial.SerialBase:
    """serial.serial_for_url(url, **options); a socket:// port with TCP_NODELAY set."""
    port = serial.serial_for_url(url, **options)
    tcp = getattr(port, "_socket", None)  # where pyserial's socket:// keeps its socket
    if isinstance(tcp, socket.socket) and tcp.family in (socket.AF_INET, socket.AF_INET6):
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return port
