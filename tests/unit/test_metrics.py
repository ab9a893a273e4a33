"""Metrics exposition and readiness: the text Prometheus scrapes, read back the way the
status command reads it."""

from __future__ import annotations

from bridge.admin import readiness
from bridge.metrics import PROBLEM, Histogram, MappingMetrics, MappingView, render
from bridge.opscli import parse_metrics
from bridge.records import Record


def record(partition: str, position: int, arrival: float) -> Record:
    return Record(partition, position, str(position), {"n": position}, arrival)


def view(
    name: str, metrics: MappingMetrics, state: str = "Enabled", **extra: object
) -> MappingView:
    return MappingView(name=name, state=state, reason="", metrics=metrics, filtered_out=3, **extra)  # type: ignore[arg-type]


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram((1, 5, 10))
    for value in (0.5, 1, 3, 7, 50):
        histogram.observe(value)
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
    # Successes are counted when records settle (bridge.dispatch), not per answer.
    assert (metrics.succeeded, metrics.failed_invoke) == (0, 2)
    assert metrics.last_processing_result == PROBLEM
    assert (
        metrics.iterator_age is not None and metrics.iterator_age > 1_000_000
    )  # arrival at epoch 0


def test_render_and_read_back() -> None:
    first, second = MappingMetrics(), MappingMetrics()
    first.polled, first.sent_to_destination = 10, 2
    first.batch_size.observe(7)
    text = render(
        [
            view(
                "orders", first, offset_lag={"t-0": 5, "t-1": 7}, progress={"done": 2, "total": 9}
            ),
            view('we"ird', second, state="Connecting"),
        ]
    )
    assert text.endswith("\n")
    assert "# TYPE lambda_bridge_polled_events_total counter" in text
    assert 'lambda_bridge_mapping_state{mapping="orders",state="Enabled"} 1' in text
    assert 'lambda_bridge_mapping_state{mapping="we\\"ird",state="Connecting"} 1' in text
    assert 'lambda_bridge_batch_size_bucket{mapping="orders",le="10"} 1' in text
    assert 'lambda_bridge_offset_lag{mapping="orders",partition="t-1"} 7' in text
    parsed = parse_metrics(text)
    assert parsed["orders"]["polled_events_total"] == 10
    assert parsed["orders"]["offset_lag"] == 12
    assert parsed["orders"]["on_failure_destination_delivered_events_total"] == 2
    assert parsed["orders"]["filtered_out_events_total"] == 3
    assert parsed["orders"]["catch_up_remaining"] == 7
    assert "catch_up_remaining" not in parsed['we\\"ird']
    every_sample = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(len(line.rsplit(" ", 1)) == 2 for line in every_sample)


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
