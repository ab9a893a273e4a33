"""Shard leases: what sharing a Kinesis stream between daemons gives, and how long a
crashed daemon's shards wait for the survivor. `lambda-bridge run` daemons on a 4-shard
stream of a private moto server, sharing a checkpoint store (SQLite file, DynamoDB table
in the same moto), with the recording handler of tests/fault/lease_cluster.py (batch
size 25, 20 ms per call).

(a) throughput: records/s handled by 1 daemon and by 2 daemons once their leases are
    balanced (2 shards each) and every shard is read by its holder, from the first
    call's start to the last call's end over a batch of records put while the daemons
    are stopped (SIGSTOP, then SIGCONT); the ratio 2 daemons / 1 daemon. moto is slow (it
    serves every call of both daemons from one Python process), so the figures are
    moto's as much as the bridge's: compare them only with each other.
(b) takeover: with 2 daemons balanced and a producer writing all along, one is killed
    with -9; the time from the kill to the first call of each of its shards by the
    survivor (the lease's ttl, then up to one renewal period, ttl/3, to notice, then a
    poll), over 3 rounds, p50 and max, for `lease_ttl_seconds` 10 (the default) and 3.

    python tests/bench/lease_takeover.py [--records N] [--rounds R] [--stores sqlite,dynamodb]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests import services
from tests.e2e import aws_helpers as aws
from tests.fault.lease_cluster import Cluster, first_call_after
from tests.support import wait_for

SHARDS = 4
PUT_CHUNK = 500
TAKEOVER_TTLS = (10.0, 3.0)


def put(cluster: Cluster, count: int) -> None:
    """`count` records numbered from `cluster.sent`, spread evenly over the shards."""
    kinesis = aws.client("kinesis", cluster.endpoint)
    end = cluster.sent + count
    for start in range(cluster.sent, end, PUT_CHUNK):
        entries = [
            {
                "Data": json.dumps({"n": n}).encode(),
                "PartitionKey": "k",
                "ExplicitHashKey": cluster.hash_keys[n % len(cluster.hash_keys)],
            }
            for n in range(start, min(start + PUT_CHUNK, end))
        ]
        answer = kinesis.put_records(StreamName=cluster.stream, Records=entries)
        assert not answer.get("FailedRecordCount"), answer
    cluster.sent = end


def balanced(cluster: Cluster, names: list[str]) -> bool:
    held = [cluster.held(name) for name in names]
    return all(len(shards) == SHARDS // len(names) for shards in held)


def shut_down(cluster: Cluster) -> None:
    """Kill what is left of the cluster, without printing the daemons' logs."""
    cluster.stop_producing()
    for daemon in cluster.daemons.values():
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.wait(10)


def throughput(root: Path, endpoint: str, store: str, daemons: int, records: int) -> float:
    cluster = Cluster(root, endpoint, store, SHARDS, ttl_seconds=10.0)
    names = [f"d{index}" for index in range(1, daemons + 1)]
    try:
        for name in names:
            cluster.start(name)
        wait_for(lambda: balanced(cluster, names), timeout=60, what="balanced leases")
        # A stolen lease is read only a ttl after the steal: wait until every shard is
        # read by its holder (one record each) before the timed batch.
        holders = {shard: name for name in names for shard in cluster.held(name)}
        put(cluster, SHARDS)
        wait_for(
            lambda: (
                {(row["shard"], row["daemon"]) for row in cluster.rows()} >= set(holders.items())
            ),
            timeout=60,
            what="every shard read by its holder",
        )
        # The daemons wait (SIGSTOP) while the batch is put, so moto's pace at taking
        # records in does not count.
        for daemon in cluster.daemons.values():
            daemon.signal(signal.SIGSTOP)
        put(cluster, records)
        for daemon in cluster.daemons.values():
            daemon.signal(signal.SIGCONT)
        timed = set(range(SHARDS, SHARDS + records))
        wait_for(
            lambda: cluster.handled() >= timed,
            timeout=600,
            interval=0.5,
            what="every record handled",
        )
        rows = [row for row in cluster.rows() if set(row["ns"]) <= timed]
        assert {row["daemon"] for row in rows} == set(names)
        seconds = max(row["end"] for row in rows) - min(row["start"] for row in rows)
        return records / seconds
    finally:
        shut_down(cluster)


def takeover(root: Path, endpoint: str, store: str, ttl: float) -> list[float]:
    """Seconds from the kill to the survivor's first call, for each of the victim's shards."""
    cluster = Cluster(root, endpoint, store, SHARDS, ttl_seconds=ttl)
    try:
        cluster.start("d1")
        wait_for(lambda: len(cluster.held("d1")) == SHARDS, timeout=30, what="d1 leasing all")
        cluster.start("d2")
        cluster.produce()
        wait_for(lambda: balanced(cluster, ["d1", "d2"]), timeout=ttl * 4 + 30, what="balance")
        wait_for(lambda: {row["daemon"] for row in cluster.rows()} == {"d1", "d2"}, timeout=30)
        victims_shards = cluster.held("d1")
        assert cluster.daemons["d1"].process is not None
        cluster.daemons["d1"].process.kill()
        killed_at = time.time()

        def firsts() -> list[float] | None:
            rows = [row for row in cluster.rows() if row["daemon"] == "d2"]
            found = [first_call_after(rows, shard, killed_at) for shard in victims_shards]
            if any(first is None for first in found):
                return None
            return [first - killed_at for first in found if first is not None]

        seconds: list[float] = wait_for(firsts, timeout=ttl * 3 + 30, interval=0.1)
        return seconds
    finally:
        shut_down(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stores", default="sqlite,dynamodb")
    args = parser.parse_args()
    stores = args.stores.split(",")
    os.environ.update(services.AWS_TEST_ENV)
    with tempfile.TemporaryDirectory(prefix="lease-bench-") as folder:
        workdir = Path(folder)
        moto = services.moto_server(workdir / "moto")
        endpoint = f"http://127.0.0.1:{moto.port}"
        runs = 0

        def root() -> Path:
            nonlocal runs
            runs += 1
            path = workdir / f"run-{runs}"
            path.mkdir()
            return path

        try:
            print(f"{SHARDS} shards, moto {endpoint}, batch size 25, handler 20 ms per call")
            print(
                f"(a) throughput, {args.records} records put while the daemons are stopped, lease ttl 10 s"
            )
            for store in stores:
                one = throughput(root(), endpoint, store, 1, args.records)
                print(f"  {store:8} 1 daemon : {one:8.0f} records/s", flush=True)
                two = throughput(root(), endpoint, store, 2, args.records)
                print(f"  {store:8} 2 daemons: {two:8.0f} records/s", flush=True)
                print(f"  {store:8} ratio 2 daemons / 1 daemon: {two / one:.2f}", flush=True)
            print(f"(b) takeover after kill -9 of one of 2 daemons, {args.rounds} rounds")
            for store in stores:
                for ttl in TAKEOVER_TTLS:
                    per_round = [takeover(root(), endpoint, store, ttl) for _ in range(args.rounds)]
                    shards = sorted(s for seconds in per_round for s in seconds)
                    whole = sorted(max(seconds) for seconds in per_round)
                    print(
                        f"  {store:8} ttl {ttl:4.0f} s: per shard p50 "
                        f"{statistics.median(shards):5.2f} s max {max(shards):5.2f} s "
                        f"(n={len(shards)}); all of its shards p50 "
                        f"{statistics.median(whole):5.2f} s max {max(whole):5.2f} s; "
                        f"rounds {[round(max(seconds), 2) for seconds in per_round]}",
                        flush=True,
                    )
        finally:
            moto.stop()


if __name__ == "__main__":
    main()
