"""A mapping as Lambda's EventSourceMappingConfiguration (esm-reference.md 2 and 16).

The fields and the defaults shown are those AWS answers for the source type (the
recordings in conformance/esm-snapshots): an SQS mapping shows its batching, response
types, filters and scaling; a Kinesis or DynamoDB Streams mapping also its error
handling (retries, record age, bisect, tumbling window, `DestinationConfig` with an empty
`OnFailure` when it has none) and `LastProcessingResult`; a Kafka mapping its topic,
brokers, consumer group and what was set. `State` is `Enabled` or `Disabled`: a mapping
that fails is still `Enabled`, its `LastProcessingResult` says `PROBLEM: ...`.
"""

from __future__ import annotations

from typing import Any

from bridge.asyncinvoke.settings import destination_arn
from bridge.codec import dumps
from bridge.config.model import BridgeConfig, MappingConfig
from bridge.frontdoor.esm_params import PARAMETERS
from bridge.ops.metrics import NO_RECORDS
from bridge.pipeline.mapping import MappingRunner, MappingState

# What AWS says changed a mapping's state (esm-reference.md 16).
STREAM_REASON = "User action"
QUEUE_REASON = "USER_INITIATED"
_STREAM_FIELDS = (
    "parallelization_factor",
    "maximum_record_age_in_seconds",
    "maximum_retry_attempts",
    "bisect_batch_on_function_error",
    "tumbling_window_in_seconds",
    "destination_config",
)


def mapping_arn(config: BridgeConfig, mapping_uuid: str) -> str:
    identity = config.identity
    return (
        f"arn:aws:lambda:{identity.region}:{identity.account_id}:event-source-mapping:"
        f"{mapping_uuid}"
    )


def function_arn(config: BridgeConfig, function: str) -> str:
    configured = config.functions.get(function)
    return (configured.arn if configured else None) or config.identity.function_arn(function)


def _whole(seconds: float) -> float | int:
    return int(seconds) if float(seconds).is_integer() else seconds


def _value(config: BridgeConfig, mapping: MappingConfig, key: str) -> Any:
    family = mapping.source.family
    if key == "batch_size":
        return mapping.batch_size or family.batch_size_default
    if key == "maximum_batching_window_in_seconds":
        window = mapping.maximum_batching_window_in_seconds
        return _whole(family.window_default if window is None else window)
    if key == "parallelization_factor":
        return mapping.parallelization_factor or 1
    if key == "maximum_record_age_in_seconds":
        age = mapping.maximum_record_age_in_seconds
        return family.record_age_default if age is None else age
    if key == "maximum_retry_attempts":
        retries = mapping.maximum_retry_attempts
        return family.retry_attempts_default if retries is None else retries
    if key == "bisect_batch_on_function_error":
        return bool(mapping.bisect_batch_on_function_error)
    if key == "tumbling_window_in_seconds":
        return mapping.tumbling_window_in_seconds or 0
    if key == "function_response_types":
        return list(mapping.function_response_types)
    if key == "destination_config":
        target = mapping.on_failure
        if target is None:
            return {"OnFailure": {}}
        destination = config.destinations.get(target)
        arn = destination_arn(config, destination) if destination is not None else None
        return {"OnFailure": {"Destination": arn or target}}
    raise KeyError(key)


def _shown(mapping: MappingConfig) -> list[str]:
    family = mapping.source.family
    if family.name == "kafka":  # AWS shows what was set, and the batch size
        keys = ["batch_size"] + [
            key
            for key in PARAMETERS
            if key in mapping.model_fields_set and key in family.settings and key != "batch_size"
        ]
        return keys
    keys = ["batch_size", "maximum_batching_window_in_seconds", "function_response_types"]
    return keys + [key for key in _STREAM_FIELDS if key in family.settings]


def state_of(mapping: MappingConfig, runner: MappingRunner | None) -> str:
    if runner is None:
        return "Enabled" if mapping.enabled else "Disabled"
    return "Disabled" if runner.state is MappingState.DISABLED else "Enabled"


def _processing(runner: MappingRunner | None, mapping: MappingConfig) -> str:
    if runner is None:
        return "PROBLEM: the mapping could not be started (see the daemon's log)"
    if runner.state is MappingState.FAILED:
        return f"PROBLEM: {runner.state_reason}"
    return runner.metrics.last_processing_result if mapping.enabled else NO_RECORDS


def describe(
    config: BridgeConfig,
    mapping: MappingConfig,
    *,
    mapping_uuid: str,
    runner: MappingRunner | None,
    last_modified: float,
    state: str | None = None,
) -> dict[str, Any]:
    """The mapping's EventSourceMappingConfiguration; `state` overrides the state shown
    (the transitional states of Create, Update and Delete)."""
    family = mapping.source.family
    described: dict[str, Any] = {
        "UUID": mapping_uuid,
        "EventSourceMappingArn": mapping_arn(config, mapping_uuid),
        "FunctionArn": function_arn(config, mapping.function),
        **mapping.source.api_description(mapping.name, config.identity),
        "State": state or state_of(mapping, runner),
        "StateTransitionReason": STREAM_REASON if family.name == "stream" else QUEUE_REASON,
        "LastModified": last_modified,
    }
    for key in _shown(mapping):
        described[PARAMETERS[key]] = _value(config, mapping, key)
    if mapping.filter_criteria is not None and mapping.filter_criteria.filters:
        described["FilterCriteria"] = {
            "Filters": [
                {"Pattern": item.pattern if isinstance(item.pattern, str) else _json(item.pattern)}
                for item in mapping.filter_criteria.filters
            ]
        }
    concurrency = mapping.maximum_concurrency or (
        mapping.scaling_config.maximum_concurrency if mapping.scaling_config else None
    )
    if concurrency is not None:
        described["ScalingConfig"] = {"MaximumConcurrency": concurrency}
    result = _processing(runner, mapping)
    if family.name != "queue" or result.startswith("PROBLEM"):
        described["LastProcessingResult"] = result
    return described


def _json(pattern: Any) -> str:
    return dumps(pattern).decode()
