"""`GET /status`: what `lambda-bridge status` shows, as JSON.

One entry per mapping and per asynchronous invocation queue (`async:<function>`), with
the counters `/metrics` exposes under the same names (without the `lambda_bridge_`
prefix and the `_total` suffix), so a client computes rates from two answers without
parsing Prometheus text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.ops.metrics import COUNTERS, MappingView


def is_ready(views: Sequence[MappingView], stopping: bool) -> bool:
    """Every mapping connected and polling, or disabled on purpose. Degraded mappings
    read, but something they must do keeps failing: not ready."""
    return not stopping and all(view.state in ("Enabled", "Disabled") for view in views)


def mapping_status(view: MappingView) -> dict[str, Any]:
    metrics = view.metrics
    counters = {"filtered_out_events": view.filtered_out}
    for metric, _, attribute in COUNTERS:
        counters[metric.removesuffix("_total")] = getattr(metrics, attribute)
    entry: dict[str, Any] = {
        "name": view.name,
        "state": view.state,
        "reason": view.reason,
        "last_processing_result": metrics.last_processing_result,
        "iterator_age_seconds": None
        if metrics.iterator_age is None
        else round(metrics.iterator_age, 3),
        "offset_lag": dict(sorted(view.offset_lag.items())),
        "in_flight_batches": metrics.in_flight,
        "counters": counters,
        "failures": dict(sorted(view.failures.items())),
        "catch_up": None if view.progress is None else dict(view.progress),
    }
    if metrics.leases_held is not None:
        entry["leases_held"] = list(metrics.leases_held)
    if view.queue is not None:
        entry["queue"] = dict(view.queue)
    return entry


def status_document(
    views: Sequence[MappingView], stopping: bool, checkpoint_write_failures: int
) -> dict[str, Any]:
    return {
        "ready": is_ready(views, stopping),
        "stopping": stopping,
        "checkpoint_write_failures": checkpoint_write_failures,
        "mappings": [mapping_status(view) for view in views],
    }
