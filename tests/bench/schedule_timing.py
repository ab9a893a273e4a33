"""Schedules: how fast next firings are found, and how late firings reach the handler.

(a) Next-fire computations per second, Europe/Berlin, for a set of EventBridge cron
    expressions: connectors/schedule (each step `next_after` the previous firing),
    against croniter on the same schedule in its own syntax where it has one (weekdays
    0-6, no year field, `L5` for the last Friday, no `LW`), and against the brute-force
    walk a careful user without a library would write (minute by minute, matching the
    wall clock).
(b) Lateness through the daemon: `lambda-bridge run` with `rate(1 second)` and a Python
    handler that notes when it was entered; scheduled time to handler entry, p50, p99,
    p999 and max over about 20 s.

    python tests/bench/schedule_timing.py [--seconds 20]

No broker is involved, so there is no records/s comparison with a client loop.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from connectors.schedule.expressions import CronSchedule, parse  # noqa: E402
from tests.bench.harness import percentiles  # noqa: E402
from tests.support import DaemonProcess, read_jsonl, wait_for  # noqa: E402

ZONE = "Europe/Berlin"
START = dt.datetime(2026, 10, 20, 12, 0, tzinfo=ZoneInfo(ZONE)).timestamp()
# EventBridge expression -> croniter's spelling of the same schedule (None: it has none).
EXPRESSIONS = {
    "cron(0 12 * * ? *)": "0 12 * * *",
    "cron(0/15 10-16 ? * MON-FRI *)": "*/15 10-16 * * 1-5",
    "cron(30 2 * * ? *)": "30 2 * * *",
    "cron(0 9 ? * 3#2 *)": "0 9 * * 2#2",
    "cron(15 10 ? * 6L *)": "15 10 * * L5",
    "cron(0 0 L * ? *)": "0 0 L * *",
    "cron(0 18 LW * ? *)": None,
    "cron(0 8 15W * ? 2026-2030)": None,
}
BUDGET = 0.5  # seconds of computing per path and expression


def rate(step: Callable[[float], float | None]) -> float:
    """Next firings found per second by chaining `step` from START for BUDGET seconds."""
    moment: float | None = START
    count = 0
    began = time.perf_counter()
    while time.perf_counter() - began < BUDGET:
        moment = step(moment if moment is not None else START)
        count += 1
    return count / (time.perf_counter() - began)


def ours(expression: str) -> Callable[[float], float | None]:
    schedule = parse(expression, ZONE)
    return lambda moment: schedule.next_after(moment, 0.0)


def brute_force(expression: str) -> Callable[[float], float | None]:
    schedule = parse(expression, ZONE)
    assert isinstance(schedule, CronSchedule)
    zone = ZoneInfo(ZONE)

    def step(moment: float) -> float | None:
        minute = (int(moment) // 60 + 1) * 60
        while True:
            wall = dt.datetime.fromtimestamp(minute, zone)
            if wall.fold == 0 and schedule.cron.matches(wall.replace(tzinfo=None)):
                return float(minute)
            minute += 60

    return step


def with_croniter(spelling: str) -> Callable[[float], float | None]:
    from croniter import croniter

    zone = ZoneInfo(ZONE)

    def step(moment: float) -> float | None:
        found: dt.datetime = croniter(spelling, dt.datetime.fromtimestamp(moment, zone)).get_next(
            dt.datetime
        )
        return found.timestamp()

    return step


def next_fire_rates() -> None:
    try:
        import croniter  # noqa: F401

        have_croniter = True
    except ImportError:
        have_croniter = False
    print(f"(a) next firings per second, {ZONE}, chained from {dt.datetime.fromtimestamp(START)}")
    print(f"{'expression':34} {'ours':>10} {'croniter':>10} {'brute force':>12}")
    for expression, spelling in EXPRESSIONS.items():
        mine = rate(ours(expression))
        theirs = rate(with_croniter(spelling)) if spelling and have_croniter else None
        walk = rate(brute_force(expression))
        shown = f"{theirs:10.0f}" if theirs is not None else f"{'n/a':>10}"
        print(f"{expression:34} {mine:10.0f} {shown} {walk:12.1f}")


HANDLER = """
import json, os, time
def handler(event, context):
    entered = time.time()
    with open(os.environ["RECORD_TO"], "a") as out:
        out.write(json.dumps({"entered": entered, "time": event["time"]}) + "\\n")
"""


def lateness(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "handler.py").write_text(HANDLER)
        config = root / "bridge.yaml"
        config.write_text(
            """\
state_dir: ./state
log: {level: warning}
functions:
  recorder: {invoker: python, handler: handler.py:handler}
mappings:
  - name: ticks
    function: recorder
    source: {type: schedule, expression: "rate(1 second)"}
"""
        )
        calls = root / "calls.jsonl"
        daemon = DaemonProcess(config, root, env={"RECORD_TO": str(calls)}).start()
        try:
            wait_for(lambda: read_jsonl(calls), timeout=30, what="the first firing")
            time.sleep(seconds)
            assert daemon.stop() == 0
        finally:
            daemon.kill()
        entries = read_jsonl(calls)[1:]  # the first fires at start, whenever that is
    late = sorted(
        entry["entered"]
        - dt.datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=dt.UTC)
        .timestamp()
        for entry in entries
    )
    print(f"(b) lateness of rate(1 second) firings through the daemon, {len(late)} firings")
    print(f"    scheduled time to handler entry: {percentiles(late)}, max {late[-1] * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    next_fire_rates()
    print()
    lateness(args.seconds)


if __name__ == "__main__":
    main()
