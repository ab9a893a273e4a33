"""lambda-bridge run against a real Redis server, end to end, with Redis Streams."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.e2e import redis_helpers as rd
from tests.e2e.streams import (
    calls,
    delivered,
    failed_numbers,
    successes_by_partition,
    write_handler,
)
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e


class RedisWorkspace:
    def __init__(self, root: Path, url: str, streams: int = 3) -> None:
        self.root = root
        self.url = url
        self.streams = [rd.unique("orders") for _ in range(streams)]
        self.group = rd.unique("group")
        self.record_file = root / "calls.jsonl"
        self.failures = root / "failed" / "orders.jsonl"
        write_handler(root)
        self.daemons: list[DaemonProcess] = []

    def config(self, mapping: str = "", name: str = "bridge.yaml", state: str = "state") -> Path:
        path = self.root / name
        path.write_text(
            f"""\
state_dir: ./{state}
drain_timeout_seconds: 10
functions:
  recorder: {{invoker: python, handler: stream_handler.py:handler, timeout: 10}}
destinations:
  failed: {{type: file, path: ./failed}}
mappings:
  - name: orders
    function: recorder
    source:
      type: redis-streams
      url: {self.url}
      streams: [{", ".join(self.streams)}]
      group: {self.group}
      starting_position: TRIM_HORIZON
      claim_idle_after_seconds: 1
      lease_ttl_seconds: 2
      block_seconds: 0.2
    batch_size: 10
    maximum_batching_window_in_seconds: 0.2
    destination_config: {{on_failure: {{destination: failed}}}}
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
{mapping}
"""
        )
        return path

    def daemon(self, config: Path, **env: str) -> DaemonProcess:
        daemon = DaemonProcess(
            config, self.root, env={"RECORD_TO": str(self.record_file), **env}
        ).start()
        self.daemons.append(daemon)
        return daemon


@pytest.fixture
def space(tmp_path: Path, redis_url: str) -> Iterator[RedisWorkspace]:
    workspace = RedisWorkspace(tmp_path, redis_url)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def assert_in_order(space: RedisWorkspace) -> None:
    for stream, ids in successes_by_partition(space.record_file).items():
        assert ids == sorted(ids), f"{stream} went backwards"
        assert len(ids) == len({tuple(entry) for entry in ids}), (
            f"{stream} delivered an entry twice"
        )


def test_entries_arrive_in_order_per_stream_and_are_acknowledged(space: RedisWorkspace) -> None:
    """Each stream's entries reach the function in id order, as Records of the documented
    shape, and nothing is left pending in the group afterwards."""
    daemon = space.daemon(space.config()).wait_ready()
    rd.spread(space.url, space.streams, 90)
    wait_for(lambda: delivered(space.record_file) == set(range(90)), what="all 90 entries")
    assert_in_order(space)
    wait_for(
        lambda: all(rd.pending(space.url, stream, space.group) == 0 for stream in space.streams),
        what="all acknowledged",
    )
    assert daemon.stop() == 0


def test_random_partial_failures_lose_nothing_and_never_go_backwards(space: RedisWorkspace) -> None:
    """Random per-record failures reported as batchItemFailures: every entry is delivered
    or in the failure destination, per stream never going backwards."""
    config = space.config(
        mapping="    function_response_types: [ReportBatchItemFailures]\n    maximum_retry_attempts: 3\n"
    )
    daemon = space.daemon(config, FAIL_RATE="0.15").wait_ready()
    rd.spread(space.url, space.streams, 120)

    def accounted() -> bool:
        return delivered(space.record_file) | failed_numbers(
            space.failures, rd.redis_bodies
        ) == set(range(120))

    wait_for(accounted, timeout=60, what="every entry delivered or discarded")
    assert_in_order(space)
    assert delivered(space.record_file).isdisjoint(failed_numbers(space.failures, rd.redis_bodies))
    assert daemon.stop() == 0


def test_bisect_isolates_one_poison_entry(space: RedisWorkspace) -> None:
    """With bisect on, a poison entry ends in the destination alone."""
    daemon = space.daemon(
        space.config(
            mapping="    bisect_batch_on_function_error: true\n    maximum_retry_attempts: 1\n"
        )
    ).wait_ready()
    rd.add(space.url, space.streams[0], [{"n": n, "poison": n == 7} for n in range(20)])
    wait_for(lambda: delivered(space.record_file) == set(range(20)) - {7}, what="good entries")
    [failure] = wait_for(lambda: read_jsonl(space.failures), what="failure record")
    assert rd.redis_bodies(failure["payload"]) == [{"n": 7, "poison": True}]
    assert failure["RedisStreamsBatchInfo"]["batchSize"] == 1
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert_in_order(space)
    assert daemon.stop() == 0


def test_old_entries_expire_to_the_destination(space: RedisWorkspace) -> None:
    """Entries whose id says they arrived more than maximum_record_age_in_seconds ago go to
    the destination with RecordAgeExceeded; fresh ones are delivered."""
    daemon = space.daemon(
        space.config(mapping="    maximum_record_age_in_seconds: 60\n")
    ).wait_ready()
    rd.add(space.url, space.streams[0], [{"n": 0}, {"n": 1}], ids=["1000-0", "1000-1"])
    rd.add(space.url, space.streams[0], [{"n": 2}, {"n": 3}])
    wait_for(lambda: delivered(space.record_file) == {2, 3}, what="fresh entries")
    failures = wait_for(lambda: read_jsonl(space.failures), what="age failure")
    assert failed_numbers(space.failures, rd.redis_bodies) == {0, 1}
    assert all(
        failure["requestContext"]["condition"] == "RecordAgeExceeded" for failure in failures
    )
    assert daemon.stop() == 0


def test_kill_9_mid_run_then_restart_loses_nothing(space: RedisWorkspace) -> None:
    """Entries in flight when the daemon is killed are delivered after its restart."""
    config = space.config()
    daemon = space.daemon(config).wait_ready()
    rd.spread(space.url, space.streams, 60, slow=0.05)
    wait_for(lambda: len(calls(space.record_file)) >= 10, what="some progress")
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.wait()
    second = space.daemon(config).wait_ready()
    wait_for(
        lambda: delivered(space.record_file) == set(range(60)),
        timeout=60,
        what="every entry after restart",
    )
    assert_in_order_after_restart(space)
    assert second.stop() == 0


def assert_in_order_after_restart(space: RedisWorkspace) -> None:
    """After a crash entries may come twice, but each stream's first deliveries are in order."""
    for stream, ids in successes_by_partition(space.record_file).items():
        first_seen: list[Any] = []
        for entry in ids:
            if entry not in first_seen:
                first_seen.append(entry)
        assert first_seen == sorted(first_seen), f"{stream} went backwards"


def test_two_instances_split_the_streams_and_take_over(space: RedisWorkspace) -> None:
    """Two daemons on one group share the streams (each stream read by one at a time);
    killing one, the other takes its streams over and delivers what it left pending."""
    workspace = space
    workspace.streams += [rd.unique("orders") for _ in range(3)]
    first = workspace.daemon(workspace.config(name="a.yaml", state="state-a")).wait_ready()
    second = workspace.daemon(workspace.config(name="b.yaml", state="state-b")).wait_ready()
    rd.spread(workspace.url, workspace.streams, 120)
    wait_for(
        lambda: delivered(workspace.record_file) == set(range(120)), timeout=40, what="every entry"
    )
    by_stream: dict[str, set[str]] = {}
    for row in calls(workspace.record_file):
        by_stream.setdefault(row["partition"], set()).add(row["request"])
    assert len({request for requests in by_stream.values() for request in requests}) >= 2
    assert second.process is not None
    rd.spread(workspace.url, workspace.streams, 60, start=1000, slow=0.05)
    wait_for(
        lambda: len(delivered(workspace.record_file) & set(range(1000, 1060))) >= 5,
        what="second wave started",
    )
    os.kill(second.process.pid, signal.SIGKILL)
    second.wait()
    wait_for(
        lambda: set(range(1000, 1060)) <= delivered(workspace.record_file),
        timeout=60,
        what="the survivor delivers everything",
    )
    assert first.stop() == 0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[services.ServerProcess]:
    server = services.redis_server(tmp_path / "redis", persistent=True)
    try:
        yield server
    finally:
        server.stop()


def test_broker_restart_mid_run_loses_nothing(
    tmp_path: Path, own_redis: services.ServerProcess
) -> None:
    """Redis restarts (with its data on disk) while the daemon runs: the mapping reports
    the failure, reconnects with backoff and delivers everything, written before and
    after the restart."""
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    space = RedisWorkspace(tmp_path, url, streams=2)
    daemon = space.daemon(space.config()).wait_ready()
    try:
        rd.spread(url, space.streams, 20)
        wait_for(lambda: set(range(20)) <= delivered(space.record_file), what="before the restart")
        own_redis.stop()
        daemon.wait_for_log("mapping.source_failed")
        own_redis.start()
        rd.spread(url, space.streams, 20, start=20)
        wait_for(
            lambda: set(range(40)) <= delivered(space.record_file),
            timeout=60,
            what="after the restart",
        )
        assert daemon.events("mapping.reconnecting")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
