"""A function's asynchronous settings as they apply now: the config file's `async:`,
overridden by what PutFunctionEventInvokeConfig / UpdateFunctionEventInvokeConfig set
(esm-reference.md 12), and the ARNs the API names destinations by.

An API-made config replaces the file's `maximum_retry_attempts`,
`maximum_event_age_in_seconds` and `destinations` as a whole (a setting it leaves out
takes AWS's default, as Put does on AWS); `dead_letter` and `retry_delay_scale` are not
part of that API and always come from the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.asyncinvoke.destinations import LambdaDestinationConfig
from bridge.config.model import BridgeConfig
from bridge.config.plugins import DestinationConfig

DEFAULT_RETRY_ATTEMPTS = 2
DEFAULT_EVENT_AGE = 21_600


@dataclass(frozen=True, slots=True)
class AsyncSettings:
    maximum_retry_attempts: int = DEFAULT_RETRY_ATTEMPTS
    maximum_event_age_in_seconds: int = DEFAULT_EVENT_AGE
    on_success: str | None = None  # a destination's name, or an ARN no destination has
    on_failure: str | None = None
    dead_letter: str | None = None
    retry_delay_scale: float = 1.0


def destination_arn(config: BridgeConfig, destination: DestinationConfig) -> str | None:
    """The ARN Lambda's API names a configured destination by (a `lambda` destination's:
    its function's); None for the bridge's own kinds (file, kafka, redis-stream), which
    the API names by their config name only."""
    if isinstance(destination, LambdaDestinationConfig):
        function = config.functions.get(destination.function)
        if function is None:
            return None
        return function.arn or config.identity.function_arn(destination.function)
    return destination.arn(config.identity)


def destination_named(config: BridgeConfig, reference: str) -> str | None:
    """The configured destination `reference` names: its name, or its ARN."""
    if reference in config.destinations:
        return reference
    for name, destination in config.destinations.items():
        if destination_arn(config, destination) == reference:
            return name
    return None


def shown(config: BridgeConfig, name: str | None) -> str | None:
    """A destination as the API shows it: its ARN where it has one, else its name."""
    if name is None:
        return None
    destination = config.destinations.get(name)
    if destination is None:
        return name
    return destination_arn(config, destination) or name


def effective(
    config: BridgeConfig, function: str, override: dict[str, Any] | None
) -> AsyncSettings:
    file = config.functions[function].async_
    if override is None:
        return AsyncSettings(
            file.maximum_retry_attempts,
            file.maximum_event_age_in_seconds,
            file.destinations.on_success,
            file.destinations.on_failure,
            file.dead_letter,
            file.retry_delay_scale,
        )
    return AsyncSettings(
        override.get("MaximumRetryAttempts", DEFAULT_RETRY_ATTEMPTS),
        override.get("MaximumEventAgeInSeconds", DEFAULT_EVENT_AGE),
        _named(config, override.get("OnSuccess")),
        _named(config, override.get("OnFailure")),
        file.dead_letter,
        file.retry_delay_scale,
    )


def _named(config: BridgeConfig, arn: str | None) -> str | None:
    if arn is None:
        return None
    return destination_named(config, arn) or arn
