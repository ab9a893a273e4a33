"""The event source mapping parameters (esm-reference.md 2) that are one mapping setting
each, as they are: Lambda's API (bridge.frontdoor) and imported templates
(bridge.importing) both read them."""

from __future__ import annotations

# AWS's parameter -> the config file's key.
SCALAR_SETTINGS = {
    "Enabled": "enabled",
    "BatchSize": "batch_size",
    "MaximumBatchingWindowInSeconds": "maximum_batching_window_in_seconds",
    "ParallelizationFactor": "parallelization_factor",
    "BisectBatchOnFunctionError": "bisect_batch_on_function_error",
    "MaximumRetryAttempts": "maximum_retry_attempts",
    "MaximumRecordAgeInSeconds": "maximum_record_age_in_seconds",
    "TumblingWindowInSeconds": "tumbling_window_in_seconds",
    "FunctionResponseTypes": "function_response_types",
}
