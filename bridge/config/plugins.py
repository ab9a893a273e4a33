"""Connector plug-in points: the base config models, what they are built with, and the
registry that finds them by type name.

A connector declares its settings as a pydantic model next to its code; the model's
`build` imports the implementation lazily, so validating a config never imports a
service SDK. Third-party connectors register through the entry point groups
`lambda_bridge.sources`, `lambda_bridge.functions`, `lambda_bridge.destinations` and
`lambda_bridge.checkpoint_stores`
(value: `module:ConfigClass`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from bridge.config.versions import AliasConfig, AliasName, VersionOverrides
from bridge.config.yamlsource import Reference
from bridge.filtering.criteria import DataKey
from bridge.protocols import CheckpointStore, Destination, Invoker, Source

ConfigPath = tuple[str | int, ...]


class StrictModel(BaseModel):
    """Rejects unknown keys, so a typo is an error rather than a silently ignored setting.

    Types are strict: a boolean is never a number, a string never a number or a boolean,
    a float never an integer (an integer is a float). Where a number or a boolean is
    expected, a value written as nothing but a `${VAR}` reference is read as YAML reads
    the substituted text.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _read_references_as_scalars(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        typed = {
            name: value.scalar()
            for name in _scalar_fields(cls)
            if isinstance(value := data.get(name), Reference)
        }
        return {**data, **typed} if typed else data


@cache
def _scalar_fields(model: type[BaseModel]) -> frozenset[str]:
    """Fields that take a number or a boolean, and no string."""
    return frozenset(
        name
        for name, field in model.model_fields.items()
        if (kinds := _kinds(field.annotation)) & {int, float, bool} and str not in kinds
    )


def _kinds(annotation: Any) -> set[Any]:
    arguments = get_args(annotation)
    if not arguments:
        return {annotation}
    if get_origin(annotation) is Annotated:
        return _kinds(arguments[0])
    if get_origin(annotation) in (Union, UnionType):
        return {kind for argument in arguments for kind in _kinds(argument)}
    return {get_origin(annotation)}


def _not_empty(value: Any) -> Any:
    if value == "":
        raise ValueError("must not be empty (write . for the folder the daemon runs in)")
    return value


# A path is written as a string in YAML; an empty one would quietly mean ".".
PathSetting = Annotated[Path, Strict(False), BeforeValidator(_not_empty)]


@dataclass(frozen=True)
class Identity:
    """The account and region written into ARNs the bridge makes up for local resources."""

    region: str = "us-east-1"
    account_id: str = "000000000000"

    def function_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"


@dataclass(frozen=True)
class SourceFamily:
    """Defaults, limits and applicable settings shared by a kind of source
    (esm-reference.md section 2)."""

    name: str
    batch_size_default: int
    batch_size_max: int
    window_default: float
    window_from_first_record: bool
    settings: frozenset[str]
    # Unlimited retries with an on-failure destination are capped at this (Kafka: 10).
    retry_cap_with_destination: int | None = None
    # Defaults of settings the mapping leaves unset (-1: unlimited).
    retry_attempts_default: int = -1
    record_age_default: int = -1
    concurrency_default: int = 5
    concurrency_min: int = 2
    # Records in order per key, keys independent, up to `maximum_concurrency` batches at
    # once (bridge.pipeline.keyed_lanes), instead of one lane per partition.
    keyed: bool = False


_COMMON = frozenset({"batch_size", "maximum_batching_window_in_seconds", "function_response_types"})
_STREAM_ERRORS = frozenset(
    {
        "bisect_batch_on_function_error",
        "maximum_retry_attempts",
        "maximum_record_age_in_seconds",
        "destination_config",
        "retry_backoff",
    }
)

QUEUE = SourceFamily(
    "queue", 10, 10_000, 0.0, False, _COMMON | {"scaling_config", "maximum_concurrency"}
)
STREAM = SourceFamily(
    "stream", 100, 10_000, 0.0, False, _COMMON | _STREAM_ERRORS | {"parallelization_factor"}
)
# Kinesis and DynamoDB Streams also take tumbling windows (esm-reference.md 1.9).
AWS_STREAM = SourceFamily(
    "stream",
    100,
    10_000,
    0.0,
    False,
    _COMMON | _STREAM_ERRORS | {"parallelization_factor", "tumbling_window_in_seconds"},
)
# A folder's files, as S3 invokes Lambda: each object's events on their own, asynchronously,
# retried twice, for at most six hours (esm-reference.md 1.10, 12).
FILES = SourceFamily(
    "files",
    1,
    10_000,
    0.0,
    False,
    _COMMON | _STREAM_ERRORS | {"scaling_config", "maximum_concurrency"},
    retry_attempts_default=2,
    record_age_default=21_600,
    concurrency_default=10,
    concurrency_min=1,
    keyed=True,
)
KAFKA = SourceFamily(
    "kafka", 100, 10_000, 0.5, True, _COMMON | _STREAM_ERRORS, retry_cap_with_destination=10
)
# Amazon MQ (esm-reference.md 2, 3, 8, 13): batches of up to 10,000 records, 100 by
# default, gathered for 0.5 s from the first record; filters apply; no response types,
# retries, bisecting or destinations (a failed batch is retried whole until it succeeds
# or the broker gives its messages up). ActiveMQ runs up to 5 batches at once; RabbitMQ
# takes this with a concurrency of 1 (connectors/rabbitmq/config.py).
AMAZON_MQ = SourceFamily(
    "mq",
    100,
    10_000,
    0.5,
    True,
    frozenset(
        {
            "batch_size",
            "maximum_batching_window_in_seconds",
            "scaling_config",
            "maximum_concurrency",
        }
    ),
    concurrency_default=5,
    concurrency_min=1,
)


@dataclass
class SourceContext:
    """What a source is built with."""

    mapping: str
    identity: Identity
    checkpoints: CheckpointStore
    state_dir: Path
    parallelization_factor: int = 1
    batch_size: int = 100
    maximum_concurrency: int = 5
    function_timeout: float = 3.0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildContext:
    """What functions and destinations are built with."""

    identity: Identity
    state_dir: Path
    handler_root: Path
    # limits.concurrent_executions: shared by the functions without reserved concurrency.
    concurrent_executions: int = 1000
    # The version of the function an invoker is built for (bridge.config.versions).
    function_version: str = "$LATEST"

    def function_arn(self, name: str, configured: str | None) -> str:
        """The ARN the handler is told (its configured `arn`, else a made-up one), qualified
        with the version it runs unless that is $LATEST, as Lambda qualifies a version's."""
        arn = configured or self.identity.function_arn(name)
        return arn if self.function_version == "$LATEST" else f"{arn}:{self.function_version}"


class SourceConfig(StrictModel):
    type: str
    family: ClassVar[SourceFamily] = STREAM
    # Where filter patterns find the record's payload (esm-reference.md 11.2); None:
    # patterns match the record as the function receives it, with nothing decoded.
    filter_data_key: ClassVar[DataKey | None] = None
    # Whether the source keeps its positions in the daemon's checkpoint store (so a store
    # that cannot write makes the mapping Degraded); Kafka, Redis and SQS settle with
    # their broker instead.
    checkpoints_in_store: ClassVar[bool] = False

    def check(self) -> list[tuple[ConfigPath, str]]:
        """Problems only this source can see, as (path below `source`, message)."""
        return []

    def cautions(self) -> list[tuple[ConfigPath, str]]:
        """Settings that work here but not as on AWS, as (path below `source`, message):
        `validate` and `run` show them as warnings."""
        return []

    def check_mapping(self, mapping: Any) -> list[tuple[ConfigPath, str]]:
        """Problems of the mapping's settings that depend on this source (e.g. SQS's
        batching window rule), as (path below the mapping, message)."""
        return []

    def source_id(self) -> str:
        """Names what is read, so checkpoints of a changed source are not reused."""
        raise NotImplementedError

    def api_description(self, mapping: str, identity: Identity) -> dict[str, Any]:
        """This source's part of Lambda's EventSourceMappingConfiguration (esm-reference.md
        16): `EventSourceArn`, `StartingPosition`, `Topics`, ... ; {} for a source AWS has
        no name for."""
        return {}

    async def check_exists(self, identity: Identity) -> str | None:
        """Asked of the service when the API makes a mapping: None if what it reads exists
        (or cannot be asked), else why not, in Lambda's words (esm-reference.md 16)."""
        return None

    def destination_for(self, reference: str) -> DestinationConfig | None:
        """An on-failure destination named by URI that this source provides (Kafka's
        `kafka://topic` on the source's own cluster); None if it is not one of its URIs.
        Raise ValueError if it is one, but not allowed."""
        return None

    def build(self, context: SourceContext) -> Source:
        raise NotImplementedError

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        """An example event with `count` records, built by the source's real formatter."""
        raise NotImplementedError


def check_start_timestamp(starting_position: str, timestamp: float | None) -> None:
    """`starting_position_timestamp` goes with AT_TIMESTAMP, and only with it, and is not
    in the future (esm-reference.md 2). Raises ValueError for a model validator."""
    at_timestamp = starting_position == "AT_TIMESTAMP"
    if at_timestamp and timestamp is None:
        raise ValueError("starting_position AT_TIMESTAMP needs starting_position_timestamp")
    if not at_timestamp and timestamp is not None:
        raise ValueError("starting_position_timestamp goes with starting_position AT_TIMESTAMP")
    if timestamp is not None and timestamp > time.time():
        raise ValueError("starting_position_timestamp cannot be in the future")


class AsyncDestinationsConfig(StrictModel):
    on_success: str | None = Field(None, description="Name of an entry under `destinations`.")
    on_failure: str | None = Field(None, description="Name of an entry under `destinations`.")


class AsyncConfig(StrictModel):
    """Asynchronous invocation of the function (esm-reference.md 12)."""

    maximum_retry_attempts: int = Field(
        2, ge=0, le=2, description="Retries after a function error: 0 to 2, as on AWS."
    )
    maximum_event_age_in_seconds: int = Field(
        21_600, ge=60, le=21_600, description="How long an event may wait, in real seconds."
    )
    destinations: AsyncDestinationsConfig = AsyncDestinationsConfig()
    dead_letter: str | None = Field(
        None, description="An sqs or sns destination that receives the original event."
    )
    retry_delay_scale: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Multiplies the retry waits (1 and 2 minutes, backoff of 1 s to 5 min); "
        "0.01 for local development. The event age is never scaled.",
    )


class FunctionConfig(StrictModel):
    invoker: str
    # The handler runs inside the daemon, so it can end the daemon (bridge.pipeline.journal).
    in_process: ClassVar[bool] = False
    # The invoker bounds its own concurrency to `reserved_concurrency` (and counts its
    # throttles), so the daemon does not queue callers in front of it.
    limits_its_concurrency: ClassVar[bool] = False
    timeout: float = Field(
        3.0, gt=0, le=900, description="Seconds; Lambda's default is 3, the maximum 900."
    )
    memory_size: int = Field(128, ge=128, le=10240, description="MB, reported to the handler.")
    reserved_concurrency: int | None = Field(
        None,
        ge=0,
        le=10000,
        description="At most this many invocations at once across all mappings; further ones "
        "wait. 0: every synchronous Invoke is throttled, asynchronous events go straight to "
        "their failure destinations, mappings wait.",
    )
    arn: str | None = Field(None, description="ARN reported to the handler and in failure records.")
    versions: VersionOverrides = Field(
        default_factory=dict,
        description=(
            'Versions ("1", "2", ...) and the settings each replaces (bridge.config.versions).'
        ),
    )
    aliases: dict[AliasName, AliasConfig] = Field(
        default_factory=dict, description="Names for versions, optionally weighted."
    )
    # `async` is a Python keyword: the field is async_, written `async:` in the file.
    async_: AsyncConfig = Field(default_factory=AsyncConfig, alias="async")

    def build(self, name: str, context: BuildContext) -> Invoker:
        raise NotImplementedError

    def check(self, context: BuildContext) -> list[tuple[ConfigPath, str]]:
        """Offline checks (files exist, commands resolve) without running anything."""
        return []


class DestinationConfig(StrictModel):
    type: str

    def local_paths(self) -> list[Path]:
        """Folders this destination writes to; folder sources never watch them."""
        return []

    def check(self) -> list[tuple[ConfigPath, str]]:
        """Offline checks (a folder can be written) without connecting to anything."""
        return []

    def arn(self, identity: Identity) -> str | None:
        """The ARN AWS names this destination by (Lambda's API names destinations by
        ARN); None for the bridge's own kinds (file, kafka, redis-stream)."""
        return None

    def build(self, name: str, context: BuildContext) -> Destination:
        raise NotImplementedError


class CheckpointStoreConfig(StrictModel):
    type: str

    def build(self, context: BuildContext) -> CheckpointStore:
        raise NotImplementedError
