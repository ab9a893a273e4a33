"""The runtime invoker's metric families, per function, for `/metrics` (prometheus_client
families, see bridge.ops.metrics): what the pool of the function has seen since it started."""

from __future__ import annotations

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from bridge.ops.metrics import PREFIX, add_histogram
from connectors.runtime.pool import EnvironmentPool

_FUNCTION = ["function"]


def families(name: str, pool: EnvironmentPool) -> list[Metric]:
    def gauge(metric: str, help_text: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(f"{PREFIX}_{metric}", help_text, labels=_FUNCTION)
        family.add_metric([name], value)
        return family

    def counter(metric: str, help_text: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(f"{PREFIX}_{metric}", help_text, labels=_FUNCTION)
        family.add_metric([name], value)
        return family

    environments = GaugeMetricFamily(
        f"{PREFIX}_runtime_environments",
        "Execution environments by state (starting: in INIT; idle: warm; busy).",
        labels=[*_FUNCTION, "state"],
    )
    environments.add_metric([name, "starting"], pool.starting)
    environments.add_metric([name, "idle"], len(pool.idle))
    environments.add_metric([name, "busy"], len(pool.busy))
    init_duration = HistogramMetricFamily(
        f"{PREFIX}_runtime_init_duration_seconds",
        "INIT phase of each environment started (provisioned ones included).",
        labels=_FUNCTION,
    )
    add_histogram(init_duration, [name], pool.init_duration)
    return [
        gauge(
            "runtime_concurrent_executions",
            "Invocations running now in the function's execution environments.",
            len(pool.busy),
        ),
        environments,
        counter(
            "runtime_cold_starts_total",
            "Invocations that waited for a new environment's INIT.",
            pool.cold_starts,
        ),
        init_duration,
        counter(
            "runtime_throttles_total",
            "Invocations that found every environment busy and none could be added.",
            pool.throttles,
        ),
        counter(
            "runtime_timeouts_total",
            "Invocations that ran past the timeout (Sandbox.Timedout; the environment ended).",
            pool.ends["timeout"],
        ),
        counter(
            "runtime_out_of_memory_total",
            "Environments ended for going over memory_size (Runtime.OutOfMemory).",
            pool.ends["out_of_memory"],
        ),
        gauge(
            "runtime_max_memory_used_bytes",
            "Highest Max Memory Used of the function's environments (REPORT lines).",
            pool.max_memory,
        ),
    ]
