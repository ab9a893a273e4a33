"""Metrics exposition, status and readiness: the text Prometheus scrapes, read back with
prometheus_client's own parser, and the JSON the status command reads."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bridge.cli.ops import _table
from bridge.ops.admin import readiness
from bridge.ops.exposition import render
from bridge.ops.metrics import DURATION_BUCKETS, PROBLEM, Histogram, MappingMetrics, MappingView
from bridge.ops.status import status_document
from bridge.records import Record
from tests.exposition import per_mapping, samples, value


def record(partition: str, position: int, arrival: float) -> Record:
    return Record(partition, position, str(position), {"n": position}, arrival)


def view(
    name: str, metrics: MappingMetrics, state: str = "Enabled", **extra: object
) -> MappingView:
    return MappingView(name=name, state=state, reason="", metrics=metrics, filtered_out=3, **extra)  # type: ignore[arg-type]


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram((1, 5, 10))
    for observed in (0.5, 1, 3, 7, 50):
        histogram.observe(observed)
    assert histogram.cumulative() == [("1", 2), ("5", 3), ("10", 4), ("+Inf", 5)]
    assert histogram.count == 5 and histogram.total == 61.5


def test_a_batch_lifecycle_is_counted() -> None:
    metrics = MappingMetrics()
    batch = [record("p", n, arrival=0.0) for n in range(4)]
    metrics.invoking(batch, attempt=1)
    assert metrics.in_flight == 1
    metrics.invoked_for(0.02)
    metrics.answered(4, failed=1)
    metrics.invoking(batch[1:2], attempt=2)
    metrics.invoked_for(0.01)
    metrics.answered(1, failed=1)
    assert (metrics.invocations, metrics.invoked, metrics.retries, metrics.in_flight) == (
        2,
        5,
        1,
        0,
    )
    # Successes are counted when records settle (bridge.pipeline.dispatch), not per answer.
    assert (metrics.succeeded, metrics.failed_invoke) == (0, 2)
    assert metrics.last_processing_result == PROBLEM
    assert (
        metrics.iterator_age is not None and metrics.iterator_age > 1_000_000
    )  # arrival at epoch 0


def test_render_and_read_back() -> None:
    first, second = MappingMetrics(), MappingMetrics()
    first.polled, first.sent_to_destination = 10, 2
    first.batch_size.observe(7)
    first.iterator_age = 1.23456
    text = render(
        [
            view(
                "orders",
                first,
                offset_lag={"t-0": 5, "t-1": 7},
                progress={"done": 2, "total": 9},
                failures={"source": 1},
            ),
            view('we"ird', second, state="Connecting"),
        ],
        checkpoint_write_failures=3,
    ).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["lambda_bridge_polled_events"].type == "counter"
    assert families["lambda_bridge_mapping_state"].type == "gauge"
    assert families["lambda_bridge_batch_size"].type == "histogram"
    assert "# TYPE lambda_bridge_polled_events_total counter" in text
    assert value(text, "lambda_bridge_mapping_state", mapping="orders", state="Enabled") == 1
    assert value(text, "lambda_bridge_mapping_state", mapping='we"ird', state="Connecting") == 1
    assert value(text, "lambda_bridge_batch_size_bucket", mapping="orders", le="5") == 0
    assert value(text, "lambda_bridge_batch_size_bucket", mapping="orders", le="10") == 1
    assert value(text, "lambda_bridge_batch_size_bucket", mapping="orders", le="+Inf") == 1
    assert value(text, "lambda_bridge_batch_size_sum", mapping="orders") == 7
    assert value(text, "lambda_bridge_offset_lag", mapping="orders", partition="t-1") == 7
    assert value(text, "lambda_bridge_iterator_age_seconds", mapping="orders") == 1.235
    assert value(text, "lambda_bridge_failures_total", mapping="orders", component="source") == 1
    assert value(text, "lambda_bridge_checkpoint_write_failures_total") == 3
    buckets = [
        sample.labels["le"]
        for sample in samples(text)
        if sample.name == "lambda_bridge_invoke_duration_seconds_bucket"
        and sample.labels["mapping"] == "orders"
    ]
    assert buckets == [*(_le(bound) for bound in DURATION_BUCKETS), "+Inf"]
    parsed = per_mapping(text)
    assert parsed["orders"]["polled_events_total"] == 10
    assert parsed["orders"]["offset_lag"] == 12
    assert parsed["orders"]["on_failure_destination_delivered_events_total"] == 2
    assert parsed["orders"]["filtered_out_events_total"] == 3
    assert parsed["orders"]["catch_up_remaining"] == 7
    assert "catch_up_remaining" not in parsed['we"ird']
    assert "iterator_age_seconds" not in parsed['we"ird']


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def test_status_document_and_the_table_it_makes() -> None:
    before, after = MappingMetrics(), MappingMetrics()
    after.polled, after.invoked, after.failed_invoke, after.sent_to_destination = 20, 10, 2, 1
    after.iterator_age = 3.04
    views = [
        view("orders", before, offset_lag={"t-0": 5, "t-1": 7}),
        view("files", MappingMetrics(), state="Degraded", progress={"done": 2, "total": 9}),
    ]
    first = status_document(views, stopping=False, checkpoint_write_failures=0)
    views[0] = view("orders", after, offset_lag={"t-0": 5, "t-1": 7})
    views[1].reason = "checkpoint store: locked"
    last = status_document(views, stopping=False, checkpoint_write_failures=1)
    assert last["ready"] is False and last["checkpoint_write_failures"] == 1
    orders = last["mappings"][0]
    assert orders["counters"]["polled_events"] == 20
    assert orders["counters"]["filtered_out_events"] == 3
    assert orders["offset_lag"] == {"t-0": 5, "t-1": 7}
    assert orders["iterator_age_seconds"] == 3.04
    lines = _table(first, last, interval=2.0).splitlines()
    assert lines[0] == "daemon: NOT ready"
    row = "orders Enabled 12 rec / 3.0s 10.0 5.0 2 1 3 No records processed"
    assert lines[2].split() == row.split()
    assert "files: checkpoint store: locked" in lines
    assert "files: catching up, 2 of 9" in lines


def test_ready_only_when_every_enabled_mapping_is_enabled() -> None:
    metrics = MappingMetrics()
    ok, body = readiness([view("a", metrics), view("b", metrics, state="Disabled")], stopping=False)
    assert ok and body["ready"] is True
    ok, body = readiness(
        [view("a", metrics), view("b", metrics, state="Connecting")], stopping=False
    )
    assert not ok and [m["State"] for m in body["mappings"]] == ["Enabled", "Connecting"]
    ok, _ = readiness([view("a", metrics)], stopping=True)
    assert not ok
