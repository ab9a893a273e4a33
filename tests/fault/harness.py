"""The moving parts of the fault scenarios: a producer thread that keeps adding
numbered records, the daemon's workspace (config, handler, runs), and its admin endpoint
found through `<state_dir>/admin-address`."""

from __future__ import annotations

import json
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.exposition import samples
from tests.fault.sources import Body, FaultSource
from tests.support import DaemonProcess, wait_for

TICK_SECONDS = 0.05


class Producer:
    """Adds records at about `per_second` from a thread until stopped. Each record has a
    unique id and the next sequence number of the partition it goes to. A send that fails
    (a broker being down) is retried, the same records again, until it succeeds; only
    then do its records count as produced. `extra_for(number, rng)` adds fields to a body."""

    def __init__(
        self,
        source: FaultSource,
        rng: random.Random,
        per_second: float,
        *,
        extra_for: Any = None,
        prefix: str = "r",
    ) -> None:
        self.source = source
        self.prefix = prefix
        self.rng = rng
        self.per_tick = per_second * TICK_SECONDS
        self.extra_for = extra_for
        # id -> (partition, seq)
        self.produced: dict[str, tuple[str, int]] = {}
        self.bodies: dict[str, Body] = {}
        self.failed_sends = 0
        self._next_seq: dict[str, int] = defaultdict(int)
        self._number = 0
        self._owed = 0.0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-producer", daemon=True)

    def start(self) -> Producer:
        self._thread.start()
        return self

    def _bodies(self) -> list[Body]:
        self._owed += self.per_tick
        count, self._owed = int(self._owed), self._owed - int(self._owed)
        bodies = []
        for _ in range(count):
            number, self._number = self._number, self._number + 1
            partition = self.source.partition_for(number, self.rng.randrange(1 << 30))
            seq = self._next_seq[partition]
            self._next_seq[partition] = seq + 1
            body: Body = {"id": f"{self.prefix}{number:07d}", "p": partition, "s": seq}
            if self.extra_for is not None:
                body.update(self.extra_for(number, self.rng))
            bodies.append(body)
        return bodies

    def _run(self) -> None:
        try:
            sender = self.source.sender()
        except BaseException as exc:
            self._error = exc
            return
        try:
            while not self._stop.is_set():
                bodies = self._bodies()
                while bodies and not self._send(sender, bodies):
                    self.failed_sends += 1
                    self._stop.wait(0.2)
                self._stop.wait(TICK_SECONDS)
        except BaseException as exc:
            self._error = exc
        finally:
            sender.close()

    def _send(self, sender: Any, bodies: list[Body]) -> bool:
        try:
            sender.send(bodies)
        except Exception as exc:
            if self._stop.is_set():
                raise RuntimeError(f"records could not be produced at the end: {exc}") from exc
            return False
        for body in bodies:
            self.produced[body["id"]] = (body["p"], body["s"])
            self.bodies[body["id"]] = body
        return True

    def stop(self) -> dict[str, tuple[str, int]]:
        """Stop after the records being sent are in; raise what stopped the thread."""
        self._stop.set()
        if self._thread.ident is None:
            return {}
        self._thread.join(60)
        if self._thread.is_alive():
            raise AssertionError("the producer did not stop within 60 s")
        if self._error is not None:
            raise AssertionError(f"the producer failed: {self._error!r}") from self._error
        return dict(self.produced)


class Workspace:
    """A folder with the config, the handler and every daemon run started in it."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.log_file = root / "deliveries.jsonl"
        self.env = {"FAULT_LOG": str(self.log_file), **(env or {})}
        self.daemons: list[DaemonProcess] = []

    def write_config(self, text: str) -> Path:
        path = self.root / "bridge.yaml"
        path.write_text(text)
        return path

    def start(self, config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config, self.root, env=self.env).start()
        self.daemons.append(daemon)
        return daemon

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()


def pid_of(daemon: DaemonProcess) -> int:
    assert daemon.process is not None
    return daemon.process.pid


def rss_megabytes(daemon: DaemonProcess) -> float:
    """The daemon's resident set (VmRSS of /proc/<pid>/status), in MB."""
    status = Path(f"/proc/{pid_of(daemon)}/status").read_text()
    [kilobytes] = re.findall(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(kilobytes) / 1024


class Admin:
    """The daemon's admin endpoint, at the address it wrote to its state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def url(self) -> str:
        path = self.state_dir / "admin-address"
        address = wait_for(
            lambda: path.exists() and path.read_text().strip(), what="the admin address file"
        )
        return f"http://{address}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url() + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def readiness(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/readyz")
        return status, json.loads(body)

    def metrics(self, mapping: str) -> dict[str, float]:
        """The mapping's unlabelled-but-for-`mapping` counters, short names:
        `polled_events_total`, ..."""
        _, text = self.get("/metrics")
        return {
            sample.name.removeprefix("lambda_bridge_"): float(sample.value)
            for sample in samples(text)
            if sample.labels == {"mapping": mapping}
        }


def wait_until_delivered(
    produced: dict[str, tuple[str, int]],
    delivered: Any,
    timeout: float,
    daemon: DaemonProcess,
    quiet: float = 20.0,
) -> str | None:
    """Wait until every produced id is in `delivered()`. Give up after `timeout`, or once
    nothing new was delivered for `quiet` seconds (a lost record never comes); the
    problem, if any, says why the wait ended (the missing records are for the caller)."""
    began = last_change = time.monotonic()
    count = -1
    while True:
        found = delivered()
        missing = len(set(produced) - found)
        if not missing:
            return None
        now = time.monotonic()
        if len(found) != count:
            count, last_change = len(found), now
        if daemon.process is not None and daemon.process.poll() is not None:
            return f"the daemon exited ({daemon.process.returncode}) with {missing} records undelivered"
        if now - began > timeout or now - last_change > quiet:
            return (
                f"gave up waiting for {missing} records {now - began:.0f} s after the producer "
                f"stopped, {now - last_change:.0f} s after the last new delivery"
            )
        time.sleep(0.1)


def last_positions(deliveries: list[Any]) -> dict[str, Any]:
    """The highest position delivered per partition."""
    last: dict[str, Any] = {}
    for delivery in deliveries:
        known = last.get(delivery.partition)
        last[delivery.partition] = (
            delivery.position if known is None else max(known, delivery.position)
        )
    return last


def settled_while_running(
    source: FaultSource, root: Path, deliveries: list[Any], timeout: float = 10.0
) -> list[str]:
    """Once everything was delivered, the running daemon must show it settled at the
    source (acknowledged, committed, deleted, checkpointed) within `timeout`: a
    committer or acknowledger that died in the background would leave it behind. (On
    SIGTERM the daemon settles what it holds anyway, which would hide that.)"""
    last = last_positions(deliveries)
    deadline = time.monotonic() + timeout
    while True:
        behind = source.left_behind(root, last)
        if not behind or time.monotonic() > deadline:
            return [
                f"{timeout:.0f} s after the last delivery, with the daemon running: {problem}"
                for problem in behind
            ]
        time.sleep(0.5)
