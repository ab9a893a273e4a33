"""A mapping's effective settings: AWS's per-family defaults applied, conflicts found."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.batching import BatchPolicy
from bridge.config import MappingConfig
from bridge.dispatch import RetryPolicy
from bridge.retry import Backoff

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


@dataclass(frozen=True)
class MappingSettings:
    batch: BatchPolicy
    retry: RetryPolicy
    parallelization_factor: int
    maximum_concurrency: int
    tumbling_window: int = 0
    # One keyed lane (bridge.keyed_lanes) rather than one lane per partition.
    keyed: bool = False


def resolve(mapping: MappingConfig) -> MappingSettings:
    """Apply the family's defaults to what the mapping leaves unset."""
    family = mapping.source.family
    backoff_config = mapping.retry_backoff
    backoff = (
        Backoff(backoff_config.initial_seconds, backoff_config.max_seconds)
        if backoff_config
        else Backoff()
    )
    window = mapping.maximum_batching_window_in_seconds
    concurrency = mapping.maximum_concurrency or (
        mapping.scaling_config.maximum_concurrency
        if mapping.scaling_config
        else family.concurrency_default
    )
    retries = (
        family.retry_attempts_default
        if mapping.maximum_retry_attempts is None
        else mapping.maximum_retry_attempts
    )
    age = (
        family.record_age_default
        if mapping.maximum_record_age_in_seconds is None
        else mapping.maximum_record_age_in_seconds
    )
    if retries == -1 and mapping.on_failure and family.retry_cap_with_destination is not None:
        # Kafka: unlimited retries with an on-failure destination are capped (esm-reference.md 7).
        retries = family.retry_cap_with_destination
    return MappingSettings(
        batch=BatchPolicy(
            max_records=mapping.batch_size or family.batch_size_default,
            window=family.window_default if window is None else window,
            window_from_first_record=family.window_from_first_record,
        ),
        retry=RetryPolicy(
            maximum_retry_attempts=retries,
            maximum_record_age_in_seconds=age,
            bisect_batch_on_function_error=bool(mapping.bisect_batch_on_function_error),
            report_batch_item_failures="ReportBatchItemFailures" in mapping.function_response_types,
            backoff=backoff,
        ),
        parallelization_factor=mapping.parallelization_factor or 1,
        maximum_concurrency=concurrency,
        tumbling_window=mapping.tumbling_window_in_seconds or 0,
        keyed=family.keyed,
    )
