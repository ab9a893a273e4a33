"""A Kafka broker that goes away and comes back, seen through lambda-bridge run.

Tansu keeps its data in memory, so a real restart would lose the topic; instead the
daemon reaches the broker through a proxy the test can cut, which to the client is the
same as the broker going away.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.e2e import kafka_helpers as kafka
from tests.e2e.streams import delivered, write_handler
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def proxied_broker(tmp_path: Path) -> Iterator[tuple[str, services.FlakyProxy]]:
    proxy_port = services.free_port()
    server = services.tansu_server(tmp_path / "broker", advertised_port=proxy_port)
    proxy = services.FlakyProxy(server.port, proxy_port).start()
    try:
        yield f"127.0.0.1:{proxy_port}", proxy
    finally:
        proxy.close()
        server.stop()


def config(root: Path, flaky: str, steady: str, flaky_topic: str, steady_topic: str) -> Path:
    path = root / "bridge.yaml"
    source = "starting_position: TRIM_HORIZON, heartbeat_interval_seconds: 0.2, session_timeout_seconds: 6"
    path.write_text(
        f"""\
state_dir: ./state
functions:
  recorder: {{invoker: python, handler: stream_handler.py:handler}}
mappings:
  - name: flaky
    function: recorder
    source: {{type: kafka, bootstrap_servers: '{flaky}', topics: [{flaky_topic}], {source}}}
  - name: steady
    function: recorder
    source: {{type: kafka, bootstrap_servers: '{steady}', topics: [{steady_topic}], {source}}}
"""
    )
    return path


def test_broker_lost_mid_run_and_back_loses_nothing(
    tmp_path: Path, kafka_bootstrap: str, proxied_broker: tuple[str, services.FlakyProxy]
) -> None:
    """When the broker goes away the mapping says so and keeps trying; the other mapping
    goes on meanwhile; when the broker is back, records resume with none lost."""
    flaky_bootstrap, proxy = proxied_broker
    flaky_topic, steady_topic = kafka.unique("flaky"), kafka.unique("steady")
    kafka.create_topic(flaky_bootstrap, flaky_topic, 1)
    kafka.create_topic(kafka_bootstrap, steady_topic, 1)
    write_handler(tmp_path)
    record_file = tmp_path / "calls.jsonl"
    daemon = DaemonProcess(
        config(tmp_path, flaky_bootstrap, kafka_bootstrap, flaky_topic, steady_topic),
        tmp_path,
        env={"RECORD_TO": str(record_file)},
    ).start()
    try:
        daemon.wait_ready(mappings=2)
        kafka.produce(flaky_bootstrap, flaky_topic, kafka.numbered(10, 1))
        wait_for(lambda: set(range(10)) <= delivered(record_file), what="records before the outage")
        proxy.cut()
        daemon.wait_for_log("kafka.unreachable", mapping="flaky")
        kafka.produce(kafka_bootstrap, steady_topic, kafka.numbered(10, 1, start=1000))
        wait_for(
            lambda: set(range(1000, 1010)) <= delivered(record_file),
            what="the other mapping during the outage",
        )
        proxy.restore()
        daemon.wait_for_log("kafka.reachable", mapping="flaky")
        kafka.produce(flaky_bootstrap, flaky_topic, kafka.numbered(10, 1, start=10))
        wait_for(
            lambda: set(range(20)) <= delivered(record_file),
            timeout=60,
            what="records after the outage",
        )
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_broker_unreachable_at_start(
    tmp_path: Path, proxied_broker: tuple[str, services.FlakyProxy]
) -> None:
    """A broker that is down when the daemon starts: the mapping retries with backoff and
    starts consuming once the broker is reachable."""
    flaky_bootstrap, proxy = proxied_broker
    topic = kafka.unique("late")
    kafka.create_topic(flaky_bootstrap, topic, 1)
    kafka.produce(flaky_bootstrap, topic, kafka.numbered(5, 1))
    proxy.cut()
    write_handler(tmp_path)
    record_file = tmp_path / "calls.jsonl"
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"state_dir: ./state\nfunctions:\n  recorder: {{invoker: python, handler: stream_handler.py:handler}}\n"
        f"mappings:\n  - name: late\n    function: recorder\n"
        f"    source: {{type: kafka, bootstrap_servers: '{flaky_bootstrap}', topics: [{topic}], starting_position: TRIM_HORIZON, heartbeat_interval_seconds: 0.2}}\n"
    )
    daemon = DaemonProcess(path, tmp_path, env={"RECORD_TO": str(record_file)}).start()
    try:
        daemon.wait_for_log("mapping.reconnecting", count=2)
        assert daemon.events("mapping.source_failed")
        proxy.restore()
        daemon.wait_ready()
        wait_for(
            lambda: delivered(record_file) == set(range(5)), what="records once the broker is up"
        )
        assert daemon.stop() == 0
    finally:
        daemon.kill()
