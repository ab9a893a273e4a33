"""Per-mapping counters, gauges and histograms.

Counting costs an attribute increment on the hot path; `/metrics` (bridge.ops.exposition)
and `/status` (bridge.ops.status) read these values only when they are asked for. Names
follow Lambda's event source mapping metrics where they exist (esm-reference.md 16:
PolledEventCount, FilteredOutEventCount, InvokedEventCount, FailedInvokeEventCount,
DroppedEventCount, OnFailureDestinationDeliveredEventCount, IteratorAge, OffsetLag), in
Prometheus style: `lambda_bridge_polled_events_total`, `lambda_bridge_iterator_age_seconds`, ...

An invoker may contribute families of its own (per function, say): an optional
`metrics()` method returning prometheus_client metric families (full names, PREFIX
included), collected by `contributed` and exposed after the mappings' (families of the
same name from several invokers are merged).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import HistogramMetricFamily, Metric

from bridge.records import Record

PREFIX = "lambda_bridge"

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

# Lambda's LastProcessingResult values (esm-reference.md 16).
NO_RECORDS = "No records processed"
OK = "OK"
PROBLEM = "PROBLEM: Function call failed"


class Histogram:
    __slots__ = ("bounds", "buckets", "count", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.buckets = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus wants them, `+Inf` last."""
        running, pairs = 0, []
        for bound, count in zip((*self.bounds, math.inf), self.buckets, strict=True):
            running += count
            pairs.append(("+Inf" if bound == math.inf else _number(bound), running))
        return pairs


@dataclass
class MappingMetrics:
    """What one mapping has done since the daemon started (across reconnects)."""

    polled: int = 0
    invoked: int = 0
    invocations: int = 0
    succeeded: int = 0
    failed_invoke: int = 0
    sent_to_destination: int = 0
    dropped: int = 0
    retries: int = 0
    released: int = 0
    retention_gaps: int = 0
    leases_taken: int = 0
    leases_lost: int = 0
    # The partitions whose leases this daemon holds; None for a source that does not lease.
    leases_held: tuple[str, ...] | None = None
    in_flight: int = 0
    invoke_duration: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))
    # Age in seconds of the last record of the last batch invoked, when it was invoked
    # (Lambda's IteratorAge: one value per mapping, so partitions by the thousand, such
    # as a folder's files, do not each become a time series).
    iterator_age: float | None = None
    last_processing_result: str = NO_RECORDS

    def invoking(self, records: Sequence[Record], attempt: int) -> None:
        self.invocations += 1
        self.invoked += len(records)
        self.in_flight += 1
        if attempt > 1:
            self.retries += 1
        self.batch_size.observe(len(records))
        if records:
            self.iterator_age = max(time.time() - records[-1].arrival, 0.0)

    def invoked_for(self, seconds: float) -> None:
        self.in_flight -= 1
        self.invoke_duration.observe(seconds)

    def answered(self, records: int, failed: int) -> None:
        """The function answered for `records`, of which `failed` failed. (Successes are
        counted when settled, once per record however often it was retried.)"""
        self.failed_invoke += failed
        self.last_processing_result = PROBLEM if failed else OK


@dataclass
class MappingView:
    """A mapping as `/metrics`, `/readyz` and `/status` see it at one moment."""

    name: str
    state: str
    reason: str
    metrics: MappingMetrics
    filtered_out: int
    failures: Mapping[str, int] = field(default_factory=dict)
    offset_lag: Mapping[str, int] = field(default_factory=dict)
    progress: Mapping[str, int] | None = None
    # An asynchronous invocation queue's `depth` and `oldest_event_age_seconds`.
    queue: Mapping[str, float | None] | None = None


def contributed(invokers: Iterable[object]) -> list[Metric]:
    """The families of every invoker that has a `metrics()` method (looked for through
    wrappers that keep the wrapped invoker as `inner`)."""
    families: list[Metric] = []
    for invoker in invokers:
        current: object | None = invoker
        while current is not None and not callable(getattr(current, "metrics", None)):
            current = getattr(current, "inner", None)
        if current is not None:
            families.extend(current.metrics())  # type: ignore[attr-defined]
    return families


def add_histogram(
    family: HistogramMetricFamily, labels: Sequence[str], histogram: Histogram
) -> None:
    """`histogram`'s buckets, sum and count as one labelled sample set of `family`."""
    family.add_metric(list(labels), histogram.cumulative(), sum_value=histogram.total)


STATES = ("Connecting", "Enabled", "Degraded", "Disabled", "Failed", "Stopped")

# (metric name after PREFIX, help, MappingMetrics attribute) of each per-mapping counter.
COUNTERS = (
    ("polled_events_total", "Records read from the source (PolledEventCount).", "polled"),
    (
        "invoked_events_total",
        "Records sent to the function, per attempt (InvokedEventCount).",
        "invoked",
    ),
    ("invocations_total", "Function invocations (batches, retries included).", "invocations"),
    (
        "succeeded_events_total",
        "Records settled after the function processed them successfully (once each).",
        "succeeded",
    ),
    (
        "failed_invoke_events_total",
        "Records of invocations that failed or reported them failed (FailedInvokeEventCount).",
        "failed_invoke",
    ),
    (
        "on_failure_destination_delivered_events_total",
        "Records written to the on-failure destination (OnFailureDestinationDeliveredEventCount).",
        "sent_to_destination",
    ),
    (
        "dropped_events_total",
        "Records given up without an on-failure destination (DroppedEventCount).",
        "dropped",
    ),
    ("retries_total", "Invocations that retried a batch.", "retries"),
    (
        "released_events_total",
        "Records handed back unsettled, for the source to deliver again (queue failures, "
        "revoked partitions).",
        "released",
    ),
    (
        "retention_gaps_total",
        "Times reading resumed past records the stream had already deleted (retention).",
        "retention_gaps",
    ),
    (
        "leases_taken_total",
        "Shard leases this daemon took (free, expired or stolen).",
        "leases_taken",
    ),
    (
        "leases_lost_total",
        "Shard leases this daemon lost: taken by another daemon, or not renewed in time "
        "(checkpoint store unreachable).",
        "leases_lost",
    ),
)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
