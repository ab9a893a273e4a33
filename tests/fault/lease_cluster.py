"""Several `lambda-bridge run` daemons on one Kinesis stream (moto), sharing a checkpoint
store and so the shards' leases: a producer thread, a handler that records every call
(daemon, pid, shard, sequence numbers, start and end), and the checks of
tests/fault/test_shard_leases.py."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.e2e import aws_helpers as aws
from tests.support import DaemonProcess, read_jsonl

LEASE_HANDLER = '''
"""Records each call: who handled which records of which shard, and when."""
import base64, json, os, time


def handler(event, context):
    started = time.time()
    records = event["Records"]
    time.sleep(0.02)
    row = {
        "daemon": os.environ["DAEMON"], "pid": os.getpid(),
        "shard": records[0]["eventID"].split(":")[0],
        "seqs": [record["kinesis"]["sequenceNumber"] for record in records],
        "ns": [json.loads(base64.b64decode(record["kinesis"]["data"]))["n"] for record in records],
        "start": started, "end": time.time(),
    }
    with open(os.environ["RECORD_TO"], "a") as out:
        out.write(json.dumps(row) + "\\n")
    return {}
'''

TTL_SECONDS = 2.0


class Cluster:
    def __init__(
        self,
        root: Path,
        endpoint: str,
        store: str,
        shards: int,
        ttl_seconds: float = TTL_SECONDS,
    ) -> None:
        self.root = root
        self.endpoint = endpoint
        self.calls = root / "calls.jsonl"
        self.stream = aws.new_stream(endpoint, shards)
        kinesis = aws.client("kinesis", endpoint)
        listed = kinesis.list_shards(StreamName=self.stream)["Shards"]
        self.hash_keys = [shard["HashKeyRange"]["StartingHashKey"] for shard in listed]
        (root / "lease_handler.py").write_text(LEASE_HANDLER)
        if store == "sqlite":
            store_yaml = (
                f"{{type: sqlite, path: '{root / 'shared.sqlite3'}', "
                f"lease_ttl_seconds: {ttl_seconds}, flush_interval_seconds: 0.2}}"
            )
        else:
            store_yaml = (
                f"{{type: dynamodb, table: {aws.unique('leases')}, create_table: true, "
                f"endpoint_url: '{endpoint}', lease_ttl_seconds: {ttl_seconds}, "
                "flush_interval_seconds: 0.2}"
            )
        self.config_text = f"""\
state_dir: ./state
drain_timeout_seconds: 5
checkpoint_store: {store_yaml}
functions:
  recorder: {{invoker: python, handler: "{root / "lease_handler.py"}:handler", timeout: 10}}
mappings:
  - name: events
    function: recorder
    batch_size: 25
    source:
      type: kinesis
      stream: {self.stream}
      endpoint_url: "{endpoint}"
      starting_position: TRIM_HORIZON
      poll_interval_seconds: 0.2
      shard_discovery_interval_seconds: 1
"""
        self.daemons: dict[str, DaemonProcess] = {}
        self.sent = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._producer: threading.Thread | None = None

    def start(self, name: str) -> DaemonProcess:
        folder = self.root / name
        folder.mkdir()
        config = folder / "bridge.yaml"
        config.write_text(self.config_text)
        daemon = DaemonProcess(
            config, folder, env={"RECORD_TO": str(self.calls), "DAEMON": name}
        ).start()
        self.daemons[name] = daemon
        return daemon

    def produce(self, per_second: float = 40.0) -> None:
        def run() -> None:
            try:
                loop()
            except Exception as exc:
                self.errors.append(repr(exc))
                raise

        def loop() -> None:
            kinesis = aws.client("kinesis", self.endpoint)
            while not self._stop.is_set():
                records = [
                    {
                        "Data": json.dumps({"n": self.sent + index}).encode(),
                        "PartitionKey": "k",
                        "ExplicitHashKey": self.hash_keys[
                            (self.sent + index) % len(self.hash_keys)
                        ],
                    }
                    for index in range(10)
                ]
                answer = kinesis.put_records(StreamName=self.stream, Records=records)
                if answer.get("FailedRecordCount"):
                    self.errors.append(str(answer))
                    continue
                self.sent += len(records)
                self._stop.wait(len(records) / per_second)

        self._producer = threading.Thread(target=run, daemon=True)
        self._producer.start()

    def stop_producing(self) -> None:
        self._stop.set()
        if self._producer is not None:
            self._producer.join()

    def rows(self) -> list[dict[str, Any]]:
        return read_jsonl(self.calls) if self.calls.exists() else []

    def handled(self) -> set[int]:
        return {n for row in self.rows() for n in row["ns"]}

    def held(self, name: str) -> set[str]:
        """The shards a daemon's last `leases.changed` line says it holds."""
        changes = self.daemons[name].events("leases.changed")
        return set(changes[-1]["held"]) if changes else set()

    def stop(self) -> None:
        self.stop_producing()
        for daemon in self.daemons.values():
            daemon.kill()


def overlaps(rows: list[dict[str, Any]]) -> list[str]:
    """Calls of one shard by two processes whose runs overlap in time."""
    found = []
    by_shard: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_shard[row["shard"]].append(row)
    for shard, calls in by_shard.items():
        calls.sort(key=lambda row: row["start"])
        latest_end: dict[int, float] = {}
        for call in calls:
            for pid, end in latest_end.items():
                if pid != call["pid"] and end > call["start"]:
                    found.append(
                        f"{shard}: pid {pid} until {end}, pid {call['pid']} from {call['start']}"
                    )
            latest_end[call["pid"]] = max(latest_end.get(call["pid"], 0.0), call["end"])
    return found


def order_breaks(rows: list[dict[str, Any]]) -> list[str]:
    """Per shard, a process's next call starts after its previous one unless another
    process handled the shard in between (then it resumed from a checkpoint)."""
    found = []
    by_shard: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_shard[row["shard"]].append(row)
    for shard, calls in by_shard.items():
        calls.sort(key=lambda row: row["start"])
        last: dict[int, int] = {}
        for call in calls:
            seqs = [int(seq) for seq in call["seqs"]]
            if seqs != sorted(seqs):
                found.append(f"{shard}: a batch out of order")
            previous = last.get(call["pid"])
            if previous is not None and seqs[0] <= previous:
                found.append(f"{shard}: pid {call['pid']} went back from {previous} to {seqs[0]}")
            for pid in list(last):
                if pid != call["pid"]:
                    del last[pid]  # another process ran it: resuming from a checkpoint
            last[call["pid"]] = seqs[-1]
    return found


def first_call_after(rows: list[dict[str, Any]], shard: str, moment: float) -> float | None:
    starts = [row["start"] for row in rows if row["shard"] == shard and row["start"] > moment]
    return min(starts) if starts else None


def wait_quiet(cluster: Cluster, seconds: float = 1.5) -> None:
    """Until no call has been recorded for `seconds`."""
    previous = -1
    while True:
        count = len(cluster.rows())
        if count == previous:
            return
        previous = count
        time.sleep(seconds)
