"""`/metrics`: the daemon's metrics in Prometheus text exposition, by prometheus_client.

A `DaemonCollector` is built per scrape from the views the daemon gives at that moment
and turns them into prometheus_client metric families; prometheus_client writes the
text. The hot path never touches prometheus_client: it increments MappingMetrics'
attributes, which are read only here. Names follow Lambda's event source mapping
metrics (esm-reference.md 16) in Prometheus style (bridge.ops.metrics).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from bridge.ops.metrics import COUNTERS, PREFIX, STATES, Histogram, MappingView, add_histogram

# The text format generate_latest writes for our (legacy-charset) names.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

_MAPPING = ["mapping"]


class DaemonCollector(Collector):
    """Every mapping's metrics, the checkpoint store's write failures and the families
    invokers contribute (merged by name: one HELP and TYPE however many give it)."""

    def __init__(
        self,
        views: Sequence[MappingView],
        checkpoint_write_failures: int = 0,
        families: Sequence[Metric] = (),
    ) -> None:
        self._views = views
        self._checkpoint_write_failures = checkpoint_write_failures
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._gauges()
        yield from self._histograms()
        yield from _merged(self._families)

    def _counters(self) -> Iterator[Metric]:
        views = self._views
        filtered = _counter(
            "filtered_out_events_total",
            "Records that matched no filter and were settled unseen (FilteredOutEventCount).",
        )
        for view in views:
            filtered.add_metric([view.name], view.filtered_out)
        yield filtered
        for metric, help_text, attribute in COUNTERS:
            family = _counter(metric, help_text)
            for view in views:
                family.add_metric([view.name], getattr(view.metrics, attribute))
            yield family
        failures = _counter(
            "failures_total",
            "Failures by component: source (a session ended), destination, checkpoint store, "
            "background tasks (commits, acknowledgements); each was reported and retried.",
            [*_MAPPING, "component"],
        )
        for view in views:
            for component, count in sorted(view.failures.items()):
                failures.add_metric([view.name, component], count)
        yield failures
        yield CounterMetricFamily(
            f"{PREFIX}_checkpoint_write_failures_total",
            "Failed writes of the checkpoint store (kept and written again with backoff).",
            value=self._checkpoint_write_failures,
        )

    def _gauges(self) -> Iterator[Metric]:
        views = self._views
        in_flight = _gauge("in_flight_batches", "Batches being delivered now.")
        for view in views:
            in_flight.add_metric([view.name], view.metrics.in_flight)
        yield in_flight
        leases = _gauge("leases_held", "Shard leases this daemon holds (leasing sources only).")
        for view in views:
            if view.metrics.leases_held is not None:
                leases.add_metric([view.name], len(view.metrics.leases_held))
        yield leases
        state = _gauge("mapping_state", "1 for the mapping's current state.", [*_MAPPING, "state"])
        for view in views:
            for name in STATES:
                state.add_metric([view.name, name], int(view.state == name))
        yield state
        age = _gauge(
            "iterator_age_seconds",
            "Age of the last record of the last batch when it was invoked (IteratorAge).",
        )
        for view in views:
            if view.metrics.iterator_age is not None:
                age.add_metric([view.name], round(view.metrics.iterator_age, 3))
        yield age
        lag = _gauge(
            "offset_lag",
            "Records in the partition not yet settled by this consumer (OffsetLag, Kafka).",
            [*_MAPPING, "partition"],
        )
        for view in views:
            for partition, records in sorted(view.offset_lag.items()):
                lag.add_metric([view.name, partition], records)
        yield lag
        remaining = _gauge(
            "catch_up_remaining", "Items a source still has to reconcile before it is caught up."
        )
        for view in views:
            if view.progress is not None:
                left = view.progress.get("total", 0) - view.progress.get("done", 0)
                remaining.add_metric([view.name], max(left, 0))
        yield remaining

    def _histograms(self) -> Iterator[Metric]:
        for metric, help_text, attribute in (
            ("invoke_duration_seconds", "Time the function took to answer.", "invoke_duration"),
            ("batch_size", "Records per invocation.", "batch_size"),
        ):
            family = HistogramMetricFamily(f"{PREFIX}_{metric}", help_text, labels=_MAPPING)
            for view in self._views:
                histogram: Histogram = getattr(view.metrics, attribute)
                add_histogram(family, [view.name], histogram)
            yield family


def render(
    views: Sequence[MappingView],
    *,
    checkpoint_write_failures: int = 0,
    families: Sequence[Metric] = (),
) -> bytes:
    """The exposition of one scrape (CONTENT_TYPE)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(views, checkpoint_write_failures, families))
    return generate_latest(registry)


def _counter(name: str, help_text: str, labels: Sequence[str] = _MAPPING) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=list(labels))


def _gauge(name: str, help_text: str, labels: Sequence[str] = _MAPPING) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=list(labels))


def _merged(families: Sequence[Metric]) -> Iterator[Metric]:
    by_name: dict[str, Metric] = {}
    for family in families:
        first = by_name.get(family.name)
        if first is None:
            # A copy: the contributor's family is never extended in place.
            first = by_name[family.name] = Metric(family.name, family.documentation, family.type)
        first.samples.extend(family.samples)
    yield from by_name.values()
