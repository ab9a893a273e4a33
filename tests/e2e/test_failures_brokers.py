"""`lambda-bridge failures redrive` for failure records kept in Redis Streams and Kafka:
the failed entries and messages are re-published to the stream or topic they came from,
marked `lambda-bridge-redriven: <failure id>`, and the running daemon delivers them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import kafka_helpers as kafka
from tests.e2e import redis_helpers as redis
from tests.e2e.redrive_helpers import RedriveSpace, listed_ids
from tests.support import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def space(tmp_path: Path) -> Iterator[RedriveSpace]:
    workspace = RedriveSpace(tmp_path)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def write_config(space: RedriveSpace, destination: str, source: str, on_failure: str) -> Path:
    path = space.root / "bridge.yaml"
    path.write_text(
        f"""\
state_dir: ./state
drain_timeout_seconds: 10
functions:
  steered: {{invoker: python, handler: "steered.py:handler", timeout: 10}}
destinations:
  failed: {destination}
mappings:
  - name: events
    function: steered
    source: {source}
    batch_size: 2
    maximum_retry_attempts: 0
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
    destination_config: {{on_failure: {{destination: {on_failure}}}}}
"""
    )
    return path


def redriven_by_mark(space: RedriveSpace, marks: Any) -> list[tuple[str, Any]]:
    return [pair for event in space.events() for pair in marks(event)]


def test_redis_failures_are_re_published_to_their_stream(
    space: RedriveSpace, redis_url: str
) -> None:
    stream, failures = redis.unique("orders"), redis.unique("failed")
    config = write_config(
        space,
        f'{{type: redis-stream, url: "{redis_url}", stream: {failures}}}',
        f'{{type: redis-streams, url: "{redis_url}", streams: [{stream}], '
        "starting_position: TRIM_HORIZON, block_seconds: 0.2}",
        "failed",
    )
    space.set("fail", True)
    daemon = space.daemon(config).wait_ready()
    redis.add(redis_url, stream, [{"n": n} for n in range(3)])
    wait_for(
        lambda: (
            sum(
                json.loads(fields[b"failure"])["RedisStreamsBatchInfo"]["batchSize"]
                for _, fields in redis.client(redis_url).xrange(failures)
            )
            == 3
        ),
        timeout=30,
        what="failure records of the three entries",
    )
    space.set("fail", False)
    space.forget_calls()
    ids = listed_ids(space.run("list", "events", config=config).out)
    assert ids and all(i.startswith("events/") for i in ids)

    redriven = space.run("redrive", "events", "--all", config=config)
    assert redriven.code == 0, redriven.err

    def marks(event: dict[str, Any]) -> list[tuple[str, Any]]:
        return [
            ("events/" + r["redis"]["fields"]["lambda-bridge-redriven"], r["redis"]["fields"])
            for r in event["Records"]
        ]

    found = wait_for(
        lambda: len(got := redriven_by_mark(space, marks)) == 3 and got,
        timeout=30,
        what="the re-published entries",
    )
    assert sorted(json.loads(fields["body"])["n"] for _, fields in found) == [0, 1, 2]
    assert {mark for mark, _ in found} == set(ids)
    again = space.run("redrive", "events", "--all", config=config)
    assert f"0 redriven, 0 failed again, {len(ids)} already redriven" in again.out
    assert daemon.stop() == 0


def test_kafka_failures_are_re_produced_to_their_topic(
    space: RedriveSpace, kafka_bootstrap: str
) -> None:
    topic, failures = kafka.unique("orders"), kafka.unique("failed")
    kafka.create_topic(kafka_bootstrap, topic, 1)
    kafka.create_topic(kafka_bootstrap, failures, 1)
    config = write_config(
        space,
        "{type: file, path: ./unused}",
        f"{{type: kafka, bootstrap_servers: {kafka_bootstrap}, topics: [{topic}], "
        f"consumer_group_id: {kafka.unique('group')}, starting_position: TRIM_HORIZON}}",
        f"kafka://{failures}",
    )
    space.set("fail", True)
    daemon = space.daemon(config).wait_ready()
    kafka.produce(kafka_bootstrap, topic, [(0, {"n": n}) for n in range(3)])

    def listed() -> int:
        listing = space.run("list", "events", config=config)
        assert listing.code == 0, listing.err
        return len(listed_ids(listing.out))

    wait_for(
        lambda: listed() == 3,
        timeout=60,
        what="one failure message per record",
    )
    space.set("fail", False)
    space.forget_calls()
    ids = listed_ids(space.run("list", "events", config=config).out)
    shown = space.run("show", ids[0], config=config)
    assert '"RetriesExhausted"' in shown.out and '"recordInfo"' in shown.out

    redriven = space.run("redrive", "events", "--all", config=config)
    assert redriven.code == 0, redriven.err

    def marks(event: dict[str, Any]) -> list[tuple[str, Any]]:
        found = []
        for records in event["records"].values():
            for record in records:
                headers = {k: bytes(v) for h in record["headers"] for k, v in h.items()}
                mark = headers.get("lambda-bridge-redriven")
                if mark is not None:
                    found.append(("events/" + mark.decode(), record))
        return found

    found = wait_for(
        lambda: len(got := redriven_by_mark(space, marks)) == 3 and got,
        timeout=60,
        what="the re-produced messages",
    )
    assert {mark for mark, _ in found} == set(ids)
    values = sorted(json.loads(base64.b64decode(r["value"]))["n"] for _, r in found)
    assert values == [0, 1, 2]
    assert sorted(base64.b64decode(r["key"]) for _, r in found) == [b"0", b"1", b"2"]
    again = space.run("redrive", "events", "--all", config=config)
    assert "0 redriven, 0 failed again, 3 already redriven" in again.out
    assert daemon.stop() == 0


def failure_document(n: int, payload: dict[str, Any]) -> dict[str, Any]:
    """A failure record as another writer may leave it: `payload` is given by the test."""
    return {
        "n": n,
        "timestamp": f"2026-01-01T00:00:0{n}Z",
        "requestContext": {"condition": "RetryAttemptsExhausted"},
        "payload": payload,
    }


def test_a_malformed_redis_failure_record_fails_alone(space: RedriveSpace, redis_url: str) -> None:
    """An entry that lacks `binaryFields` is marked failed with the reason (not left in
    flight by a traceback); the well-formed record after it is re-published."""
    stream, failures = redis.unique("orders"), redis.unique("failed")
    config = write_config(
        space,
        f'{{type: redis-stream, url: "{redis_url}", stream: {failures}}}',
        f'{{type: redis-streams, url: "{redis_url}", streams: [{stream}], starting_position: LATEST}}',
        "failed",
    )
    good = {"stream": stream, "fields": {"body": '{"n": 1}'}, "binaryFields": {}}
    bad = {"stream": stream, "fields": {"body": '{"n": 0}'}}
    connection = redis.client(redis_url)
    for n, entry in enumerate([bad, good]):
        document = failure_document(n, {"Records": [{"redis": entry}]})
        connection.xadd(failures, {"mapping": "events", "failure": json.dumps(document)})
    listing = space.run("list", "events", config=config)
    ids = listed_ids(listing.out)
    assert len(ids) == 2, listing

    redriven = space.run("redrive", "events", "--all", config=config)
    assert redriven.code == 1, redriven
    assert "Traceback" not in redriven.err
    assert f"{ids[0]}: failed again (" in redriven.out and "'binaryFields'" in redriven.out
    assert f"{ids[1]}: redriven" in redriven.out
    assert "1 redriven, 1 failed again, 0 already redriven" in redriven.out
    entries = connection.xrange(stream)
    assert [json.loads(fields[b"body"])["n"] for _, fields in entries] == [1]
    after = space.run("list", "events", config=config).out
    assert "failed again (redriven once)" in after and "in flight" not in after


def test_a_malformed_kafka_failure_record_fails_alone(
    space: RedriveSpace, kafka_bootstrap: str
) -> None:
    """A failure message whose record has no partition is marked failed with the reason;
    the well-formed one after it is produced again."""
    topic, failures = kafka.unique("orders"), kafka.unique("failed")
    kafka.create_topic(kafka_bootstrap, topic, 1)
    kafka.create_topic(kafka_bootstrap, failures, 1)
    config = write_config(
        space,
        "{type: file, path: ./unused}",
        f"{{type: kafka, bootstrap_servers: {kafka_bootstrap}, topics: [{topic}], "
        f"consumer_group_id: {kafka.unique('group')}, starting_position: LATEST}}",
        f"kafka://{failures}",
    )
    value = base64.b64encode(b'{"n": 1}').decode()
    good = {"topic": topic, "partition": 0, "value": value, "headers": []}
    bad = {"topic": topic, "value": value, "headers": []}
    for n, record in enumerate([bad, good]):
        # One produce each, as the daemon writes them: Tansu's end offset of a topic
        # written in one batch of two messages is 1.
        document = failure_document(n, {"records": {f"{topic}-0": [record]}})
        kafka.produce(kafka_bootstrap, failures, [(0, document)])
    # Records of no known topic: not known to be the mapping's, so not listed.
    kafka.produce(kafka_bootstrap, failures, [(0, failure_document(2, {"records": ["x"]}))])
    listing = space.run("list", "events", config=config)
    ids = listed_ids(listing.out)
    assert len(ids) == 2, listing

    redriven = space.run("redrive", "events", "--all", config=config)
    assert redriven.code == 1, redriven
    assert "Traceback" not in redriven.err
    assert f"{ids[0]}: failed again (" in redriven.out and "'partition'" in redriven.out
    assert "1 redriven, 1 failed again, 0 already redriven" in redriven.out
    assert [json.loads(m.value)["n"] for m in kafka.read_all(kafka_bootstrap, topic, 1)] == [1]
    after = space.run("list", "events", config=config).out
    assert "failed again (redriven once)" in after and "in flight" not in after


def test_a_redis_failure_entry_that_is_not_an_object_is_bad_input(
    space: RedriveSpace, redis_url: str
) -> None:
    failures = redis.unique("failed")
    config = write_config(
        space,
        f'{{type: redis-stream, url: "{redis_url}", stream: {failures}}}',
        "{type: files, path: ./inbox}",
        "failed",
    )
    redis.client(redis_url).xadd(failures, {"mapping": "events", "failure": "[1, 2]"})
    listing = space.run("list", "events", config=config)
    assert listing.code == 2, listing
    assert listing.err.startswith("error: stream ") and "is not a failure record" in listing.err
    assert listing.err.count("\n") == 1
