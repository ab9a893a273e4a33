"""Asynchronous invocations (`InvocationType: Event`) through the daemon's Lambda API
against a hand-written durable queue doing the same work, measured in one run.

- bridge: `lambda-bridge run` as a real process; C callers post N events over kept-alive
  aiohttp connections (each answered 202 once committed to the function's SQLite queue),
  and the run ends when the daemon's /metrics counts N successful events (a Python no-op
  handler). Accepted/s is timed from the first post to the last 202; end to end from the
  first post to the last event handled.
- baseline: what a careful user would write for the same guarantee, in this process: each
  event INSERTed and committed (SQLite in WAL mode, synchronous=FULL) on a thread before
  it counts as accepted, and a consumer that selects due events, calls the same handler
  and deletes each row with a commit.

    python tests/bench/api_async.py [--events N] [--callers C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

HANDLER = "def handler(event, context):\n    return None\n"
EVENT = b'{"order": 7, "items": ["a", "b", "c"]}'
CONFIG = """\
state_dir: {state}
log: {{level: warning}}
http: {{listen: "127.0.0.1:0"}}
api: {{listen: "127.0.0.1:0"}}
functions:
  sink: {{invoker: python, handler: {code}:handler, timeout: 30}}
"""


def handler(event: object, context: object) -> None:
    return None


def wait_for_file(path: Path, daemon: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise SystemExit(f"the daemon did not write {path.name}")
        time.sleep(0.05)
    return "http://" + path.read_text().strip()


def start_daemon(config: Path, workdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "--config", str(config)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def through_the_bridge(workdir: Path, events: int, callers: int) -> tuple[float, float]:
    (workdir / "app.py").write_text(HANDLER)
    config = workdir / "bridge.yaml"
    config.write_text(CONFIG.format(state=workdir / "state", code=workdir / "app.py"))
    daemon = await asyncio.to_thread(start_daemon, config, workdir)
    try:
        api = await asyncio.to_thread(wait_for_file, workdir / "state" / "api-address", daemon)
        admin = await asyncio.to_thread(wait_for_file, workdir / "state" / "admin-address", daemon)
        url = f"{api}/2015-03-31/functions/sink/invocations"
        headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=callers)) as http:

            async def caller(count: int) -> None:
                for _ in range(count):
                    async with http.post(url, data=EVENT, headers=headers) as answer:
                        assert answer.status == 202, answer.status

            async def handled() -> float:
                async with http.get(f"{admin}/metrics") as answer:
                    text = await answer.text()
                return sum(
                    sample.value
                    for family in text_string_to_metric_families(text)
                    for sample in family.samples
                    if sample.name == "lambda_bridge_async_events_total"
                    and sample.labels == {"function": "sink", "outcome": "success"}
                )

            started = time.perf_counter()
            await asyncio.gather(*(caller(events // callers) for _ in range(callers)))
            accepted = time.perf_counter() - started
            while await handled() < events // callers * callers:
                await asyncio.sleep(0.02)
            return accepted, time.perf_counter() - started
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


class HandWrittenQueue:
    """An event is accepted once its row is committed; the consumer deletes it after the
    handler returns, one commit per event (at least once, as the bridge's queue)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, payload BLOB)")

    def put(self, payload: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT INTO events (payload) VALUES (?)", (payload,))

    def take(self, limit: int) -> list[tuple[int, bytes]]:
        with self._lock:
            return self._db.execute(
                "SELECT seq, payload FROM events ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()

    def remove(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))


async def hand_written(workdir: Path, events: int, callers: int) -> tuple[float, float]:
    queue = HandWrittenQueue(workdir / "baseline.sqlite")
    total = events // callers * callers
    done = 0

    async def caller(count: int) -> None:
        for _ in range(count):
            await asyncio.to_thread(queue.put, EVENT)

    async def consumer() -> None:
        nonlocal done
        while done < total:
            due = await asyncio.to_thread(queue.take, 10)
            if not due:
                await asyncio.sleep(0.001)
                continue
            for seq, payload in due:
                await asyncio.to_thread(handler, json.loads(payload), None)
                await asyncio.to_thread(queue.remove, seq)
                done += 1

    started = time.perf_counter()
    consuming = asyncio.create_task(consumer())
    await asyncio.gather(*(caller(events // callers) for _ in range(callers)))
    accepted = time.perf_counter() - started
    await consuming
    return accepted, time.perf_counter() - started


async def main(events: int, callers: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        base_accept, base_total = await hand_written(workdir, events, callers)
        accept, total = await through_the_bridge(workdir, events, callers)
    count = events // callers * callers
    print(f"{count} asynchronous events, {callers} callers, a no-op Python handler:")
    print(
        f"hand-written durable queue  accepted {count / base_accept:7.0f}/s  "
        f"handled end to end {count / base_total:7.0f}/s"
    )
    print(
        f"bridge, Invoke Event (HTTP) accepted {count / accept:7.0f}/s  "
        f"handled end to end {count / total:7.0f}/s"
    )
    print(f"ratio: accepted {base_accept / accept:.2f}, end to end {base_total / total:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--callers", type=int, default=8)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.callers))
