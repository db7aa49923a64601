"""Probing the loopback: free ports, and a raw MQTT CONNECT that returns the CONNACK code (no client threads)."""

from __future__ import annotations

import secrets
import socket
import struct
from pathlib import Path

from fleetloop.devbroker.config import HOST

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000


def free_port() -> int:
    """A currently free loopback TCP port, below the kernel's ephemeral range where one is known.

    A port is chosen here and bound later by another process (mosquitto, ``hub serve``). A port from the
    ephemeral range (what ``bind(0)`` hands out) is also the source port of every outgoing connection on the
    machine, so in the meantime one of them may take it; below the range only another explicit listener can.
    """
    try:
        low = int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for _ in range(50 if low > _LOWEST + 1000 else 0):
        port = _LOWEST + secrets.randbelow(low - _LOWEST)
        if port_is_free(port) and _connectable_nowhere(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _connectable_nowhere(port: int) -> bool:
    """No listener on `port` on any address (a wildcard listener lets a loopback bind through with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:`port` (TIME_WAIT leftovers count as free, as for mosquitto)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def mqtt_connack(host: str, port: int, username: str, password: str, timeout: float = 2.0) -> int:
    """Connect with MQTT 3.1.1, return the CONNACK return code (0 = accepted) and disconnect.

    A raw probe keeps readiness checks free of client threads; raises OSError if nothing answers.
    """

    def field(text: str) -> bytes:
        data = text.encode()
        return struct.pack("!H", len(data)) + data

    body = field("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 10)  # v3.1.1, user+password+clean, 10 s
    body += field(f"fleetloop-probe-{secrets.token_hex(4)}") + field(username) + field(password)
    length, remaining = b"", len(body)
    while True:
        byte, remaining = remaining % 128, remaining // 128
        length += bytes([byte | (0x80 if remaining else 0)])
        if not remaining:
            break
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"\x10" + length + body)
        connack = b""
        while len(connack) < 4:
            chunk = sock.recv(4 - len(connack))
            if not chunk:
                raise ConnectionError("broker closed the connection before CONNACK")
            connack += chunk
        if connack[0] != 0x20:
            raise ConnectionError(f"unexpected reply to CONNECT: {connack!r}")
        if connack[3] == 0:
            sock.sendall(b"\xe0\x00")  # DISCONNECT, so no last will and a quiet log
        return connack[3]
