"""Settings that a mapping's source family does not take, or takes only within its limits."""

from __future__ import annotations

from bridge.config.model import MappingConfig

# Settings whose presence depends on the source family.
_FAMILY_SETTINGS = (
    "batch_size",
    "maximum_batching_window_in_seconds",
    "parallelization_factor",
    "bisect_batch_on_function_error",
    "maximum_retry_attempts",
    "maximum_record_age_in_seconds",
    "function_response_types",
    "tumbling_window_in_seconds",
    "destination_config",
    "scaling_config",
    "maximum_concurrency",
    "retry_backoff",
)


def check_mapping_settings(mapping: MappingConfig) -> list[tuple[tuple[str | int, ...], str]]:
    family = mapping.source.family
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for name in _FAMILY_SETTINGS:
        if name in mapping.model_fields_set and name not in family.settings:
            problems.append(((name,), f"does not apply to {mapping.source.type} sources"))
    if mapping.batch_size is not None and mapping.batch_size > family.batch_size_max:
        problems.append(
            (
                ("batch_size",),
                f"must be at most {family.batch_size_max} for {mapping.source.type} sources",
            )
        )
    concurrency = mapping.maximum_concurrency or (
        mapping.scaling_config.maximum_concurrency if mapping.scaling_config else None
    )
    if concurrency is not None and concurrency < family.concurrency_min:
        key = "maximum_concurrency" if mapping.maximum_concurrency else "scaling_config"
        problems.append(
            (
                (key,) if key == "maximum_concurrency" else (key, "maximum_concurrency"),
                f"must be at least {family.concurrency_min} for {mapping.source.type} sources",
            )
        )
    if mapping.scaling_config is not None and mapping.maximum_concurrency is not None:
        problems.append(
            (
                ("maximum_concurrency",),
                "set either maximum_concurrency or scaling_config.maximum_concurrency, not both",
            )
        )
    if (mapping.tumbling_window_in_seconds or 0) > 0 and (mapping.parallelization_factor or 1) > 1:
        problems.append(
            (
                ("tumbling_window_in_seconds",),
                "needs parallelization_factor 1: a window is kept per shard",
            )
        )
    backoff = mapping.retry_backoff
    if backoff is not None and backoff.max_seconds < backoff.initial_seconds:
        problems.append((("retry_backoff", "max_seconds"), "must not be below initial_seconds"))
    return problems
