"""Soak: a handler that fails at random for a minute (LAMBDA_BRIDGE_FAULT_SCALE minutes),
on Redis Streams and Kafka at once, and what `/metrics` says afterwards.

Each mapping has `ReportBatchItemFailures`, `maximum_retry_attempts: 2`, a `file`
on-failure destination and a filter that drops about a fifth of the records. The
handler (tests/fault/handlers.py SOAK_HANDLER) fails records at random with a
Powertools-style partial batch response, sometimes raises for the whole batch, and
always fails "poison" records, so that records keep reaching the destination. Every
choice comes from the seed, the record's id and how often it was seen.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.kafka_helpers import kafka_bodies
from tests.e2e.redis_helpers import redis_bodies
from tests.fault.conftest import FaultRun
from tests.fault.handlers import SOAK_HANDLER, install
from tests.fault.harness import Admin, Producer, Workspace, rss_megabytes
from tests.fault.sources import FaultSource, KafkaSource, RedisStreamsSource
from tests.support import read_jsonl, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.e2e]

SOAK_SECONDS = 60.0
RATE = 50
SKIPPED = 0.2
POISON = 0.02
RAISE_RATE = 0.05
FAIL_RATE = 0.05
# RSS is first sampled once the soak has run this share of its time: by then buffers,
# pools and caches have grown to their working size.
WARM_UP_SHARE = 0.25
# Allowed growth from the warm-up sample to the end. Resident memory of a CPython
# process is noisy: pymalloc keeps freed arenas, the read-ahead (up to 2000 records per
# Kafka lane) and aiokafka's fetch buffers fill and empty, threads of the handler pool
# come and go. A leak of per-record state grows with the records processed: ~1 KB per
# record is ~6 MB at scale 1 (6,000 records, hidden by the noise) but ~60 MB at scale 10,
# which this bound catches.
RSS_GROWTH_MB = 30.0
RSS_GROWTH_SHARE = 0.25
SETTLE_TIMEOUT_SECONDS = 120.0

MAPPING = """\
  - name: {name}
    function: soaker
    batch_size: 10
    function_response_types: [ReportBatchItemFailures]
    maximum_retry_attempts: 2
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.5}}
    destination_config: {{on_failure: {{destination: failed}}}}
    filter_criteria: {{filters: [{{pattern: '{pattern}'}}]}}
{source}"""

PATTERNS = {
    "redis-streams": '{"redis": {"fields": {"kind": ["keep"]}}}',
    "kafka": '{"value": {"kind": ["keep"]}}',
}
BODIES = {"redis-streams": redis_bodies, "kafka": kafka_bodies}


def decorate(number: int, rng: Any) -> dict[str, Any]:
    draw = rng.random()
    if draw < SKIPPED:
        return {"kind": "skip"}
    return {"kind": "keep", "poison": draw < SKIPPED + POISON}


class Soaked:
    """One mapping of the soak: its producer and what ended up where."""

    def __init__(self, source: FaultSource, fault: FaultRun) -> None:
        self.source = source
        self.name = f"soak-{source.kind}"
        self.producer = Producer(
            source,
            fault.rng(f"producer:{source.kind}"),
            RATE,
            extra_for=decorate,
            prefix=f"{source.kind}-",
        )

    def kept(self) -> set[str]:
        return {ident for ident, body in self.producer.bodies.items() if body["kind"] == "keep"}

    def skipped(self) -> set[str]:
        return {ident for ident, body in self.producer.bodies.items() if body["kind"] == "skip"}

    def destination_ids(self, root: Path) -> list[str]:
        bodies = BODIES[self.source.kind]
        return [
            body["id"]
            for failure in read_jsonl(root / "failed" / f"{self.name}.jsonl")
            for body in bodies(failure["payload"])
        ]


def handler_rows(root: Path, prefix: str) -> list[dict[str, Any]]:
    return [row for row in read_jsonl(root / "deliveries.jsonl") if row["id"].startswith(prefix)]


def all_settled(soaked: Soaked, root: Path) -> bool:
    """Every kept record succeeded or is in the destination file."""
    rows = handler_rows(root, soaked.producer.prefix)
    done = {row["id"] for row in rows if row["done"]}
    return soaked.kept() <= done | set(soaked.destination_ids(root))


def account(soaked: Soaked, root: Path, metrics: dict[str, float]) -> list[str]:
    """Where every record ended, by the handler, the destination file and /metrics."""
    problems = []
    name = soaked.name
    rows = handler_rows(root, soaked.producer.prefix)
    ok = [row["id"] for row in rows if row["done"]]
    sent = soaked.destination_ids(root)
    kept, skipped = soaked.kept(), soaked.skipped()
    if len(ok) != len(set(ok)):
        problems.append(f"{name}: {len(ok) - len(set(ok))} records succeeded more than once")
    if len(sent) != len(set(sent)):
        problems.append(f"{name}: {len(sent) - len(set(sent))} records in the destination twice")
    if both := set(ok) & set(sent):
        problems.append(f"{name}: {len(both)} records both succeeded and sent to the destination")
    if lost := kept - set(ok) - set(sent):
        problems.append(
            f"{name}: {len(lost)} kept records neither succeeded nor sent: {sorted(lost)[:5]}"
        )
    if seen := skipped & {row["id"] for row in rows}:
        problems.append(f"{name}: {len(seen)} filtered-out records reached the handler")
    expected = {
        "polled_events_total": len(kept) + len(skipped),
        "succeeded_events_total": len(set(ok)),
        "on_failure_destination_delivered_events_total": len(set(sent)),
        "dropped_events_total": 0,
        "filtered_out_events_total": len(skipped),
    }
    for metric, value in expected.items():
        if metrics.get(metric) != value:
            problems.append(
                f"{name}: lambda_bridge_{metric} is {metrics.get(metric)}, but the records say {value}"
            )
    settled = sum(metrics.get(metric, 0) for metric in list(expected)[1:])
    if metrics.get("polled_events_total") != settled:
        problems.append(
            f"{name}: polled ({metrics.get('polled_events_total')}) != succeeded + "
            f"on_failure_destination_delivered + dropped + filtered_out ({settled})"
        )
    return problems


def test_soak_with_random_failures_keeps_metrics_exact_and_memory_flat(
    tmp_path: Path, redis_url: str, kafka_bootstrap: str, fault: FaultRun
) -> None:
    """For SOAK_SECONDS x scale the handler fails at random (seeded) on Redis Streams and
    Kafka. Afterwards every kept record either succeeded once or is in the destination
    file once, filtered ones never reached the handler, and /metrics agrees exactly:
    polled = succeeded (counted once per record) + on-failure destination + dropped +
    filtered out. The daemon's RSS at the end is within RSS_GROWTH_MB or
    RSS_GROWTH_SHARE (the larger) of its value after warm-up."""
    space = Workspace(
        tmp_path,
        env={
            "FAULT_SEED": str(fault.seed),
            "RAISE_RATE": str(RAISE_RATE),
            "FAIL_RATE": str(FAIL_RATE),
        },
    )
    handler = install(tmp_path, SOAK_HANDLER)
    mappings = [
        Soaked(RedisStreamsSource(redis_url, streams=3), fault),
        Soaked(KafkaSource(kafka_bootstrap, partitions=3), fault),
    ]
    config = space.write_config(
        "state_dir: ./state\n"
        f"functions:\n  soaker: {{invoker: python, handler: '{handler}', timeout: 5}}\n"
        "destinations:\n  failed: {type: file, path: ./failed}\n"
        "mappings:\n"
        + "".join(
            MAPPING.format(
                name=soaked.name,
                pattern=PATTERNS[soaked.source.kind],
                source=soaked.source.source_yaml(),
            )
            for soaked in mappings
        )
    )
    admin = Admin(tmp_path / "state")
    daemon = space.start(config)
    problems: list[str] = []
    figures: dict[str, Any] = {}
    began = time.monotonic()
    try:
        daemon.wait_ready(mappings=2)
        for soaked in mappings:
            soaked.producer.start()
        soaking = time.monotonic()
        duration = SOAK_SECONDS * fault.scale
        every = max(5.0, duration / 24)
        rss: list[tuple[float, float]] = []
        while (elapsed := time.monotonic() - soaking) < duration:
            rss.append((round(elapsed, 1), round(rss_megabytes(daemon), 1)))
            time.sleep(min(every, duration - elapsed))
        for soaked in mappings:
            soaked.producer.stop()
        for soaked in mappings:
            try:
                wait_for(
                    functools.partial(all_settled, soaked, tmp_path),
                    timeout=SETTLE_TIMEOUT_SECONDS,
                    interval=0.5,
                    what=f"every kept record of {soaked.name} to succeed or reach the destination",
                )
            except AssertionError as exc:
                problems.append(f"{soaked.name}: {exc}")
        wait_for(
            lambda: all(admin.metrics(s.name).get("in_flight_batches") == 0 for s in mappings),
            what="no batch in flight",
        )
        end_rss = rss_megabytes(daemon)
        for soaked in mappings:
            metrics = admin.metrics(soaked.name)
            problems += account(soaked, tmp_path, metrics)
            figures[soaked.name] = {
                "records": len(soaked.producer.bodies),
                **{key: value for key, value in metrics.items() if key.endswith("_total")},
            }
        assert daemon.stop() == 0
    finally:
        for soaked in mappings:
            soaked.producer.stop()
        space.close()
    warm = [mb for at, mb in rss if at >= duration * WARM_UP_SHARE] or [rss[-1][1]]
    start_rss = warm[0]
    allowed = max(RSS_GROWTH_MB, start_rss * RSS_GROWTH_SHARE)
    if end_rss - start_rss > allowed:
        problems.append(
            f"RSS grew from {start_rss:.1f} MB after warm-up to {end_rss:.1f} MB at the end "
            f"(more than {allowed:.1f} MB); samples (s, MB): {rss}"
        )
    fault.report(
        {
            "seconds": round(time.monotonic() - began, 1),
            "rss_start_mb": start_rss,
            "rss_end_mb": round(end_rss, 1),
            "rss_samples": rss,
            **figures,
        }
    )
    fault.verdict(problems)
