"""A mapping's effective settings: AWS's per-family defaults applied."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config.model import MappingConfig
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.dispatch import RetryPolicy
from bridge.retry import Backoff


@dataclass(frozen=True)
class MappingSettings:
    batch: BatchPolicy
    retry: RetryPolicy
    parallelization_factor: int
    maximum_concurrency: int
    tumbling_window: int = 0
    # One keyed lane (bridge.pipeline.keyed_lanes) rather than one lane per partition.
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
