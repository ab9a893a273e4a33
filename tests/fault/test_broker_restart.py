"""The broker dies (SIGKILL) mid-run and comes back on the same port with its data: the
daemon keeps running, says in `/readyz` which mapping is broken and why, recovers by
itself once the broker is back, and loses nothing.

Redis runs with AOF on and `appendfsync always`, so a killed server comes back with
every acknowledged write. Tansu keeps its data in S3 (`--storage-engine s3://bucket/`)
on a moto server the test starts, so a killed broker comes back with its topics,
records and committed offsets, like a Kafka broker with its log on disk.

The producer keeps trying while the broker is down; what it could not write then is
written once the broker is back (a write whose answer was lost may be written twice,
which is harmless: records are checked by id).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests import services
from tests.fault.conftest import FaultRun
from tests.fault.handlers import RECORDING_HANDLER, install
from tests.fault.harness import (
    Admin,
    Producer,
    Workspace,
    settled_while_running,
    wait_until_delivered,
)
from tests.fault.ledger import DeliveryLog, missing
from tests.fault.sources import FaultSource, KafkaSource, RedisStreamsSource

pytestmark = [pytest.mark.fault, pytest.mark.e2e]

MAPPING = "fault"
OUTAGES = 1
OUTAGE_SECONDS = (3.0, 8.0)
RATE = 40
# The mapping must say it is broken within this long of the broker's death (Kafka's
# reachability check runs every 2 s; a Redis read fails at once).
NOTICE_SECONDS = 20.0
# And be ready again within this long of the broker's return (reconnect backoff grows
# to a few seconds over an outage; a Kafka consumer also has to rejoin its group).
RECOVERY_SECONDS = 60.0
DRAIN_TIMEOUT_SECONDS = 120.0

CONFIG = """\
state_dir: ./state
functions:
  recorder: {{invoker: python, handler: '{handler}', timeout: 3}}
mappings:
  - name: fault
    function: recorder
    batch_size: 10
{source}"""


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[services.ServerProcess]:
    server = services.redis_server(tmp_path / "redis", persistent=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tansu_on_s3(tmp_path: Path) -> Iterator[services.ServerProcess]:
    """Tansu with its storage in a bucket of a moto server of this test's own."""
    moto = services.moto_server(tmp_path / "moto")
    endpoint = f"http://127.0.0.1:{moto.port}"
    credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket="tansu")
        broker = services.tansu_server(
            tmp_path / "tansu",
            storage_engine="s3://tansu/",
            env={**credentials, "AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true"},
        )
        try:
            yield broker
        finally:
            broker.stop()
    finally:
        moto.stop()


def mapping_entry(body: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        entry for entry in body.get("mappings", []) if entry.get("name") == MAPPING
    ]
    assert len(found) == 1, f"/readyz does not list mapping {MAPPING!r} once: {body}"
    return found[0]


class Outages:
    """Kill the broker, watch `/readyz`, bring the broker back, wait for recovery."""

    def __init__(
        self,
        root: Path,
        source: FaultSource,
        broker: services.ServerProcess,
        fault: FaultRun,
    ) -> None:
        self.space = Workspace(root)
        self.source = source
        self.broker = broker
        self.address = f"127.0.0.1:{broker.port}"
        self.fault = fault
        self.rng = fault.rng("outages")
        handler = install(root, RECORDING_HANDLER)
        self.config = self.space.write_config(
            CONFIG.format(handler=handler, source=source.source_yaml())
        )
        self.admin = Admin(root / "state")
        self.log = DeliveryLog(self.space.log_file)
        self.producer = Producer(source, fault.rng("producer"), RATE)
        self.problems: list[str] = []
        self.figures: dict[str, Any] = {"outages": [], "source": source.kind}

    def ready(self) -> bool:
        return self.admin.readiness()[0] == 200

    def wait(self, condition: Any, timeout: float) -> float | None:
        """Seconds until `condition()` held, None if it did not within `timeout`; the
        daemon must stay up meanwhile."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.daemon.process is not None and self.daemon.process.poll() is not None:
                raise AssertionError(
                    f"FAULT SEED={self.fault.seed}: the daemon exited "
                    f"({self.daemon.process.returncode}) during the outage; "
                    f"replay: {self.fault.replay}"
                )
            if condition():
                return time.monotonic() - began
            time.sleep(0.1)
        return None

    def progress(self, what: str) -> None:
        delivered = len(self.log.refresh())
        if self.wait(lambda: len(self.log.refresh()) > delivered + 10, 60) is None:
            self.problems.append(f"nothing delivered {what} within 60 s")

    def one_outage(self, number: int) -> None:
        self.progress(f"before outage {number}")
        self.broker.kill()
        down = self.rng.uniform(*OUTAGE_SECONDS)
        noticed = self.wait(lambda: not self.ready(), NOTICE_SECONDS)
        if noticed is None:
            self.problems.append(
                f"outage {number}: /readyz stayed 200 for {NOTICE_SECONDS} s after the broker died"
            )
        else:
            status, body = self.admin.readiness()
            entry = mapping_entry(body)
            if (
                status != 503
                or entry["State"] == "Enabled"
                or self.address not in entry["StateReason"]
            ):
                self.problems.append(
                    f"outage {number}: /readyz answered {status} {entry}; wanted 503 with the "
                    f"mapping not Enabled and a StateReason naming {self.address}"
                )
            # While the broker is down the mapping must not claim to be ready again.
            flapped = self.wait(self.ready, max(down - noticed, 0.5))
            if flapped is not None:
                self.problems.append(f"outage {number}: /readyz said 200 with the broker down")
        self.broker.start()
        recovered = self.wait(self.ready, RECOVERY_SECONDS)
        if recovered is None:
            _, body = self.admin.readiness()
            self.problems.append(
                f"outage {number}: not ready {RECOVERY_SECONDS:.0f} s after the broker came "
                f"back: {mapping_entry(body)}"
            )
        self.figures["outages"].append(
            {
                "down_seconds": round(down, 2),
                "noticed_after": None if noticed is None else round(noticed, 2),
                "recovered_after": None if recovered is None else round(recovered, 2),
            }
        )

    def run(self) -> None:
        began = time.monotonic()
        self.daemon = self.space.start(self.config)
        produced: dict[str, tuple[str, int]] = {}
        try:
            if self.wait(self.ready, 60) is None:
                raise AssertionError(f"not ready within 60 s: {self.admin.readiness()}")
            self.producer.start()
            for number in range(self.fault.scaled(OUTAGES)):
                self.one_outage(number)
            self.progress("after the last outage")
            produced = self.producer.stop()
            problem = wait_until_delivered(
                produced, self.log.ids, DRAIN_TIMEOUT_SECONDS, self.daemon
            )
            if problem is not None:
                self.problems.append(problem)
            else:
                self.problems += settled_while_running(
                    self.source, self.space.root, self.log.refresh()
                )
                if (code := self.daemon.stop()) != 0:
                    self.problems.append(f"the daemon exited {code} on SIGTERM")
        finally:
            if not produced:
                produced = self.producer.stop()
            self.space.close()
        self.problems += missing(produced, self.log)
        self.figures.update(
            records=len(produced),
            deliveries=len(self.log.deliveries),
            failed_sends=self.producer.failed_sends,
            seconds=round(time.monotonic() - began, 1),
        )
        self.fault.report(self.figures)
        self.fault.verdict(self.problems)


def test_redis_killed_and_restarted_with_its_data_loses_nothing(
    tmp_path: Path, persistent_redis: services.ServerProcess, fault: FaultRun
) -> None:
    """Redis (AOF, appendfsync always) killed with SIGKILL and restarted on the same port
    with the same data folder: the daemon keeps running, /readyz answers 503 naming the
    mapping with a reason naming the server, then 200 once it is back; every record
    produced before, during (written once the server is back) and after is delivered and
    then acknowledged while the daemon runs."""
    url = f"redis://127.0.0.1:{persistent_redis.port}/0"
    Outages(tmp_path, RedisStreamsSource(url, streams=3), persistent_redis, fault).run()


def test_kafka_broker_killed_and_restarted_with_its_data_loses_nothing(
    tmp_path: Path, tansu_on_s3: services.ServerProcess, fault: FaultRun
) -> None:
    """Tansu (storage in S3 on moto) killed with SIGKILL and restarted on the same port:
    the daemon keeps running, /readyz answers 503 naming the mapping with a reason naming
    the broker, then 200 once it is back (the consumer rejoins its group and resumes from
    the committed offsets); every record produced before, during and after is delivered
    and its offset committed while the daemon runs."""
    bootstrap = f"127.0.0.1:{tansu_on_s3.port}"
    Outages(tmp_path, KafkaSource(bootstrap, partitions=3), tansu_on_s3, fault).run()
