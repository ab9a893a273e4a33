"""Tumbling windows (esm-reference.md 1.9) through the real mapping worker, in memory."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bridge.codec import dumps
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import MappingSettings
from bridge.records import InvokeResult, Record
from bridge.retry import Backoff
from bridge.testing import MemoryEventFormatter, MemorySource, ScriptedInvoker

FAST = Backoff(initial=0.001, maximum=0.01)
ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s"


class StreamFormatter(MemoryEventFormatter):
    source_arn = ARN


def records(arrivals: list[float]) -> list[Record]:
    return [
        Record("shardId-0", index, str(index), {"id": index}, arrival, "shardId-0")
        for index, arrival in enumerate(arrivals)
    ]


def runner(source: MemorySource, invoker: ScriptedInvoker, window: int) -> MappingRunner:
    return MappingRunner(
        name="m",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        settings=MappingSettings(
            batch=BatchPolicy(max_records=2),
            retry=RetryPolicy(backoff=FAST),
            parallelization_factor=1,
            maximum_concurrency=1,
            tumbling_window=window,
        ),
        source_factory=lambda: source,
        invoker=invoker,
        destination=None,
        reconnect_backoff=FAST,
    )


def counting(event: dict[str, Any], request_id: str) -> InvokeResult:
    """Sums the ids of the window's records in `state`."""
    total = event["state"].get("total", 0) + sum(item["id"] for item in event["Records"])
    return InvokeResult(payload=dumps({"state": {"total": total}}), request_id=request_id)


async def run_until(runner_: MappingRunner, condition: Any, timeout: float = 10) -> None:
    task = asyncio.create_task(runner_.run())
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    finally:
        runner_.stop()
        await asyncio.wait_for(task, 5)


def test_state_passes_within_a_window_and_the_final_call_hands_it_over() -> None:
    """Each call carries the window, the state of the previous call, the shard and the
    stream; a record of the next window triggers the final call with no records; the
    window's records are settled only after it."""
    base = 1_700_000_040.0  # a multiple of 60
    source = MemorySource(records([base + 1, base + 2, base + 3, base + 61]))
    source.formatter = StreamFormatter()
    source.source_arn = ARN
    invoker = ScriptedInvoker(counting)
    calls_at_settle: list[int] = []
    original_commit = source.commit

    async def watching_commit(positions: Any) -> None:
        calls_at_settle.append(len(invoker.events))
        await original_commit(positions)

    source.commit = watching_commit  # type: ignore[method-assign]
    asyncio.run(run_until(runner(source, invoker, 60), lambda: len(source.settled) == 4))
    assert calls_at_settle[0] == 3, "the first window's records settle only after its final call"
    first, second, final = invoker.events[0], invoker.events[1], invoker.events[2]
    assert first["window"] == {"start": "2023-11-14T22:14:00Z", "end": "2023-11-14T22:15:00Z"}
    assert (first["state"], first["shardId"], first["eventSourceARN"]) == ({}, "shardId-0", ARN)
    assert (first["isFinalInvokeForWindow"], first["isWindowTerminatedEarly"]) == (False, False)
    assert list(first) == [
        "Records",
        "window",
        "state",
        "shardId",
        "eventSourceARN",
        "isFinalInvokeForWindow",
        "isWindowTerminatedEarly",
    ]
    assert second["state"] == {"total": 0 + 1}
    assert final["Records"] == [] and final["isFinalInvokeForWindow"] is True
    assert final["state"] == {"total": 0 + 1 + 2}
    assert invoker.events[3]["window"]["start"] == "2023-11-14T22:15:00Z"
    assert invoker.events[3]["state"] == {}
    # That window is long over too, so its final call follows at once.
    assert invoker.events[4]["isFinalInvokeForWindow"] is True
    assert invoker.events[4]["state"] == {"total": 3}
    assert [record.item_id for record in source.settled] == ["0", "1", "2", "3"]
    assert source.checkpoints["shardId-0"].item_id == "3"


def test_a_window_without_further_records_closes_after_it_ends() -> None:
    """When nothing more arrives, the final call comes once the window is over."""
    now = time.time()
    source = MemorySource(records([now, now]))
    source.formatter = StreamFormatter()
    source.source_arn = ARN
    invoker = ScriptedInvoker(counting)
    asyncio.run(run_until(runner(source, invoker, 1), lambda: len(source.settled) == 2))
    assert invoker.events[-1]["isFinalInvokeForWindow"] is True
    assert invoker.events[-1]["state"] == {"total": 1}


def test_an_answer_without_state_is_a_failed_invocation() -> None:
    """The function must return {"state": {...}}; anything else is retried."""
    calls = {"n": 0}

    def forgetful(event: dict[str, Any], request_id: str) -> InvokeResult:
        calls["n"] += 1
        if calls["n"] == 1:
            return InvokeResult(payload=b'{"total": 1}', request_id=request_id)
        return counting(event, request_id)

    now = time.time()
    source = MemorySource(records([now]))
    source.formatter = StreamFormatter()
    source.source_arn = ARN
    invoker = ScriptedInvoker(forgetful)
    asyncio.run(run_until(runner(source, invoker, 1), lambda: len(source.settled) == 1))
    assert len(invoker.events[0]["Records"]) == len(invoker.events[1]["Records"]) == 1
    assert invoker.events[1]["state"] == {}


def test_a_failing_final_call_blocks_the_shard_until_it_succeeds() -> None:
    """The final call is retried; the window's records stay unsettled meanwhile."""
    failures = {"left": 3}

    def flaky_final(event: dict[str, Any], request_id: str) -> InvokeResult:
        if event["isFinalInvokeForWindow"] and failures["left"]:
            failures["left"] -= 1
            return InvokeResult(payload=b"{}", request_id=request_id, function_error="Unhandled")
        return counting(event, request_id)

    now = time.time()
    source = MemorySource(records([now]))
    source.formatter = StreamFormatter()
    source.source_arn = ARN
    invoker = ScriptedInvoker(flaky_final)
    asyncio.run(run_until(runner(source, invoker, 1), lambda: len(source.settled) == 1))
    finals = [event for event in invoker.events if event["isFinalInvokeForWindow"]]
    assert len(finals) == 4
