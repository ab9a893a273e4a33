"""Readiness, reload, stop and watchdog notifications to systemd (the sd_notify protocol).

The unit runs with `Type=notify`: systemd considers the service started only once the
daemon says READY=1, which it does once its config, functions and destinations are loaded
and its mappings launched, so units ordered after it (and `systemctl start`) wait for a
bridge past the failures that would stop it at start. A mapping whose broker is down does
not hold READY back (it retries for as long as it takes); STATUS= shows its state.

With `WatchdogSec=`, the pings are sent from the asyncio loop itself: a loop that is
wedged (a handler blocking it, a deadlock) stops pinging and systemd restarts the
service, which a separate thread could not detect.

The protocol is a newline-separated list of `KEY=value` assignments sent as one datagram
to the AF_UNIX socket named by NOTIFY_SOCKET. Without NOTIFY_SOCKET (not started by
systemd) every call does nothing. A failing send is logged once and otherwise ignored: a
missing supervisor must never stop the daemon.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping

import structlog

_log = structlog.get_logger("bridge.ops.systemd")


class Notifier:
    """Sends sd_notify messages; build it with `Notifier.from_environment()`."""

    def __init__(self, address: str | bytes | None, watchdog_usec: int | None = None) -> None:
        """`address` is an AF_UNIX address as Python takes it (a path, or bytes starting
        with NUL for an abstract socket); None disables every notification."""
        self._address = address
        self._watchdog_usec = watchdog_usec if address is not None else None
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """The notifier systemd asked for through NOTIFY_SOCKET, WATCHDOG_USEC and
        WATCHDOG_PID (the watchdog applies to this process only if WATCHDOG_PID is unset
        or names it)."""
        address = _socket_address(environ.get("NOTIFY_SOCKET", ""))
        watchdog_pid = environ.get("WATCHDOG_PID", "").strip()
        for_this_process = not watchdog_pid or watchdog_pid == str(os.getpid())
        watchdog_usec = _positive_int(environ.get("WATCHDOG_USEC", ""))
        return cls(address, watchdog_usec if for_this_process else None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings: half of systemd's WatchdogSec, as sd_notify's
        documentation advises, so one late ping does not get the service killed."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str = "") -> None:
        lines = ["READY=1"]
        if status:
            lines.append(f"STATUS={_one_line(status)}")
        lines.append(f"MAINPID={os.getpid()}")
        self._send(lines)

    def reloading(self) -> None:
        """Say a reload started. systemd shows the unit as reloading until the next
        `ready()`, so call that once the new config is in place (or the reload failed)."""
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(["RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}"])

    def stopping(self) -> None:
        self._send(["STOPPING=1"])

    def status(self, text: str) -> None:
        self._send([f"STATUS={_one_line(text)}"])

    def watchdog(self) -> None:
        self._send(["WATCHDOG=1"])

    async def watchdog_loop(self, stop: asyncio.Event) -> None:
        """Ping the watchdog now and every `watchdog_interval` until `stop` is set;
        return at once when systemd asked for no watchdog."""
        interval = self.watchdog_interval
        if interval is None:
            return
        while not stop.is_set():
            self.watchdog()
            try:
                async with asyncio.timeout(interval):
                    await stop.wait()
            except TimeoutError:
                pass

    def _send(self, lines: list[str]) -> None:
        if self._address is None:
            return
        message = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never wait on a supervisor that stopped reading: drop the message instead.
                sock.setblocking(False)
                sock.sendto(message, self._address)
        except OSError as error:
            if not self._failing:
                self._failing = True
                _log.warning(
                    "systemd.notify_failed", message=lines[0], error=str(error) or repr(error)
                )
            return
        self._failing = False


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return value
    # systemd also knows vsock: addresses (for VMs), which AF_UNIX cannot reach.
    _log.warning("systemd.notify_failed", error=f"unsupported NOTIFY_SOCKET address {value!r}")
    return None


def _positive_int(value: str) -> int | None:
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None


def _one_line(text: str) -> str:
    # A newline would start a new assignment of the protocol, e.g. a forged READY=1.
    return " ".join(text.splitlines())
