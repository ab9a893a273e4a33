"""What handing calls to worker threads costs an event loop that is busy.

The `python` invoker runs a sync handler on a worker thread (connectors.python.threads)
so that it never blocks the event loop. Under the GIL a worker can only run when the
loop's thread lets go of it: at a blocking system call, or when the interpreter forces
a switch (every `sys.getswitchinterval()`, 5 ms by default). This script keeps the loop
busy with pure-Python work in short steps (as the pipeline is while it reads ahead)
while four tasks hand calls to the worker threads, one at a time each, as four ordered
lanes do. It prints, against the same work on a loop with no calls (the baseline):

- how many calls completed per second, for a no-op call and for decoding a
  100-record event with orjson (what the invoker does on the worker);
- how much more CPU the loop's own thread used, per call.

    python tests/bench/handler_threads.py [--seconds-of-work S] [--switch-interval S]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connectors.python.threads import HandlerThreads

EVENT = orjson.dumps(
    {"Records": [{"body": "x" * 100, "n": index, "attributes": {"a": "b"}} for index in range(100)]}
)
STEP = 2000  # iterations of the loop's work between yields: about 0.2 ms here


def step_of_work() -> int:
    total = 0
    for number in range(STEP):
        total += len(str(number))
    return total


async def hand_calls(
    threads: HandlerThreads, call: Callable[[bytes], Any], done: list[int]
) -> None:
    while True:
        await threads.call(call, EVENT)
        done[0] += 1


async def measure(call: Callable[[bytes], Any] | None, steps: int) -> tuple[float, float, int]:
    """(loop thread CPU seconds, wall seconds, calls completed) for `steps` of work."""
    threads = HandlerThreads(8, "bench")
    done = [0]
    lanes = [asyncio.create_task(hand_calls(threads, call, done)) for _ in range(4)] if call else []
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(steps):
        step_of_work()
        await asyncio.sleep(0)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    for lane in lanes:
        lane.cancel()
    await asyncio.gather(*lanes, return_exceptions=True)
    threads.close()
    return cpu, wall, done[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds-of-work", type=float, default=1.0)
    parser.add_argument("--switch-interval", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    started = time.thread_time()
    step_of_work()
    steps = max(1, int(args.seconds_of_work / max(time.thread_time() - started, 1e-6)))
    print(
        f"switch interval {sys.getswitchinterval() * 1000:.1f} ms; {steps:,} steps of loop work, "
        f"best of {args.rounds}"
    )
    baseline = min(asyncio.run(measure(None, steps))[0] for _ in range(args.rounds))
    print(f"baseline, the loop's work alone: {baseline:.2f} CPU s")
    for label, call in (
        ("no-op call", lambda event: None),
        ("orjson.loads of the event", orjson.loads),
    ):
        runs = [asyncio.run(measure(call, steps)) for _ in range(args.rounds)]
        cpu, wall, calls = max(runs, key=lambda run: run[2] / run[1])
        extra = (cpu - baseline) / calls * 1e6 if calls else float("nan")
        print(
            f"with four lanes handing a {label}: {calls / wall:>8,.0f} calls/s; "
            f"the loop's thread {cpu:.2f} CPU s (ratio {baseline / cpu:.2f} of the baseline), "
            f"{extra:,.0f} us more per call"
        )


if __name__ == "__main__":
    main()
