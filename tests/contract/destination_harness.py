"""What the destination contract (tests/contract/test_destinations.py) runs against.

Every case is written once and runs for each destination type registered in
`bridge.config.registry` (`_BUILTIN["destinations"]` and the `lambda_bridge.destinations`
entry points). A destination takes part by registering a rig factory here, in
tests/contract/destination_rigs.py, with the traits that say what it can do:

    @register("my-queue", Traits(ordered=True, has_attributes=True))
    def my_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
        endpoint = request.getfixturevalue("my_queue_url")  # its real server
        queue = make_a_queue(endpoint)
        return Rig(
            config={"type": "my-queue", "url": endpoint, "queue": queue},
            read_back=lambda count: [Written(json.loads(m)) for m in read_all(queue)],
            unreachable={"type": "my-queue", "url": "http://u:pw@127.0.0.1:9", "queue": "q"},
            secret="pw",
        )

`config` is what a user writes under `destinations:`; the suite builds it as the daemon
does (the registered config model's `build`). `read_back(count)` waits until at least
`count` documents were written and returns them all, read from the real server.
`unreachable` is a config of the same type whose service cannot be reached (with
`secret` in its URL, which no error may show), and `unreachable_error` what the error
then says. What a destination cannot do by AWS's rules
is declared in its Traits, never tested for with ifs: the cases that need a trait are
parametrized only over the destinations that have it (see `names`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from bridge.config.plugins import BuildContext, Identity
from bridge.config.registry import registered
from bridge.protocols import Destination
from bridge.records import Delivery, FailureCondition, FailureRecord, InvokeResult, Record
from connectors.kinesis.events import KinesisEventFormatter, KinesisRecords

SHARD = "shardId-000000000001"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:orders"
REQUEST_ID = "c9b8fa9f-5a7f-4b1e-af9c-0c604cde93a5"
# 2023-11-14T22:13:20.250Z
TIMESTAMP = 1_700_000_000.25
FIRST_SEQUENCE = 49_601_189_658_422_359_378_836_298_521_827_638_475_320_189_012_309_704_722
FORMATTER = KinesisEventFormatter(STREAM_ARN)
KINESIS = KinesisRecords(
    stream_arn=STREAM_ARN,
    region="us-east-1",
    invoke_identity_arn="arn:aws:iam::123456789012:role/lambda-role",
)
# Nothing a destination does may take longer than this (the SDKs' own timeouts are shorter).
BOUND_SECONDS = 60.0


@dataclass(frozen=True)
class Traits:
    """What a destination does, by AWS's rules and its own documentation."""

    # An on-failure destination of event source mappings (EventBridge and Lambda take
    # records of asynchronous invocations only, esm-reference.md 10.5).
    takes_failures: bool = True
    # Delivers asynchronous invocation records itself (Lambda's are queued by the
    # asynchronous service instead, bridge.asyncinvoke.service).
    takes_deliveries: bool = True
    # The failure record embeds the discarded event under `payload` (10.2).
    keeps_payload: bool = False
    # One document per failed record rather than per batch (Kafka topics, 10.4).
    per_record: bool = False
    # Documents are read back in the order they were written.
    ordered: bool = False
    # Deliveries keep their message attributes (as attributes, headers or fields).
    has_attributes: bool = False
    # With its service unreachable: `start` raises, or `start` only logs and each send
    # (delivery) raises. None: there is no service to lose.
    unreachable_fails_at: Literal["start", "send"] | None = "send"
    # A failure record whose discarded event is larger than this many bytes is refused
    # with a DestinationError (Kafka: the producer's 1 MiB max_request_size); None:
    # written whole however large (metadata-only destinations never carry the event).
    payload_limit: int | None = None


@dataclass(frozen=True)
class Written:
    """One document as read back from the destination's server."""

    document: Any
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Rig:
    config: dict[str, Any]
    read_back: Callable[[int], list[Written]]
    unreachable: dict[str, Any] | None = None
    secret: str = ""
    # What the error for an unreachable service says (so it fails for that reason).
    unreachable_error: str = r"(?i)connect|reach"
    context: BuildContext = field(
        default_factory=lambda: BuildContext(Identity(), Path("."), Path("."))
    )

    def build(self, config: dict[str, Any] | None = None) -> Destination:
        """The destination as the daemon builds it: validated by its registered config
        model, built with a BuildContext."""
        settings = self.config if config is None else config
        model = registered("destinations")[settings["type"]]
        destination: Destination = model.model_validate(settings).build("failed", self.context)
        return destination


RigFactory = Callable[[pytest.FixtureRequest, Path], Rig]
REGISTRY: dict[str, tuple[Traits, RigFactory]] = {}


def register(name: str, traits: Traits) -> Callable[[RigFactory], RigFactory]:
    def add(factory: RigFactory) -> RigFactory:
        REGISTRY[name] = (traits, factory)
        return factory

    return add


def traits_of(name: str) -> Traits:
    return REGISTRY[name][0]


def names(needs: Callable[[Traits], bool] | None = None, why: str = "") -> list[Any]:
    """Every registered destination as a pytest parameter; those whose traits rule the
    case out are shown as skipped with `why`."""
    return [
        pytest.param(name, marks=pytest.mark.skip(reason=f"{name}: {why}"))
        if needs is not None and not needs(traits)
        else name
        for name, (traits, _) in sorted(REGISTRY.items())
    ]


def run(main: Coroutine[Any, Any, Any]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(BOUND_SECONDS):
            return await main

    return asyncio.run(bounded())


# -- what is sent ------------------------------------------------------------------------


def kinesis_records(
    count: int = 2, data: bytes = b'{"amount": 42}', first: int = 0
) -> list[Record]:
    return KINESIS.records(
        SHARD,
        [
            {
                "SequenceNumber": str(FIRST_SEQUENCE + first + index),
                "PartitionKey": f"order-{first + index}",
                "ApproximateArrivalTimestamp": TIMESTAMP - 2 + index / 4,
                "Data": data,
            }
            for index in range(count)
        ],
    )


def exhausted(records: Sequence[Record], invoke_count: int = 3) -> FailureRecord:
    return FailureRecord(
        mapping="orders-stream",
        condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        records=records,
        approximate_invoke_count=invoke_count,
        function_arn=FUNCTION_ARN,
        timestamp=TIMESTAMP,
        last_result=InvokeResult(b'{"errorMessage": "boom"}', REQUEST_ID, "Unhandled"),
    )


def aged(records: Sequence[Record]) -> FailureRecord:
    return FailureRecord(
        mapping="orders-stream",
        condition=FailureCondition.RECORD_AGE_EXCEEDED,
        records=records,
        approximate_invoke_count=0,
        function_arn=FUNCTION_ARN,
        timestamp=TIMESTAMP,
    )


def delivery(body: dict[str, Any]) -> Delivery:
    return Delivery(
        json.dumps(body).encode(),
        "orders.async",
        f"{FUNCTION_ARN}:$LATEST",
        False,
        {"RequestID": ("String", REQUEST_ID), "ErrorCode": ("Number", "200")},
    )


def expected_documents(traits: Traits, failure: FailureRecord) -> list[tuple[dict[str, Any], Any]]:
    """(KinesisBatchInfo, payload or None) of each document `failure` becomes."""
    batches = [[record] for record in failure.records] if traits.per_record else [failure.records]
    return [
        (
            FORMATTER.batch_info(batch)[1],
            json.loads(FORMATTER.encode_event(batch)) if traits.keeps_payload else None,
        )
        for batch in batches
    ]
