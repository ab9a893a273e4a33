"""Per-mapping counters, gauges and histograms, and their Prometheus text exposition.

Counting costs an attribute increment on the hot path; the exposition is built only
when `/metrics` is scraped. Names follow Lambda's event source mapping metrics where
they exist (esm-reference.md 16: PolledEventCount, FilteredOutEventCount,
InvokedEventCount, FailedInvokeEventCount, DroppedEventCount,
OnFailureDestinationDeliveredEventCount, IteratorAge, OffsetLag), in Prometheus style:
`lambda_bridge_polled_events_total`, `lambda_bridge_iterator_age_seconds`, ...

An invoker may contribute families of its own (per function, say): an optional
`metrics()` method returning `Family` values, collected by `contributed` and rendered
after the mappings' (families of the same name from several invokers are merged).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bridge.records import Record

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
    """A mapping as `/metrics` and `/readyz` see it at one moment."""

    name: str
    state: str
    reason: str
    metrics: MappingMetrics
    filtered_out: int
    failures: Mapping[str, int] = field(default_factory=dict)
    offset_lag: Mapping[str, int] = field(default_factory=dict)
    progress: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Family:
    """A metric family an invoker contributes: `name` after the prefix, `kind` counter,
    gauge or histogram, and (labels, value) samples; a histogram's values are Histograms."""

    name: str
    kind: str
    help: str
    samples: Sequence[tuple[Mapping[str, str], float | Histogram]]


def contributed(invokers: Iterable[object]) -> list[Family]:
    """The families of every invoker that has a `metrics()` method (looked for through
    wrappers that keep the wrapped invoker as `inner`)."""
    families: list[Family] = []
    for invoker in invokers:
        current: object | None = invoker
        while current is not None and not callable(getattr(current, "metrics", None)):
            current = getattr(current, "inner", None)
        if current is not None:
            families.extend(current.metrics())  # type: ignore[attr-defined]
    return families


STATES = ("Connecting", "Enabled", "Degraded", "Disabled", "Failed", "Stopped")

_COUNTERS = (
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
)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(
    views: Sequence[MappingView],
    prefix: str = "lambda_bridge",
    *,
    checkpoint_write_failures: int = 0,
    families: Sequence[Family] = (),
) -> str:
    """The Prometheus text exposition (format 0.0.4) of every mapping's metrics."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> str:
        full = f"{prefix}_{name}"
        lines.extend((f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"))
        return full

    name = family(
        "filtered_out_events_total",
        "counter",
        "Records that matched no filter and were settled unseen (FilteredOutEventCount).",
    )
    lines += [f'{name}{{mapping="{_label(v.name)}"}} {v.filtered_out}' for v in views]
    for metric, help_text, attribute in _COUNTERS:
        name = family(metric, "counter", help_text)
        lines += [
            f'{name}{{mapping="{_label(v.name)}"}} {getattr(v.metrics, attribute)}' for v in views
        ]
    name = family(
        "failures_total",
        "counter",
        "Failures by component: source (a session ended), destination, checkpoint store, "
        "background tasks (commits, acknowledgements); each was reported and retried.",
    )
    for view in views:
        for component, count in sorted(view.failures.items()):
            labels = f'mapping="{_label(view.name)}",component="{_label(component)}"'
            lines.append(f"{name}{{{labels}}} {count}")
    name = family(
        "checkpoint_write_failures_total",
        "counter",
        "Failed writes of the checkpoint store (kept and written again with backoff).",
    )
    lines.append(f"{name} {checkpoint_write_failures}")
    name = family("in_flight_batches", "gauge", "Batches being delivered now.")
    lines += [f'{name}{{mapping="{_label(v.name)}"}} {v.metrics.in_flight}' for v in views]
    name = family("mapping_state", "gauge", "1 for the mapping's current state.")
    for view in views:
        for state in STATES:
            value = int(view.state == state)
            lines.append(f'{name}{{mapping="{_label(view.name)}",state="{state}"}} {value}')
    name = family(
        "iterator_age_seconds",
        "gauge",
        "Age of the last record of the last batch when it was invoked (IteratorAge).",
    )
    for view in views:
        if view.metrics.iterator_age is not None:
            age = view.metrics.iterator_age
            lines.append(f'{name}{{mapping="{_label(view.name)}"}} {age:.3f}')
    name = family(
        "offset_lag",
        "gauge",
        "Records in the partition not yet settled by this consumer (OffsetLag, Kafka).",
    )
    for view in views:
        for partition, lag in sorted(view.offset_lag.items()):
            labels = f'mapping="{_label(view.name)}",partition="{_label(partition)}"'
            lines.append(f"{name}{{{labels}}} {lag}")
    name = family(
        "catch_up_remaining",
        "gauge",
        "Items a source still has to reconcile before it is caught up.",
    )
    for view in views:
        if view.progress is not None:
            remaining = view.progress.get("total", 0) - view.progress.get("done", 0)
            lines.append(f'{name}{{mapping="{_label(view.name)}"}} {max(remaining, 0)}')
    for metric, help_text, attribute in (
        ("invoke_duration_seconds", "Time the function took to answer.", "invoke_duration"),
        ("batch_size", "Records per invocation.", "batch_size"),
    ):
        name = family(metric, "histogram", help_text)
        for view in views:
            histogram: Histogram = getattr(view.metrics, attribute)
            mapping = f'mapping="{_label(view.name)}"'
            lines += [
                f'{name}_bucket{{{mapping},le="{le}"}} {count}'
                for le, count in histogram.cumulative()
            ]
            lines.append(f"{name}_sum{{{mapping}}} {_number(histogram.total)}")
            lines.append(f"{name}_count{{{mapping}}} {histogram.count}")
    merged: dict[str, list[Family]] = {}
    for contribution in families:
        merged.setdefault(contribution.name, []).append(contribution)
    for same in merged.values():
        name = family(same[0].name, same[0].kind, same[0].help)
        for contribution in same:
            for sample_labels, sample in contribution.samples:
                lines += _samples(name, sample_labels, sample)
    return "\n".join(lines) + "\n"


def _samples(name: str, labels: Mapping[str, str], value: float | Histogram) -> list[str]:
    pairs = [f'{key}="{_label(text)}"' for key, text in labels.items()]
    joined = "{" + ",".join(pairs) + "}" if pairs else ""
    if not isinstance(value, Histogram):
        return [f"{name}{joined} {_number(value)}"]
    lines = []
    for le, count in value.cumulative():
        bucket = ",".join([*pairs, f'le="{le}"'])
        lines.append(f"{name}_bucket{{{bucket}}} {count}")
    lines.append(f"{name}_sum{joined} {_number(value.total)}")
    lines.append(f"{name}_count{joined} {value.count}")
    return lines
