"""The `nats` source against a real nats-server with JetStream.

Each test makes its own stream. Most run the real pipeline (MappingRunner) with a
scripted function, as the daemon runs a mapping, and look at what the function got and
at the consumer's state on the server; a few open the source on its own. Waits poll up
to a bound; no assertion depends on a timing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from structlog.testing import capture_logs

from bridge.codec import dumps
from bridge.config.plugins import Identity, SourceContext
from bridge.errors import PermanentSourceError
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import MappingSettings
from bridge.records import InvokeResult
from bridge.retry import Backoff, RetryPolicy
from bridge.testing import ScriptedInvoker, StandaloneOwnership
from connectors.nats import source as nats_source
from connectors.nats.config import NatsSourceConfig
from connectors.nats.source import NatsSource
from tests import services

# The `eu` messages the function fails the first time (with the `eu` ones after them).
FAILING = {2, 5, 9, 14}
FAST = Backoff(initial=0.01, maximum=0.05)
TIMEOUT = 20.0


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


async def until(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await _holds(check):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def _holds(check: Callable[[], Any]) -> bool:
    result = check()
    if asyncio.iscoroutine(result):
        result = await result
    return bool(result)


class Place:
    """A fresh stream on the server, a client to publish with, and sources for it."""

    def __init__(self, url: str, client: Any, stream: str) -> None:
        self.url = url
        self.client = client
        self.js = client.jetstream()
        self.stream = stream
        self.consumer = "billing"
        self.runner: MappingRunner | None = None

    async def publish(self, subject_suffix: str, body: dict[str, Any]) -> None:
        await self.js.publish(f"{self.stream}.{subject_suffix}", json.dumps(body).encode())

    def config(self, **settings: Any) -> NatsSourceConfig:
        return NatsSourceConfig.model_validate(
            {
                "type": "nats",
                "url": self.url,
                "stream": self.stream,
                "subject": f"{self.stream}.>",
                "consumer": self.consumer,
                "fetch_wait_seconds": 0.2,
                **settings,
            }
        )

    def source(self, batch_size: int = 10, concurrency: int = 2, **settings: Any) -> NatsSource:
        context = SourceContext(
            mapping="billing",
            identity=Identity(),
            checkpoints=None,  # type: ignore[arg-type]
            state_dir=Path("."),
            batch_size=batch_size,
            maximum_concurrency=concurrency,
            function_timeout=1.0,
        )
        source = self.config(**settings).build(context)
        assert isinstance(source, NatsSource)
        return source

    async def consumer_info(self) -> Any:
        return await self.js.consumer_info(self.stream, self.consumer)

    @asynccontextmanager
    async def mapping(
        self,
        function: Callable[[dict[str, Any], str], Any],
        *,
        batch_size: int = 10,
        concurrency: int = 2,
        report_failures: bool = True,
        **settings: Any,
    ) -> AsyncIterator[ScriptedInvoker]:
        invoker = ScriptedInvoker(function)
        runner = MappingRunner(
            name="billing",
            function_arn="arn:aws:lambda:us-east-1:000000000000:function:billing",
            settings=MappingSettings(
                batch=BatchPolicy(max_records=batch_size),
                retry=RetryPolicy(report_batch_item_failures=report_failures, backoff=FAST),
                parallelization_factor=1,
                maximum_concurrency=concurrency,
            ),
            source_factory=lambda: self.source(batch_size, concurrency, **settings),
            invoker=invoker,
            destination=None,
            reconnect_backoff=FAST,
        )
        self.runner = runner
        task = asyncio.create_task(runner.run())

        async def consumer_made() -> bool:
            try:
                await self.consumer_info()
            except nats.js.errors.NotFoundError:
                return False
            return True

        try:
            await until(consumer_made, "the source to make its consumer")
            yield invoker
        finally:
            runner.stop()
            await asyncio.wait_for(task, 30)


@pytest.fixture
def place(nats_url: str) -> Callable[[Callable[[Place], Awaitable[None]]], None]:
    def runner(body: Callable[[Place], Awaitable[None]]) -> None:
        async def main() -> None:
            client = await nats.connect(nats_url)
            stream = f"orders-{uuid.uuid4().hex[:12]}"
            try:
                await client.jetstream().add_stream(name=stream, subjects=[f"{stream}.>"])
                await body(Place(nats_url, client, stream))
            finally:
                await client.close()

        run(main)

    return runner


def items(invoker: ScriptedInvoker) -> list[dict[str, Any]]:
    return [item for event in invoker.events for item in event["Records"]]


def body_of(item: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(item["data"]))
    return decoded


def fail_items(failing: Callable[[dict[str, Any]], bool]) -> Callable[..., InvokeResult]:
    """A function that reports the records `failing` picks as batchItemFailures."""

    def function(event: dict[str, Any], request_id: str) -> InvokeResult:
        failures = [
            {"itemIdentifier": item["messageId"]} for item in event["Records"] if failing(item)
        ]
        return InvokeResult(dumps({"batchItemFailures": failures}), request_id)

    return function


def test_messages_are_acknowledged_once_their_batch_succeeded(place: Any) -> None:
    async def body(space: Place) -> None:
        for n in range(12):
            await space.publish("created", {"n": n})
        succeed = fail_items(lambda item: False)
        async with space.mapping(succeed) as invoker:
            await until(lambda: len(items(invoker)) >= 12, "every message delivered")

            async def all_acknowledged() -> bool:
                info = await space.consumer_info()
                return bool(info.num_ack_pending == 0 and info.ack_floor.stream_seq == 12)

            await until(all_acknowledged, "every message acknowledged")
        assert sorted(body_of(item)["n"] for item in items(invoker)) == list(range(12))
        assert {item["numDelivered"] for item in items(invoker)} == {1}
        info = await space.consumer_info()
        # Created by the source as configured: explicit acks, bounded pending.
        assert info.config.ack_policy == AckPolicy.EXPLICIT
        assert info.config.max_ack_pending == 10 * 2

    place(body)


def test_reported_failures_are_nakked_and_come_again_with_a_growing_delivery_count(
    place: Any,
) -> None:
    async def body(space: Place) -> None:
        for n in range(6):
            await space.publish("created", {"n": n})
        function = fail_items(lambda item: body_of(item)["n"] == 3 and item["numDelivered"] < 3)
        async with space.mapping(function) as invoker:

            def target_done() -> bool:
                return any(body_of(i)["n"] == 3 and i["numDelivered"] == 3 for i in items(invoker))

            await until(target_done, "the failed message delivered a third time")

            async def settled() -> bool:
                return bool((await space.consumer_info()).num_ack_pending == 0)

            await until(settled, "every message acknowledged in the end")
        deliveries: dict[int, list[int]] = {}
        for item in items(invoker):
            deliveries.setdefault(body_of(item)["n"], []).append(item["numDelivered"])
        assert deliveries.pop(3) == [1, 2, 3]
        assert deliveries == {n: [1] for n in (0, 1, 2, 4, 5)}, "a success came again"

    place(body)


def test_max_deliver_is_honoured(place: Any) -> None:
    """A message failed `max_deliver` times is no longer delivered; the server says so
    in its MAX_DELIVERIES advisory, where a dead-letter stream can collect it, and the
    bridge logs it (without the payload)."""

    async def body(space: Place) -> None:
        advisories: list[dict[str, Any]] = []

        async def advised(msg: Any) -> None:
            advisories.append(json.loads(msg.data))

        subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{space.stream}.{space.consumer}"
        await space.client.subscribe(subject, cb=advised)
        await space.publish("created", {"n": 0})
        await space.publish("created", {"n": 1})
        function = fail_items(lambda item: body_of(item)["n"] == 0)
        with capture_logs() as logs:
            async with space.mapping(function, max_deliver=2, ack_wait_seconds=1) as invoker:
                await until(lambda: advisories, "the max deliveries advisory")
                # Longer than the ack wait: a third delivery would have come by now.
                await asyncio.sleep(1.5)
        counts = [body_of(item)["n"] for item in items(invoker)]
        assert counts.count(0) == 2 and counts.count(1) == 1
        [advisory] = advisories
        assert advisory["stream_seq"] == 1 and advisory["deliveries"] == 2
        [given_up] = [entry for entry in logs if entry["event"] == "nats.max_deliver_reached"]
        assert given_up["log_level"] == "warning"
        assert given_up["message_id"] == 1 and given_up["deliveries"] == 2
        assert given_up["subject"] == f"{space.stream}.created"
        assert given_up["mapping"] == "billing"
        assert '"n"' not in repr(given_up), "the payload was logged"

    place(body)


def test_a_slow_invocation_keeps_its_messages_in_progress(place: Any) -> None:
    """The function runs for longer than the ack wait: the source marks the messages in
    progress, so the server does not hand them out a second time meanwhile."""

    async def body(space: Place) -> None:
        await space.publish("created", {"n": 0})

        async def slow(event: dict[str, Any], request_id: str) -> InvokeResult:
            await asyncio.sleep(3.0)
            return InvokeResult(b"null", request_id)

        async with space.mapping(slow, ack_wait_seconds=1) as invoker:
            await until(lambda: items(invoker), "the delivery")

            async def acknowledged() -> bool:
                return bool((await space.consumer_info()).ack_floor.stream_seq == 1)

            await until(acknowledged, "the message acknowledged")
        assert [item["numDelivered"] for item in items(invoker)] == [1]

    place(body)


def test_ordered_by_subject_keeps_each_subject_in_order_through_failures(place: Any) -> None:
    """With ordered_by_subject, a subject's messages reach the function in stream order,
    even when one fails and the ones after it had already been read."""

    async def body(space: Place) -> None:
        for n in range(20):
            for subject in ("eu", "us"):
                await space.publish(subject, {"n": n})
        failed_once: set[int] = set()
        succeeded: dict[str, list[int]] = {"eu": [], "us": []}

        def function(event: dict[str, Any], request_id: str) -> InvokeResult:
            # As AWS advises for FIFO (esm-reference.md 5.2): a subject's first failure
            # and everything of that subject after it in the batch are reported.
            failing: set[str] = set()
            failures = []
            for item in event["Records"]:
                subject, number = item["subject"].rsplit(".", 1)[1], body_of(item)["n"]
                if subject == "eu" and number in FAILING and number not in failed_once:
                    failed_once.add(number)
                    failing.add(subject)
                if subject in failing:
                    failures.append({"itemIdentifier": item["messageId"]})
                else:
                    succeeded[subject].append(number)
            return InvokeResult(dumps({"batchItemFailures": failures}), request_id)

        async with space.mapping(function, batch_size=3, ordered_by_subject=True):

            async def done() -> bool:
                info = await space.consumer_info()
                return bool(info.ack_floor.stream_seq == 40 and info.num_ack_pending == 0)

            await until(done, "every message acknowledged")
        assert succeeded == {"eu": list(range(20)), "us": list(range(20))}
        assert failed_once == FAILING

    place(body)


def test_an_existing_consumer_is_used_as_it_is_with_one_warning(place: Any) -> None:
    async def body(space: Place) -> None:
        await space.js.add_consumer(
            space.stream,
            ConsumerConfig(
                durable_name=space.consumer,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60,
                max_ack_pending=7,
            ),
        )
        source = space.source(ack_wait_seconds=5)
        with capture_logs() as logs:
            await source.open(StandaloneOwnership())
        await source.close()
        [warning] = [entry for entry in logs if entry["event"] == "nats.consumer_differs"]
        assert "ack_wait 60.0 instead of 5.0" in warning["message"]
        assert "filter subject None instead of" in warning["message"]
        assert source.redelivery_seconds == 60
        info = await space.consumer_info()
        assert info.config.ack_wait == 60, "the consumer was changed"

    place(body)


def test_a_push_consumer_or_a_missing_stream_fails_the_mapping(place: Any) -> None:
    async def body(space: Place) -> None:
        await space.js.add_consumer(
            space.stream,
            ConsumerConfig(
                durable_name=space.consumer,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_subject=f"deliver.{space.stream}",
            ),
        )
        source = space.source()
        with pytest.raises(PermanentSourceError, match="push consumer"):
            await source.open(StandaloneOwnership())
        await source.close()
        missing = space.source(stream="nothing-here")
        with pytest.raises(PermanentSourceError, match="no stream 'nothing-here'"):
            await missing.open(StandaloneOwnership())
        await missing.close()

    place(body)


def test_create_stream_makes_a_missing_stream(place: Any) -> None:
    async def body(space: Place) -> None:
        stream = f"made-{uuid.uuid4().hex[:8]}"
        source = space.source(stream=stream, subject=f"{stream}.>", create_stream=True)
        await source.open(StandaloneOwnership())
        try:
            await space.js.publish(f"{stream}.x", b"hello")
            records: list[Any] = []
            await until(lambda: _extend(records, source), "the message")
            assert records[0].payload["subject"] == f"{stream}.x"
            await source.acknowledge(records)
        finally:
            await source.close()
        info = await space.js.stream_info(stream)
        assert info.config.subjects == [f"{stream}.>"]

    place(body)


async def _extend(records: list[Any], source: NatsSource) -> bool:
    records.extend(await source.read())
    return bool(records)


def test_a_server_killed_and_restarted_loses_nothing(tmp_path: Path) -> None:
    """kill -9 of the nats-server while messages are with the function: the mapping
    reports the lost connection, reconnects once the server is back (same store), and
    every message is delivered and acknowledged in the end."""
    server = services.nats_server(tmp_path / "nats")
    url = f"nats://127.0.0.1:{server.port}"

    async def main() -> None:
        client = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        stream = f"orders-{uuid.uuid4().hex[:12]}"
        try:
            await client.jetstream().add_stream(name=stream, subjects=[f"{stream}.>"])
            space = Place(url, client, stream)
            for n in range(40):
                await space.publish("created", {"n": n})

            async def slowly(event: dict[str, Any], request_id: str) -> InvokeResult:
                await asyncio.sleep(0.05)
                return InvokeResult(b"null", request_id)

            async with space.mapping(slowly, batch_size=5, ack_wait_seconds=2) as invoker:
                runner = space.runner
                assert runner is not None
                await until(lambda: len(items(invoker)) >= 10, "some deliveries")
                await asyncio.to_thread(server.kill)
                await until(
                    lambda: runner.state_reason and "disconnected" in runner.state_reason,
                    "the problem reported",
                )
                await asyncio.to_thread(server.start)
                done = {n: False for n in range(40)}

                async def all_acknowledged() -> bool:
                    for item in items(invoker):
                        done[body_of(item)["n"]] = True
                    if not all(done.values()):
                        return False
                    info = await space.consumer_info()
                    return bool(info.ack_floor.stream_seq == 40 and info.num_ack_pending == 0)

                await until(all_acknowledged, "every message delivered and acknowledged", 40)
        finally:
            await client.close()

    try:
        run(main)
    finally:
        server.stop()


def test_a_deleted_consumer_fails_the_mapping_instead_of_starting_over(
    place: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer deleted on the server is not made again behind the operator's back
    (which would deliver the whole stream again): the mapping fails with the reason."""
    monkeypatch.setattr(nats_source, "CONSUMER_CHECK_SECONDS", 0.1)

    async def body(space: Place) -> None:
        succeed = fail_items(lambda item: False)
        async with space.mapping(succeed):
            runner = space.runner
            assert runner is not None
            await space.js.delete_consumer(space.stream, space.consumer)
            await until(lambda: runner.state.value == "Failed", "the mapping failed")
            assert "consumer 'billing' is gone" in runner.state_reason

    place(body)
