"""The stream configs in config/ run as written against real servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e import kafka_helpers as kafka
from tests.e2e import redis_helpers as rd
from tests.support import REPO, DaemonProcess, wait_for

pytestmark = pytest.mark.e2e


def workdir(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(REPO / "examples")
    return tmp_path


def test_redis_streams_example(tmp_path: Path, redis_url: str) -> None:
    """config/redis-streams.yaml delivers entries to the example handler and sends the
    ones it reports failed to the failure stream."""
    base, _, _ = redis_url.rpartition("/")
    url = f"{base}/7"
    client = rd.client(url)
    client.flushdb()
    daemon = DaemonProcess(REPO / "config" / "redis-streams.yaml", workdir(tmp_path), env={"REDIS_URL": url}).start()
    try:
        daemon.wait_ready()
        rd.add(url, "orders", [{"n": 1}, {"n": 2, "fail": True}])
        wait_for(lambda: '"n": 1' in daemon.stdout, what="the handler's output")
        failed = wait_for(lambda: client.xrange("orders-failed"), timeout=40, what="the failure stream")
        document = json.loads(failed[0][1][b"failure"])
        assert rd.redis_bodies(document["payload"]) == [{"n": 2, "fail": True}]
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        client.flushdb()
        client.close()


def test_kafka_example(tmp_path: Path, kafka_bootstrap: str) -> None:
    """config/kafka.yaml delivers records to the example handler and produces the ones it
    reports failed to orders-failed, keyed like the original."""
    kafka.create_topic(kafka_bootstrap, "orders", 1)
    kafka.create_topic(kafka_bootstrap, "orders-failed", 1)
    daemon = DaemonProcess(REPO / "config" / "kafka.yaml", workdir(tmp_path), env={"KAFKA_BOOTSTRAP": kafka_bootstrap}).start()
    try:
        daemon.wait_ready()
        kafka.produce(kafka_bootstrap, "orders", [(0, {"n": 1}), (0, {"n": 2, "fail": True})])
        wait_for(lambda: '"n": 1' in daemon.stdout, what="the handler's output")
        [message] = kafka.read_all(kafka_bootstrap, "orders-failed", 1, timeout=60)
        assert message.key == b"2"
        document = json.loads(message.value)
        assert kafka.kafka_bodies(document["payload"]) == [{"n": 2, "fail": True}]
        assert daemon.stop() == 0
    finally:
        daemon.kill()
