"""The config file: pydantic models, loading with file/line/key errors, offline checks.

Mapping settings carry AWS's event source mapping parameter names in snake_case, with
AWS's defaults and ranges for the source family (esm-reference.md section 2).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, cast

from pydantic import Field, SecretStr, create_model, field_validator

from bridge.config.http_triggers import HttpTriggerConfig
from bridge.config.plugins import (
    BuildContext,
    CheckpointStoreConfig,
    DestinationConfig,
    FunctionConfig,
    Identity,
    PathSetting,
    SourceConfig,
    StrictModel,
)
from bridge.config.registry import registered_names, registered_type


def _default_store() -> CheckpointStoreConfig:
    store: CheckpointStoreConfig = registered_type("checkpoint_stores", "sqlite")()
    return store


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = Field(
        "auto", description="auto: console on a TTY, JSON lines otherwise."
    )


DEFAULT_HTTP_LISTEN = "127.0.0.1:9090"


class HttpConfig(StrictModel):
    """The admin endpoint: /metrics, /healthz, /readyz, POST /reload."""

    enabled: bool = True
    listen: str | None = Field(
        None,
        description="host:port to serve on; default $LAMBDA_BRIDGE_HTTP_LISTEN or "
        f"{DEFAULT_HTTP_LISTEN}. Port 0 picks a free port.",
    )
    token: str | None = Field(
        None,
        description="Bearer token the endpoint requires (default $LAMBDA_BRIDGE_HTTP_TOKEN); "
        "required when listening on anything but loopback.",
    )

    @property
    def address(self) -> str:
        return self.listen or os.environ.get("LAMBDA_BRIDGE_HTTP_LISTEN") or DEFAULT_HTTP_LISTEN

    @property
    def bearer_token(self) -> str | None:
        return self.token or os.environ.get("LAMBDA_BRIDGE_HTTP_TOKEN") or None


DEFAULT_API_LISTEN = "127.0.0.1:9001"


class ApiCredentialsConfig(StrictModel):
    """The one key pair the Lambda API accepts beyond loopback (SigV4)."""

    access_key_id: str = Field(min_length=1, max_length=128)
    secret_access_key: SecretStr = Field(
        description="From ${VAR}; never logged, compared only through SigV4 signatures."
    )

    @field_validator("secret_access_key")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value


class ApiAwsConfig(StrictModel):
    """How the mappings CreateEventSourceMapping makes reach SQS, Kinesis and DynamoDB
    Streams (credentials: the standard AWS chain, as for the config's own sources)."""

    endpoint_url: str | None = Field(
        None, pattern=r"^https?://", description="An emulator (moto, LocalStack); unset: AWS."
    )
    region: str | None = Field(None, description="Default: the region of the source's ARN.")
    profile: str | None = Field(None, description="A named profile of the shared AWS config.")


class ApiConfig(StrictModel):
    """Lambda's API (Invoke) for SDKs and the aws cli pointed at `--endpoint-url`."""

    listen: str = Field(
        DEFAULT_API_LISTEN, description="host:port to serve on. Port 0 picks a free port."
    )
    credentials: ApiCredentialsConfig | None = Field(
        None,
        description="Required beyond loopback, where every request's SigV4 signature is "
        "verified with them; on loopback any credentials are accepted.",
    )
    aws: ApiAwsConfig = Field(
        ApiAwsConfig(), description="Endpoint, region, profile of API-made AWS mappings."
    )


class AwsIdentityConfig(StrictModel):
    region: str = Field(
        "us-east-1",
        description="A region name such as us-east-1 (lower-case letters, digits, dashes).",
    )
    account_id: str = Field("000000000000", pattern=r"^\d{12}$")

    @field_validator("region")
    @classmethod
    def _looks_like_a_region(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", value):
            raise ValueError(f"{value!r} is not a region name such as us-east-1")
        return value


class OnFailureConfig(StrictModel):
    destination: str = Field(description="Name of an entry under `destinations`.")


class DestinationRefConfig(StrictModel):
    on_failure: OnFailureConfig | None = None


class ScalingConfig(StrictModel):
    # AWS's range is 2-1000 (queues); a folder may also run one file at a time.
    maximum_concurrency: int = Field(ge=1, le=1000)


class FilterConfig(StrictModel):
    pattern: str | dict[str, Any] = Field(
        description="An event pattern: JSON text, as AWS takes it, or a YAML mapping."
    )


class FilterCriteriaConfig(StrictModel):
    """AWS's FilterCriteria (esm-reference.md 11): records matching none of the filters
    are settled without reaching the function. No filters: no filtering."""

    filters: list[FilterConfig] = Field(default_factory=list)


class LimitsConfig(StrictModel):
    filters_per_mapping: int = Field(
        5, ge=1, le=10, description="AWS's quota: 5 filters per mapping, raisable to 10."
    )
    concurrent_executions: int = Field(
        1000,
        ge=1,
        le=100000,
        description="Executions at once across the functions without reserved_concurrency "
        "whose invoker bounds its own (runtime environments): AWS's account default, 1000.",
    )


class RetryBackoffConfig(StrictModel):
    """lambda-bridge's own knob: the delay between retries of a failed batch."""

    initial_seconds: float = Field(1.0, gt=0, le=3600)
    max_seconds: float = Field(60.0, gt=0, le=86400)


class MappingConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    function: str
    source: SourceConfig
    enabled: bool = True
    batch_size: int | None = Field(None, ge=1, le=10_000)
    maximum_batching_window_in_seconds: float | None = Field(None, ge=0, le=300)
    parallelization_factor: int | None = Field(None, ge=1, le=10)
    bisect_batch_on_function_error: bool | None = None
    maximum_retry_attempts: int | None = Field(None, ge=-1, le=10_000)
    maximum_record_age_in_seconds: int | None = Field(None, ge=-1, le=604_800)
    tumbling_window_in_seconds: int | None = Field(None, ge=0, le=900)
    function_response_types: list[Literal["ReportBatchItemFailures"]] = Field(
        default_factory=list, max_length=1
    )
    destination_config: DestinationRefConfig | None = None
    scaling_config: ScalingConfig | None = None
    maximum_concurrency: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Shorthand for scaling_config.maximum_concurrency (at least 2 for queues).",
    )
    retry_backoff: RetryBackoffConfig | None = None
    filter_criteria: FilterCriteriaConfig | None = None

    @field_validator("maximum_record_age_in_seconds")
    @classmethod
    def _age_is_unlimited_or_a_minute(cls, value: int | None) -> int | None:
        if value is not None and 0 <= value < 60:
            raise ValueError("must be -1 (no limit) or between 60 and 604800, as on AWS")
        return value

    @property
    def on_failure(self) -> str | None:
        config = self.destination_config
        return config.on_failure.destination if config and config.on_failure else None

    @property
    def filter_patterns(self) -> list[str | dict[str, Any]]:
        criteria = self.filter_criteria
        return [item.pattern for item in criteria.filters] if criteria else []


class BridgeConfig(StrictModel):
    state_dir: PathSetting = Field(
        Path(".lambda-bridge"), description="Checkpoints and other state."
    )
    log: LogConfig = LogConfig()
    http: HttpConfig = HttpConfig()
    api: ApiConfig | None = Field(None, description="Lambda's API; off unless configured.")
    http_triggers: list[HttpTriggerConfig] = Field(
        default_factory=list, description="Routes on the API listener that invoke functions."
    )
    aws: AwsIdentityConfig = Field(
        AwsIdentityConfig(), description="Identity used in ARNs made up for local resources."
    )
    drain_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="On SIGTERM, how long in-flight batches may take to finish.",
    )
    checkpoint_store: CheckpointStoreConfig = Field(
        default_factory=_default_store,
        description="Where stream positions are kept: sqlite (in state_dir) by default.",
    )
    limits: LimitsConfig = LimitsConfig()
    functions: dict[str, FunctionConfig] = Field(min_length=1)
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    mappings: list[MappingConfig] = Field(default_factory=list)

    @property
    def identity(self) -> Identity:
        return Identity(self.aws.region, self.aws.account_id)


# The types a config names, per kind (sources, functions, destinations, checkpoint stores);
# None: every registered type.
UsedTypes = tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]


def used_types(data: dict[str, Any]) -> UsedTypes:
    """The connector types a raw config document names, so that validating it imports
    only their settings classes."""

    def types_in(items: Any, key: str) -> frozenset[str]:
        values = list(items.values()) if isinstance(items, dict) else items
        if not isinstance(values, list):
            return frozenset()
        named = (item.get(key) for item in values if isinstance(item, dict))
        return frozenset(name for name in named if isinstance(name, str))

    mappings = data.get("mappings")
    listed = mappings if isinstance(mappings, list) else []
    sources = [mapping.get("source") for mapping in listed if isinstance(mapping, dict)]
    store = data.get("checkpoint_store")
    return (
        types_in(sources, "type"),
        types_in(data.get("functions"), "invoker"),
        types_in(data.get("destinations"), "type"),
        types_in([store] if isinstance(store, dict) else [], "type") | {"sqlite"},
    )


def _union(kind: str, discriminator: str, names: frozenset[str] | None) -> Any:
    known = registered_names(kind)
    chosen = sorted(known if names is None else names & known.keys()) or [next(iter(known))]
    classes = tuple(registered_type(kind, name) for name in chosen)
    if len(classes) == 1:
        return classes[0]
    return Annotated[Union[classes], Field(discriminator=discriminator)]  # noqa: UP007


@cache
def config_model(used: UsedTypes | None = None) -> type[BridgeConfig]:
    """The root model with the connectors' settings in place: those `used` names (what a
    config file uses), or every registered one."""
    sources, functions_used, destinations_used, stores = used or (None, None, None, None)
    source: Any = _union("sources", "type", sources)
    mapping: Any = create_model("MappingConfig", __base__=MappingConfig, source=(source, ...))
    functions: Any = dict[str, _union("functions", "invoker", functions_used)]  # type: ignore[misc]
    destinations: Any = dict[str, _union("destinations", "type", destinations_used)]  # type: ignore[misc]
    mappings: Any = list[mapping]
    store: Any = _union("checkpoint_stores", "type", stores)
    model = create_model(
        "BridgeConfig",
        __base__=BridgeConfig,
        functions=(functions, Field(min_length=1)),
        destinations=(destinations, Field(default_factory=dict)),
        mappings=(mappings, Field(default_factory=list)),
        checkpoint_store=(
            store,
            Field(default_factory=_default_store),
        ),
    )
    return cast(type[BridgeConfig], model)


@dataclass
class LoadedConfig:
    config: BridgeConfig
    name: str
    handler_root: Path
    # `file:line: key: message` lines about settings that are valid but questionable.
    warnings: list[str] = field(default_factory=list)

    @property
    def build_context(self) -> BuildContext:
        return BuildContext(
            self.config.identity,
            self.config.state_dir,
            self.handler_root,
            self.config.limits.concurrent_executions,
        )
