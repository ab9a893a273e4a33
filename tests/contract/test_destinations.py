"""The destination contract (bridge.protocols.Destination): each case runs against every
registered destination on its real server. How a destination takes part, and what its
traits declare: tests/contract/destination_harness.py; the rigs: destination_rigs.py."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from bridge.config.registry import registered
from bridge.errors import DestinationError, PermanentDestinationError
from bridge.failures import iso_millis
from bridge.records import FailureRecord
from tests.contract import destination_rigs
from tests.contract.destination_harness import (
    FORMATTER,
    FUNCTION_ARN,
    REGISTRY,
    REQUEST_ID,
    Rig,
    Traits,
    aged,
    delivery,
    exhausted,
    expected_documents,
    kinesis_records,
    names,
    run,
    traits_of,
)

assert destination_rigs.REGION  # the rigs register themselves on import
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
OVERSIZED = {"300KB": 300 * 1024, "2MB": 2 * 1024 * 1024}


@pytest.fixture
def rig(request: pytest.FixtureRequest, name: str, tmp_path: Path) -> Rig:
    _, factory = REGISTRY[name]
    return factory(request, tmp_path)


def takes_failures(traits: Traits) -> bool:
    return traits.takes_failures


async def send_all(rig: Rig, *failures: FailureRecord) -> None:
    destination = rig.build()
    await destination.start()
    try:
        for failure in failures:
            await destination.send(failure, FORMATTER)
    finally:
        await destination.close()


def batch_and_payload(document: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    return document["KinesisBatchInfo"], document.get("payload")


def test_every_registered_destination_type_has_a_rig() -> None:
    """A destination type without a rig would silently escape the contract."""
    assert sorted(REGISTRY) == sorted(registered("destinations"))


@pytest.mark.parametrize("name", names(takes_failures, "takes asynchronous records only"))
def test_a_failure_is_written_as_the_invocation_record(name: str, rig: Rig) -> None:
    """One send of a batch writes one document (one per record where the destination is
    per record): AWS's invocation record (esm-reference.md 10.1-10.4) with requestContext,
    responseContext of the last attempt, version 1.0, an ISO timestamp with milliseconds
    and the source's batch info; the event under `payload` where the destination keeps it."""
    traits = traits_of(name)
    failure = exhausted(kinesis_records(2))
    expected = expected_documents(traits, failure)
    run(send_all(rig, failure))
    documents = [written.document for written in rig.read_back(len(expected))]
    assert [batch_and_payload(document) for document in documents] == expected
    for document in documents:
        assert list(document) == [
            "requestContext",
            "responseContext",
            "version",
            "timestamp",
            "KinesisBatchInfo",
            *(["payload"] * traits.keeps_payload),
        ]
        assert document["requestContext"] == {
            "requestId": REQUEST_ID,
            "functionArn": FUNCTION_ARN,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        }
        assert document["responseContext"] == {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        }
        assert document["version"] == "1.0"
        assert document["timestamp"] == iso_millis(failure.timestamp)
        assert ISO_MILLIS.match(document["timestamp"])


@pytest.mark.parametrize("name", names(takes_failures, "takes asynchronous records only"))
def test_a_record_age_failure_has_no_response_context(name: str, rig: Rig) -> None:
    """RecordAgeExceeded: no responseContext (esm-reference.md 6.2, 10.1); a request id
    is made up, since there was no last invocation."""
    run(send_all(rig, aged(kinesis_records(1))))
    [written] = rig.read_back(1)
    assert "responseContext" not in written.document
    assert written.document["requestContext"]["condition"] == "RecordAgeExceeded"
    assert written.document["requestContext"]["approximateInvokeCount"] == 0
    assert written.document["requestContext"]["requestId"]


@pytest.mark.parametrize("name", names(takes_failures, "takes asynchronous records only"))
def test_failures_sent_in_a_row_all_arrive(name: str, rig: Rig) -> None:
    """Each send is written: three sends, three documents, none lost or merged."""
    failures = [exhausted(kinesis_records(1, first=n), invoke_count=n + 1) for n in range(3)]
    run(send_all(rig, *failures))
    documents = [written.document for written in rig.read_back(3)]
    assert sorted(
        document["requestContext"]["approximateInvokeCount"] for document in documents
    ) == [1, 2, 3]


@pytest.mark.parametrize(
    "name", names(lambda traits: traits.takes_failures and traits.ordered, "not ordered")
)
def test_failures_sent_in_a_row_arrive_in_order(name: str, rig: Rig) -> None:
    """An ordered destination keeps the order the failures were sent in."""
    failures = [exhausted(kinesis_records(1, first=n), invoke_count=n + 1) for n in range(5)]
    run(send_all(rig, *failures))
    documents = [written.document for written in rig.read_back(5)]
    assert [document["requestContext"]["approximateInvokeCount"] for document in documents] == [
        1,
        2,
        3,
        4,
        5,
    ]


@pytest.mark.parametrize(
    "name", names(lambda traits: traits.takes_deliveries, "records are queued by the service")
)
def test_a_delivery_arrives_unchanged(name: str, rig: Rig) -> None:
    """deliver() writes the document as it was built (JSON-equal)."""
    body = {"version": "1.0", "requestPayload": {"ids": [1, 2]}, "note": "é ünïcode"}

    async def main() -> None:
        destination = rig.build()
        await destination.start()
        try:
            await destination.deliver(delivery(body))
        finally:
            await destination.close()

    run(main())
    [written] = rig.read_back(1)
    assert written.document == body


@pytest.mark.parametrize(
    "name",
    names(
        lambda traits: traits.takes_deliveries and traits.has_attributes,
        "has no message attributes",
    ),
)
def test_a_delivery_keeps_its_attributes(name: str, rig: Rig) -> None:
    """The delivery's attributes arrive as the destination's message attributes, headers
    or fields (esm-reference.md 10.5: RequestID, ErrorCode, ...)."""

    async def main() -> None:
        destination = rig.build()
        await destination.start()
        try:
            await destination.deliver(delivery({"n": 1}))
        finally:
            await destination.close()

    run(main())
    [written] = rig.read_back(1)
    assert written.attributes == {"RequestID": REQUEST_ID, "ErrorCode": "200"}


@pytest.mark.parametrize("name", names())
def test_closing_twice_or_without_a_start_is_harmless(name: str, rig: Rig) -> None:
    async def main() -> None:
        never_started = rig.build()
        await never_started.close()
        await never_started.close()
        started = rig.build()
        await started.start()
        await started.close()
        await started.close()

    run(main())


@pytest.mark.parametrize(
    "name", names(lambda traits: not traits.takes_failures, "is an on-failure destination")
)
def test_a_failure_is_refused_for_good_where_the_type_takes_none(name: str, rig: Rig) -> None:
    """Event buses and functions take asynchronous records only (esm-reference.md 10.5)."""

    async def main() -> None:
        destination = rig.build()
        await destination.start()
        try:
            with pytest.raises(PermanentDestinationError, match="asynchronous invocations only"):
                await destination.send(exhausted(kinesis_records(1)), FORMATTER)
        finally:
            await destination.close()

    run(main())


@pytest.mark.parametrize(
    "name", names(lambda traits: not traits.takes_deliveries, "delivers records itself")
)
def test_a_delivery_is_refused_for_good_where_the_service_queues_it(name: str, rig: Rig) -> None:
    async def main() -> None:
        destination = rig.build()
        await destination.start()
        try:
            with pytest.raises(PermanentDestinationError, match="asynchronous service"):
                await destination.deliver(delivery({"n": 1}))
        finally:
            await destination.close()

    run(main())


def unreachable_said(rig: Rig, error: BaseException) -> None:
    """The error is about the service being away, and the URL's password is in neither
    its message nor the chained cause's."""
    assert re.search(rig.unreachable_error, str(error)), error
    shown = f"{error} {error.args!r} {error.__cause__}"
    assert not rig.secret or rig.secret not in shown


@pytest.mark.parametrize(
    "name",
    names(lambda traits: traits.unreachable_fails_at == "start", "starts while unreachable"),
)
def test_an_unreachable_service_fails_the_start(name: str, rig: Rig) -> None:
    """A destination that connects at start says so there, as a retriable-or-not
    DestinationError, in bounded time, without the credentials of its URL."""
    assert rig.unreachable is not None

    async def main() -> None:
        destination = rig.build(rig.unreachable)
        try:
            with pytest.raises(DestinationError) as raised:
                await destination.start()
            unreachable_said(rig, raised.value)
        finally:
            await destination.close()

    run(main())


@pytest.mark.parametrize(
    "name",
    names(
        lambda traits: traits.unreachable_fails_at == "send" and traits.takes_failures,
        "does not start, or takes no failures, while unreachable",
    ),
)
def test_an_unreachable_service_fails_each_send(name: str, rig: Rig) -> None:
    """The daemon starts while the service is away; each send raises a retriable
    DestinationError (the dispatcher retries, settling nothing), in bounded time and
    without the credentials of the URL."""
    assert rig.unreachable is not None

    async def main() -> None:
        destination = rig.build(rig.unreachable)
        await destination.start()
        try:
            for _ in range(2):
                with pytest.raises(DestinationError) as raised:
                    await destination.send(exhausted(kinesis_records(1)), FORMATTER)
                assert raised.value.retriable
                unreachable_said(rig, raised.value)
        finally:
            await destination.close()

    run(main())


@pytest.mark.parametrize(
    "name",
    names(
        lambda traits: traits.unreachable_fails_at == "send" and traits.takes_deliveries,
        "does not start, or delivers nothing, while unreachable",
    ),
)
def test_an_unreachable_service_fails_each_delivery(name: str, rig: Rig) -> None:
    assert rig.unreachable is not None

    async def main() -> None:
        destination = rig.build(rig.unreachable)
        await destination.start()
        try:
            with pytest.raises(DestinationError) as raised:
                await destination.deliver(delivery({"n": 1}))
            assert raised.value.retriable
            unreachable_said(rig, raised.value)
        finally:
            await destination.close()

    run(main())


@cache
def event_bytes(size: int) -> int:
    return len(FORMATTER.encode_event(kinesis_records(1, data=b"x" * size)))


def oversized(refused: bool) -> list[Any]:
    """(destination, size) pairs whose failure is expected refused (or written whole)."""
    cases = []
    for label, size in OVERSIZED.items():
        for param in names(takes_failures, "takes asynchronous records only"):
            name = param if isinstance(param, str) else param.values[0]
            limit = traits_of(name).payload_limit
            is_refused = limit is not None and event_bytes(size) > limit
            if is_refused == refused:
                marks = () if isinstance(param, str) else param.marks
                cases.append(pytest.param(name, size, id=f"{name}-{label}", marks=marks))
    return cases


@pytest.mark.parametrize(("name", "size"), oversized(refused=False))
def test_an_oversized_failure_is_written_whole(name: str, size: int, rig: Rig) -> None:
    """A record far over SQS's and SNS's message limits: a destination that keeps the
    payload writes it whole; a metadata-only one writes the whole metadata. Nothing is
    cut down to fit."""
    failure = exhausted(kinesis_records(1, data=b"x" * size))
    run(send_all(rig, failure))
    [written] = rig.read_back(1)
    assert [batch_and_payload(written.document)] == expected_documents(traits_of(name), failure)


@pytest.mark.parametrize(("name", "size"), oversized(refused=True))
def test_an_oversized_failure_is_refused_saying_why(name: str, size: int, rig: Rig) -> None:
    failure = exhausted(kinesis_records(1, data=b"x" * size))

    async def main() -> None:
        destination = rig.build()
        await destination.start()
        try:
            with pytest.raises(DestinationError, match=r"(?i)'failed'.*(too large|larger|limit)"):
                await destination.send(failure, FORMATTER)
        finally:
            await destination.close()

    run(main())
