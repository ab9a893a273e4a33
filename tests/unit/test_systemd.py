"""The sd_notify messages, sent to a real datagram socket standing in for systemd's."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.ops.systemd import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket in tmp_path and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        receiver.settimeout(2)
        yield str(path), receiver


def received(receiver: socket.socket) -> list[str]:
    """Every datagram waiting on the socket, without blocking."""
    messages = []
    receiver.setblocking(False)
    try:
        while True:
            messages.append(receiver.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        receiver.settimeout(2)


def test_each_notification_is_one_datagram(notify_socket: tuple[str, socket.socket]) -> None:
    """ready, stopping, status and watchdog send exactly systemd's assignments."""
    address, receiver = notify_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    notifier.ready("polling 2 mappings")
    notifier.ready()
    notifier.status("draining")
    notifier.watchdog()
    notifier.stopping()
    pid = os.getpid()
    assert received(receiver) == [
        f"READY=1\nSTATUS=polling 2 mappings\nMAINPID={pid}",
        f"READY=1\nMAINPID={pid}",
        "STATUS=draining",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_reloading_carries_the_monotonic_clock(notify_socket: tuple[str, socket.socket]) -> None:
    """RELOADING=1 comes with MONOTONIC_USEC, read from CLOCK_MONOTONIC at the call."""
    address, receiver = notify_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    [message] = received(receiver)
    first, second = message.split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_a_newline_in_a_status_cannot_add_an_assignment(
    notify_socket: tuple[str, socket.socket],
) -> None:
    """A status text is kept on one line: its second line is not read as READY=1."""
    address, receiver = notify_socket
    Notifier.from_environment({"NOTIFY_SOCKET": address}).status("bad config\nREADY=1")
    assert received(receiver) == ["STATUS=bad config READY=1"]


def test_abstract_socket_name() -> None:
    """NOTIFY_SOCKET=@name addresses the abstract socket \\0name."""
    name = f"lambda-bridge-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(b"\0" + name.encode())
        receiver.settimeout(2)
        Notifier.from_environment({"NOTIFY_SOCKET": f"@{name}"}).stopping()
        assert receiver.recv(4096) == b"STOPPING=1"


def test_watchdog_loop_pings_every_interval(notify_socket: tuple[str, socket.socket]) -> None:
    """WATCHDOG_USEC=100000 means a ping every 50 ms, the first one at once."""
    address, receiver = notify_socket
    environ = {
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "100000",
        "WATCHDOG_PID": str(os.getpid()),
    }
    notifier = Notifier.from_environment(environ)
    assert notifier.watchdog_interval == pytest.approx(0.05)

    async def scenario() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(notifier.watchdog_loop(stop))
        await asyncio.sleep(0.23)
        stop.set()
        await asyncio.wait_for(loop, timeout=1)

    asyncio.run(scenario())
    pings = received(receiver)
    # At 0, 50, 100, 150 and 200 ms; timers on a loaded machine only fire late.
    assert 3 <= len(pings) <= 6
    assert set(pings) == {"WATCHDOG=1"}


def test_watchdog_loop_ends_as_soon_as_stop_is_set(
    notify_socket: tuple[str, socket.socket],
) -> None:
    """With a 5 s interval, setting the event ends the loop at once instead of after the
    interval, and no further ping is sent."""
    address, receiver = notify_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "10000000"})

    async def scenario() -> float:
        stop = asyncio.Event()
        loop = asyncio.create_task(notifier.watchdog_loop(stop))
        await asyncio.sleep(0.02)
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(loop, timeout=2)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1
    assert received(receiver) == ["WATCHDOG=1"]


def test_watchdog_of_another_process_is_not_ours(notify_socket: tuple[str, socket.socket]) -> None:
    """WATCHDOG_PID naming another process (e.g. the parent that spawned this one) means
    no watchdog here; notifications still work."""
    address, receiver = notify_socket
    environ = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}
    notifier = Notifier.from_environment(environ)
    assert notifier.watchdog_interval is None

    async def scenario() -> None:
        await asyncio.wait_for(notifier.watchdog_loop(asyncio.Event()), timeout=1)

    asyncio.run(scenario())
    assert received(receiver) == []
    notifier.stopping()
    assert received(receiver) == ["STOPPING=1"]


def test_watchdog_without_pid_applies_to_this_process() -> None:
    """WATCHDOG_PID unset: the watchdog is ours; a WATCHDOG_USEC that is not a positive
    number is ignored."""
    for usec, interval in (("30000000", 15.0), ("0", None), ("soon", None)):
        environ = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": usec}
        assert Notifier.from_environment(environ).watchdog_interval == interval


def test_without_notify_socket_everything_is_a_no_op() -> None:
    """Not started by systemd: disabled, no watchdog even if WATCHDOG_USEC leaked in, and
    every call returns without sending or logging."""
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "100000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    with capture_logs() as logs:
        notifier.ready("up")
        notifier.reloading()
        notifier.status("x")
        notifier.watchdog()
        notifier.stopping()
        asyncio.run(asyncio.wait_for(notifier.watchdog_loop(asyncio.Event()), timeout=1))
    assert logs == []


def test_a_vanished_socket_is_logged_once_and_never_raises(
    notify_socket: tuple[str, socket.socket],
) -> None:
    """The supervisor's socket gone: sends fail quietly, one warning per outage."""
    address, receiver = notify_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    receiver.close()
    Path(address).unlink()
    with capture_logs() as logs:
        notifier.ready("up")
        notifier.watchdog()
        notifier.stopping()
    assert [entry["event"] for entry in logs] == ["systemd.notify_failed"]
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["message"] == "READY=1"
    assert "No such file" in logs[0]["error"]


def test_a_socket_that_comes_back_is_used_again(tmp_path: Path) -> None:
    """After a failure, the next send to a socket bound again at the path arrives, and a
    later outage is reported again."""
    path = tmp_path / "notify"
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(path)})
    with capture_logs() as logs:
        notifier.watchdog()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.bind(str(path))
            notifier.watchdog()
            assert received(receiver) == ["WATCHDOG=1"]
        path.unlink()
        notifier.watchdog()
    assert [entry["event"] for entry in logs] == ["systemd.notify_failed"] * 2


def test_an_address_family_it_cannot_reach_disables_notifications() -> None:
    """systemd's vsock: addresses are for VMs; AF_UNIX cannot send there."""
    with capture_logs() as logs:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert [entry["event"] for entry in logs] == ["systemd.notify_failed"]
