"""lambda-bridge run against SQS (moto in server mode), end to end: partial batch
responses, redelivery after the visibility timeout, the queue's redrive policy, FIFO
group blocking, and a disabled mapping."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.e2e import aws_helpers as aws
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e


class SqsWorkspace:
    def __init__(self, root: Path, endpoint: str) -> None:
        self.root = root
        self.endpoint = endpoint
        self.record_file = root / "calls.jsonl"
        aws.write_handler(root)
        self.daemons: list[DaemonProcess] = []

    def config(self, queue_url: str, mapping: str = "", batch_size: int = 10) -> Path:
        path = self.root / "bridge.yaml"
        path.write_text(
            f"""\
state_dir: ./state
drain_timeout_seconds: 10
functions:
  recorder: {{invoker: python, handler: aws_handler.py:handler, timeout: 2}}
mappings:
  - name: orders
    function: recorder
    source: {{type: sqs, queue_url: "{queue_url}", endpoint_url: "{self.endpoint}", wait_time_seconds: 1}}
    batch_size: {batch_size}
{mapping}"""
        )
        return path

    def daemon(self, config: Path, **env: str) -> DaemonProcess:
        daemon = DaemonProcess(config, self.root, env={"RECORD_TO": str(self.record_file), **env})
        self.daemons.append(daemon.start())
        return daemon


@pytest.fixture
def space(tmp_path: Path, aws_endpoint: str) -> Iterator[SqsWorkspace]:
    workspace = SqsWorkspace(tmp_path, aws_endpoint)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def test_partial_failures_are_redelivered_and_poison_goes_to_the_queues_dead_letter_queue(
    space: SqsWorkspace,
) -> None:
    """ReportBatchItemFailures on a standard queue: successes are deleted at once, a
    message that fails once comes back after the visibility timeout with
    ApproximateReceiveCount 2 and succeeds, and a poison message is moved to the dead-
    letter queue by the queue's redrive policy (esm-reference.md 5.1, 5.2)."""
    dead_url, dead_arn = aws.new_queue(space.endpoint)
    url, _ = aws.new_queue(space.endpoint, visibility=2, dead_letter_arn=dead_arn, max_receives=2)
    bodies = [{"n": n, "fail_times": 1 if n % 10 == 3 else 0} for n in range(40)]
    bodies.append({"n": 40, "poison": True})
    aws.send(space.endpoint, url, bodies)
    config = space.config(url, mapping="    function_response_types: [ReportBatchItemFailures]\n")
    daemon = space.daemon(config).wait_ready()

    wait_for(
        lambda: sorted(aws.succeeded(space.record_file)) == list(range(40)),
        timeout=60,
        what="all good messages",
    )
    wait_for(
        lambda: aws.queue_depth(space.endpoint, url) == 0, timeout=30, what="the queue to empty"
    )
    assert [body["n"] for body in aws.drain(space.endpoint, dead_url)] == [40]

    rows = aws.rows(space.record_file)
    retried = {
        row["n"]: row["count"] for row in rows if row["body"].get("fail_times") and row["ok"]
    }
    assert retried == {3: 2, 13: 2, 23: 2, 33: 2}
    assert [row["count"] for row in rows if row["n"] == 40] == [1, 2]
    assert len(aws.succeeded(space.record_file)) == 40, "a deleted message came back"
    assert daemon.stop() == 0


def test_a_function_error_leaves_the_whole_batch_to_the_queue(space: SqsWorkspace) -> None:
    """Without ReportBatchItemFailures a function error deletes nothing: every message
    of the batch is received again, and succeeds on its second receive."""
    url, _ = aws.new_queue(space.endpoint, visibility=2)
    aws.send(space.endpoint, url, [{"n": n, "fail_times": 1 if n == 0 else 0} for n in range(5)])
    daemon = space.daemon(space.config(url), RAISE_ON_FAILURE="1").wait_ready()

    wait_for(
        lambda: sorted(aws.succeeded(space.record_file)) == list(range(5)),
        timeout=60,
        what="every message",
    )
    wait_for(
        lambda: aws.queue_depth(space.endpoint, url) == 0, timeout=30, what="the queue to empty"
    )
    first_receives = [row for row in aws.rows(space.record_file) if row["count"] == 1]
    batch_with_failure = {row["request"] for row in first_receives if row["n"] == 0}
    redelivered = {row["n"] for row in first_receives if row["request"] in batch_with_failure}
    second = {row["n"] for row in aws.rows(space.record_file) if row["count"] == 2}
    assert redelivered <= second, "a message of the failed batch was deleted"
    assert daemon.stop() == 0


def test_fifo_groups_stay_in_order_and_a_failure_blocks_only_its_group(space: SqsWorkspace) -> None:
    """FIFO: each group's first deliveries come in send order; after a failure in group
    a, no later message of group a is invoked until the failed one is received again,
    while groups b and c finish (esm-reference.md 5.3)."""
    url, _ = aws.new_queue(space.endpoint, fifo=True, visibility=3)
    for group in "abc":
        aws.send(
            space.endpoint,
            url,
            [{"n": n, "fail_times": int(group == "a" and n == 3)} for n in range(8)],
            group=group,
        )
    config = space.config(
        url, mapping="    function_response_types: [ReportBatchItemFailures]\n", batch_size=2
    )
    daemon = space.daemon(config).wait_ready()

    wait_for(
        lambda: len(aws.succeeded(space.record_file)) == 24, timeout=60, what="all 24 messages"
    )
    rows = aws.rows(space.record_file)
    by_group: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row["count"] == 1:
            by_group[row["group"]].append(row["n"])
    assert by_group["b"] == by_group["c"] == list(range(8))
    assert by_group["a"][:4] == [0, 1, 2, 3]
    failure = next(index for index, row in enumerate(rows) if row["group"] == "a" and not row["ok"])
    retry = next(
        index
        for index, row in enumerate(rows)
        if row["group"] == "a" and row["n"] == 3 and row["count"] == 2
    )
    # moto hands redelivered FIFO messages back out of order (testing.md), so only first
    # deliveries are checked: none of group a's later messages went out while it was blocked.
    assert not [
        row["n"]
        for row in rows[failure:retry]
        if row["group"] == "a" and row["count"] == 1 and row["n"] > 3
    ]
    assert sorted(n for n in aws.succeeded(space.record_file)) == sorted(list(range(8)) * 3)
    assert daemon.stop() == 0


def test_a_disabled_mapping_receives_nothing(space: SqsWorkspace) -> None:
    """enabled: false starts the daemon with the mapping idle: no message is received."""
    url, _ = aws.new_queue(space.endpoint)
    aws.send(space.endpoint, url, [{"n": n} for n in range(3)])
    daemon = space.daemon(space.config(url, mapping="    enabled: false\n"))
    daemon.wait_for_log("mapping.disabled")
    sqs = aws.client("sqs", space.endpoint)
    visible = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert visible["Attributes"]["ApproximateNumberOfMessages"] == "3"
    assert not space.record_file.exists()
    assert daemon.stop() == 0


def test_function_timeout_above_the_visibility_timeout_fails_the_mapping_with_the_reason(
    space: SqsWorkspace,
) -> None:
    """As CreateEventSourceMapping refuses it: the mapping fails, naming both timeouts,
    and the daemon keeps running its other mappings."""
    url, _ = aws.new_queue(space.endpoint, visibility=1)
    daemon = space.daemon(space.config(url))
    failed = daemon.wait_for_log("mapping.failed")
    assert "visibility timeout" in failed[0]["error"]
    assert daemon.process is not None and daemon.process.poll() is None
    assert daemon.stop() == 0


def test_a_mapping_on_real_aws_says_so_once_and_an_unreachable_service_is_retried(
    space: SqsWorkspace,
) -> None:
    """Without endpoint_url the mapping talks to real AWS and logs one REAL AWS line
    before its first call. Here that call cannot leave the machine (a made-up region and
    a proxy on a closed port): the mapping retries with backoff and the daemon stays up."""
    closed_port = services.free_port()
    config = space.root / "real.yaml"
    config.write_text(
        """\
state_dir: ./state
functions:
  recorder: {invoker: python, handler: aws_handler.py:handler, timeout: 2}
mappings:
  - name: orders
    function: recorder
    source: {type: sqs, queue_url: "https://sqs.xx-nowhere-1.amazonaws.com/123456789012/orders"}
"""
    )
    env = {
        "HTTPS_PROXY": f"http://127.0.0.1:{closed_port}",
        "HTTP_PROXY": f"http://127.0.0.1:{closed_port}",
    }
    daemon = space.daemon(config, **env)
    [banner] = daemon.wait_for_log("aws.real_endpoint")
    assert banner["level"] == "warning" and banner["region"] == "xx-nowhere-1"
    assert "REAL AWS" in banner["message"]
    daemon.wait_for_log("mapping.reconnecting", count=2, timeout=30)
    assert len(daemon.events("aws.real_endpoint")) >= 1
    assert not daemon.events("mapping.failed")
    assert daemon.stop() == 0


def test_an_endpoint_from_the_environment_is_not_real_aws(space: SqsWorkspace) -> None:
    """AWS_ENDPOINT_URL_SQS (botocore's own variable) points the source at an emulator
    without endpoint_url in the config; the log names that endpoint instead of REAL AWS."""
    url, _ = aws.new_queue(space.endpoint)
    aws.send(space.endpoint, url, [{"n": 1}])
    config = space.config(url)
    config.write_text(config.read_text().replace(f', endpoint_url: "{space.endpoint}"', ""))
    daemon = space.daemon(config, AWS_ENDPOINT_URL_SQS=space.endpoint).wait_ready()
    wait_for(lambda: aws.succeeded(space.record_file) == [1], what="the message")
    assert daemon.events("aws.endpoint", endpoint_url=space.endpoint)
    assert not daemon.events("aws.real_endpoint")
    assert daemon.stop() == 0
