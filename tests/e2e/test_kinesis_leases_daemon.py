"""What the admin endpoint says about shard leases, on `lambda-bridge run` daemons sharing
a 4-shard Kinesis stream (moto) through one SQLite checkpoint file: `/status` lists the
shards each daemon holds (`leases_held`), and `/metrics` counts the leases taken and lost
(`lambda_bridge_leases_taken_total`, `lambda_bridge_leases_lost_total`) and gauges those
held (`lambda_bridge_leases_held`), as a lone daemon takes every lease, a second one
steals its share, and the second one stops and hands its leases back; and while the
store cannot be written (another process holds the SQLite file's write lock), the
leases that could not be renewed are shown lost and not held, then taken again."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.exposition import value
from tests.fault.lease_cluster import Cluster
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

MAPPING = "events"


@pytest.fixture
def cluster(tmp_path: Path, aws_endpoint: str) -> Iterator[Cluster]:
    made = Cluster(tmp_path, aws_endpoint, "sqlite", 4)
    yield made
    made.stop()


def leases(daemon: DaemonProcess) -> dict[str, object]:
    """What the daemon's admin endpoint says of the mapping's leases."""
    status, body = daemon.admin("/status")
    assert status == 200
    [entry] = json.loads(body)["mappings"]
    status, metrics = daemon.admin("/metrics")
    assert status == 200
    return {
        "status_held": entry["leases_held"],
        "status_taken": entry["counters"]["leases_taken"],
        "status_lost": entry["counters"]["leases_lost"],
        "taken": value(metrics, "lambda_bridge_leases_taken_total", mapping=MAPPING),
        "lost": value(metrics, "lambda_bridge_leases_lost_total", mapping=MAPPING),
        "held": value(metrics, "lambda_bridge_leases_held", mapping=MAPPING),
    }


def expected(held: set[str], taken: int, lost: int) -> dict[str, object]:
    return {
        "status_held": sorted(held),
        "status_taken": taken,
        "status_lost": lost,
        "taken": float(taken),
        "lost": float(lost),
        "held": float(len(held)),
    }


def settles_at(daemon: DaemonProcess, wanted: dict[str, object]) -> bool:
    return leases(daemon) == wanted


def test_status_and_metrics_follow_the_leases(cluster: Cluster) -> None:
    first = cluster.start("d1").wait_ready()
    wait_for(lambda: len(cluster.held("d1")) == 4, timeout=20, what="d1 holding every lease")
    shards = cluster.held("d1")
    wait_for(lambda: settles_at(first, expected(shards, 4, 0)), what="d1's four leases shown")

    second = cluster.start("d2").wait_ready()
    wait_for(
        lambda: len(cluster.held("d1")) == 2 and len(cluster.held("d2")) == 2,
        timeout=30,
        what="two leases each (one steal per ttl)",
    )
    mine, theirs = cluster.held("d1"), cluster.held("d2")
    assert mine | theirs == shards
    wait_for(lambda: settles_at(first, expected(mine, 4, 2)), what="d1 losing two leases")
    wait_for(lambda: settles_at(second, expected(theirs, 2, 0)), what="d2 taking two")

    # A daemon that stops releases its leases, and the other takes them at once.
    assert second.stop() == 0
    wait_for(
        lambda: settles_at(first, expected(shards, 6, 2)),
        timeout=20,
        what="d1 taking the released leases back",
    )


def test_leases_that_cannot_be_renewed_are_shown_lost(cluster: Cluster) -> None:
    """A daemon that cannot renew stops reading its shards before the ttl is out; /status
    and /metrics say so then, not only at its next successful renewal."""
    first = cluster.start("d1").wait_ready()
    wait_for(lambda: len(cluster.held("d1")) == 4, timeout=20, what="d1 holding every lease")
    shards = cluster.held("d1")
    wait_for(lambda: settles_at(first, expected(shards, 4, 0)), what="d1's four leases shown")

    holder = sqlite3.connect(cluster.root / "shared.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        # A renewal waits out SQLite's busy timeout (10 s), then fails.
        wait_for(
            lambda: settles_at(first, expected(set(), 4, 4)),
            timeout=40,
            what="the unrenewable leases shown lost",
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_for(
        lambda: settles_at(first, expected(shards, 8, 4)),
        timeout=40,
        what="the leases taken again",
    )
