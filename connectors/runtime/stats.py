"""The runtime invoker's metric families, per function, for `/metrics`
(bridge.metrics.Family): what the pool of the function has seen since it started."""

from __future__ import annotations

from bridge.metrics import Family
from connectors.runtime.pool import EnvironmentPool


def families(name: str, pool: EnvironmentPool) -> list[Family]:
    function = {"function": name}
    by_state = [
        ({**function, "state": "starting"}, float(pool.starting)),
        ({**function, "state": "idle"}, float(len(pool.idle))),
        ({**function, "state": "busy"}, float(len(pool.busy))),
    ]
    return [
        Family(
            "runtime_concurrent_executions",
            "gauge",
            "Invocations running now in the function's execution environments.",
            [(function, float(len(pool.busy)))],
        ),
        Family(
            "runtime_environments",
            "gauge",
            "Execution environments by state (starting: in INIT; idle: warm; busy).",
            by_state,
        ),
        Family(
            "runtime_cold_starts_total",
            "counter",
            "Invocations that waited for a new environment's INIT.",
            [(function, float(pool.cold_starts))],
        ),
        Family(
            "runtime_init_duration_seconds",
            "histogram",
            "INIT phase of each environment started (provisioned ones included).",
            [(function, pool.init_duration)],
        ),
        Family(
            "runtime_throttles_total",
            "counter",
            "Invocations that found every environment busy and none could be added.",
            [(function, float(pool.throttles))],
        ),
        Family(
            "runtime_timeouts_total",
            "counter",
            "Invocations that ran past the timeout (Sandbox.Timedout; the environment ended).",
            [(function, float(pool.ends["timeout"]))],
        ),
        Family(
            "runtime_out_of_memory_total",
            "counter",
            "Environments ended for going over memory_size (Runtime.OutOfMemory).",
            [(function, float(pool.ends["out_of_memory"]))],
        ),
        Family(
            "runtime_max_memory_used_bytes",
            "gauge",
            "Highest Max Memory Used of the function's environments (REPORT lines).",
            [(function, float(pool.max_memory))],
        ),
    ]
