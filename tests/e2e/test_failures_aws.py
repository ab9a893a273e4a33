"""`lambda-bridge failures` against moto: a Kinesis mapping's `file` failure records
redriven with their original Kinesis events, and an SQS queue's dead-letter queue moved
back into it at a capped rate (StartMessageMoveTask done by hand: moto lacks it)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.failurestores import MoveProgress
from connectors.sqs import deadletters
from connectors.sqs.config import SqsSourceConfig
from connectors.sqs.deadletters import SqsDeadLetterQueue
from tests.e2e import aws_helpers as aws
from tests.e2e.redrive_helpers import RedriveSpace, listed_ids
from tests.support import read_jsonl, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def space(tmp_path: Path, aws_endpoint: str) -> Iterator[RedriveSpace]:
    workspace = RedriveSpace(tmp_path)
    workspace.endpoint = aws_endpoint  # type: ignore[attr-defined]
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def write_config(space: RedriveSpace, source: str, mapping: str = "") -> Path:
    path = space.root / "bridge.yaml"
    path.write_text(
        f"""\
state_dir: ./state
drain_timeout_seconds: 10
functions:
  steered: {{invoker: python, handler: "steered.py:handler", timeout: 1}}
destinations:
  failed: {{type: file, path: ./failed}}
mappings:
  - name: events
    function: steered
    source: {source}
{mapping}"""
    )
    return path


def kinesis_numbers(event: dict[str, Any]) -> list[int]:
    return [json.loads(base64.b64decode(r["kinesis"]["data"]))["n"] for r in event["Records"]]


def test_kinesis_failures_are_redriven_with_their_original_records(space: RedriveSpace) -> None:
    endpoint: str = space.endpoint  # type: ignore[attr-defined]
    stream = aws.new_stream(endpoint)
    source = (
        f'{{type: kinesis, stream: {stream}, endpoint_url: "{endpoint}", '
        "starting_position: TRIM_HORIZON, poll_interval_seconds: 0.2}"
    )
    mapping = (
        "    batch_size: 3\n    maximum_retry_attempts: 0\n"
        "    destination_config: {on_failure: {destination: failed}}\n"
    )
    config = write_config(space, source, mapping)
    space.set("fail", True)
    daemon = space.daemon(config).wait_ready()
    aws.put_records(endpoint, stream, [{"n": n} for n in range(7)])
    failure_file = space.root / "failed" / "events.jsonl"
    wait_for(
        lambda: sum(f["KinesisBatchInfo"]["batchSize"] for f in read_jsonl(failure_file)) == 7,
        timeout=60,
        what="failure records of all 7 records",
    )
    assert daemon.stop() == 0
    space.set("fail", False)
    space.forget_calls()
    failures = read_jsonl(failure_file)

    listing = space.run("list", "events", config=config)
    ids = listed_ids(listing.out)
    assert len(ids) == len(failures) and "RetryAttemptsExhausted  records=3" in listing.out
    shown = space.run("show", ids[0], config=config)
    assert '"KinesisBatchInfo"' in shown.out and '"eventSource": "aws:kinesis"' in shown.out

    redriven = space.run("redrive", "events", "--all", "--since", "1h", config=config)
    assert redriven.code == 0, redriven.err
    events = space.events()
    assert events == [failure["payload"] for failure in failures]
    assert sorted(n for event in events for n in kinesis_numbers(event)) == list(range(7))
    assert all(r["eventSource"] == "aws:kinesis" for e in events for r in e["Records"])
    again = space.run("redrive", "events", "--all", config=config)
    assert f"0 redriven, 0 failed again, {len(ids)} already redriven" in again.out
    assert len(space.events()) == len(events)


def test_an_sqs_dead_letter_queue_is_moved_back_at_the_rate_asked(space: RedriveSpace) -> None:
    endpoint: str = space.endpoint  # type: ignore[attr-defined]
    dead_url, dead_arn = aws.new_queue(endpoint)
    url, _ = aws.new_queue(endpoint, visibility=1, dead_letter_arn=dead_arn, max_receives=1)
    sqs = aws.client("sqs", endpoint)
    for n in range(6):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"n": n}),
            MessageAttributes={"tenant": {"DataType": "String", "StringValue": f"t{n}"}},
        )
    source = f'{{type: sqs, queue_url: "{url}", endpoint_url: "{endpoint}", wait_time_seconds: 1}}'
    config = write_config(space, source)
    space.set("fail", True)
    daemon = space.daemon(config).wait_ready()
    wait_for(lambda: aws.queue_depth(endpoint, dead_url) == 6, timeout=60, what="the dead letters")
    assert daemon.stop() == 0
    space.set("fail", False)
    space.forget_calls()

    listing = space.run("list", "events", config=config)
    assert listing.code == 0 and listing.out.endswith(": 6 messages (approximate)\n"), listing
    dry = space.run("redrive", "events", "--dry-run", config=config)
    assert "holds 6 messages" in dry.out and aws.queue_depth(endpoint, dead_url) == 6

    started = time.monotonic()
    moved = space.run("redrive", "events", "--max-per-second", "4", config=config)
    took = time.monotonic() - started
    assert moved.code == 0, moved.err
    assert moved.out.endswith("6 messages moved back, 0 could not be moved\n")
    # Four a second: the second batch (messages 5 and 6) waits until a second has passed.
    assert took >= 1.0
    assert aws.queue_depth(endpoint, dead_url) == 0

    daemon = space.daemon(config).wait_ready()
    wait_for(lambda: len(space.events()) >= 1, timeout=30, what="the moved messages")
    records = wait_for(
        lambda: (
            (found := [r for e in space.events() for r in e["Records"]])
            and len(found) == 6
            and found
        ),
        timeout=30,
        what="all six moved messages",
    )
    assert sorted(json.loads(r["body"])["n"] for r in records) == list(range(6))
    for record in records:
        n = json.loads(record["body"])["n"]
        assert record["messageAttributes"]["tenant"]["stringValue"] == f"t{n}"
        assert record["eventSource"] == "aws:sqs"
    assert daemon.stop() == 0
    nothing = space.run("redrive", "events", config=config)
    assert nothing.out.endswith("0 messages moved back, 0 could not be moved\n")


def test_a_fifo_dead_letter_queue_keeps_groups_and_leaves_other_queues_messages(
    space: RedriveSpace,
) -> None:
    """FIFO: each message goes back with its group (and the dead-letter message id as its
    deduplication id); --limit caps how many are moved."""
    endpoint: str = space.endpoint  # type: ignore[attr-defined]
    dead_url, dead_arn = aws.new_queue(endpoint, fifo=True)
    url, _ = aws.new_queue(endpoint, fifo=True, dead_letter_arn=dead_arn)
    aws.send(endpoint, dead_url, [{"n": n} for n in range(3)], group="alpha")
    aws.send(endpoint, dead_url, [{"n": n} for n in range(3, 5)], group="beta")
    source = f'{{type: sqs, queue_url: "{url}", endpoint_url: "{endpoint}", wait_time_seconds: 1}}'
    config = write_config(space, source)

    first = space.run("redrive", "events", "--limit", "3", config=config)
    assert first.code == 0 and first.out.endswith("3 messages moved back, 0 could not be moved\n")
    rest = space.run("redrive", "events", "--dlq", dead_url, config=config)
    assert rest.out.endswith("2 messages moved back, 0 could not be moved\n"), rest
    assert aws.queue_depth(endpoint, dead_url) == 0

    sqs = aws.client("sqs", endpoint)
    groups: dict[str, list[int]] = {}
    while reply := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["MessageGroupId"]
    ).get("Messages"):
        for message in reply:
            group = message["Attributes"]["MessageGroupId"]
            groups.setdefault(group, []).append(json.loads(message["Body"])["n"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert groups == {"alpha": [0, 1, 2], "beta": [3, 4]}


def test_large_dead_letters_are_sent_back_in_batches_that_fit(space: RedriveSpace) -> None:
    """Ten messages of about 110 KB are over SendMessageBatch's total in one batch (moto's
    1 MiB; AWS's 256 KiB before 2025): they are sent in several, all of them moved."""
    endpoint: str = space.endpoint  # type: ignore[attr-defined]
    dead_url, dead_arn = aws.new_queue(endpoint)
    url, _ = aws.new_queue(endpoint, dead_letter_arn=dead_arn)
    sqs = aws.client("sqs", endpoint)
    for n in range(10):
        sqs.send_message(QueueUrl=dead_url, MessageBody=json.dumps({"n": n, "pad": "x" * 110_000}))
    source = f'{{type: sqs, queue_url: "{url}", endpoint_url: "{endpoint}", wait_time_seconds: 1}}'
    moved = space.run("redrive", "events", config=write_config(space, source))
    assert moved.code == 0, moved
    assert moved.out.endswith("10 messages moved back, 0 could not be moved\n"), moved.out
    assert aws.queue_depth(endpoint, dead_url) == 0
    assert sorted(body["n"] for body in aws.drain(endpoint, url)) == list(range(10))


class MarkedOrigins(SqsDeadLetterQueue):
    """moto sets no DeadLetterQueueSourceArn: here a body with `"other": true` stands for
    a message another queue's redrive policy sent to the dead-letter queue."""

    def _came_from_source(self, message: dict[str, Any]) -> bool:
        return not json.loads(message["Body"]).get("other")


def test_a_move_goes_on_past_receives_of_only_other_queues_messages(
    aws_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The messages left alone come back once their hiding ends (1 s here, not 60) and,
    moto returning the oldest first, fill whole receives while this queue's still wait."""
    monkeypatch.setattr(deadletters, "MOVING_VISIBILITY_SECONDS", 1)
    dead_url, dead_arn = aws.new_queue(aws_endpoint)
    url, _ = aws.new_queue(aws_endpoint, dead_letter_arn=dead_arn)
    aws.send(aws_endpoint, dead_url, [{"other": True, "n": n} for n in range(5)])
    aws.send(aws_endpoint, dead_url, [{"n": n} for n in range(30)])
    source = SqsSourceConfig.model_validate(
        {"type": "sqs", "queue_url": url, "endpoint_url": aws_endpoint}
    )
    queue = MarkedOrigins(source, None, "us-east-1")

    async def move() -> MoveProgress:
        await queue.open()
        try:
            # Five a second: the move lasts about 6 s, receiving five at a time.
            return await queue.move(max_per_second=5, limit=None, report=lambda line: None)
        finally:
            await queue.close()

    progress = asyncio.run(asyncio.wait_for(move(), 120))
    assert (progress.moved, progress.failed) == (30, 0)
    assert sorted(body["n"] for body in aws.drain(aws_endpoint, url)) == list(range(30))
    assert aws.queue_depth(aws_endpoint, dead_url) == 5
