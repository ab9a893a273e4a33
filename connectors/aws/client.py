"""aioboto3 clients, the AWS error tree mapped onto the bridge's, and the real-AWS banner.

SDK retries are kept to a minimum: the bridge's own backoff decides what is retried and
when. Throttling, server errors and connection problems are retriable; access denied,
bad credentials and missing resources are permanent: the mapping fails with the reason
and the other mappings go on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioboto3
import structlog
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from bridge.errors import BridgeError
from bridge.redaction import redact_url, redact_urls_in
from connectors.aws.config import AwsConnectionConfig

THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "KMSThrottlingException",
    }
)
PERMANENT = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "MissingAuthenticationToken",
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NoSuchBucket",
        "NotFound",
        "InvalidAccessKeyId",
        "KMS.AccessDeniedException",
    }
)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def is_retriable(error: BaseException) -> bool:
    """Whether waiting and trying again can help."""
    if isinstance(error, ClientError):
        code = error_code(error)
        if code in THROTTLING:
            return True
        if code in PERMANENT:
            return False
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return status >= 500 or status == 0
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return False
    return isinstance(error, BotoConnectionError | HTTPClientError | BotoCoreError | OSError)


@contextlib.contextmanager
def aws_errors(
    where: str, doing: str, *, retriable: type[BridgeError], permanent: type[BridgeError]
) -> Iterator[None]:
    """Raise SDK failures as `retriable` or `permanent` bridge errors, saying what failed."""
    try:
        yield
    except BridgeError:
        raise
    except (ClientError, BotoCoreError, OSError) as exc:
        detail = redact_urls_in(
            f"{error_code(exc)}: {exc}"
            if isinstance(exc, ClientError)
            else str(exc) or type(exc).__name__
        )
        kind = retriable if is_retriable(exc) else permanent
        raise kind(f"{where}: {doing} failed: {detail}") from exc


_SESSIONS: dict[str | None, aioboto3.Session] = {}


def session(config: AwsConnectionConfig) -> aioboto3.Session:
    """One session per profile, shared by every client the daemon makes.

    A session caches the service models and endpoint data it has loaded; with one session
    per client, each mapping parsed them anew on the event loop (94 ms of CPU per client
    against 5.5 ms shared, measured here: a daemon with 36 SQS mappings stalled for seconds
    at start and its first receives outlived short visibility timeouts).
    """
    shared = _SESSIONS.get(config.profile)
    if shared is None:
        shared = (
            aioboto3.Session(profile_name=config.profile) if config.profile else aioboto3.Session()
        )
        _SESSIONS[config.profile] = shared
    return shared


@contextlib.asynccontextmanager
async def aws_client(
    config: AwsConnectionConfig, service: str, fallback_region: str, *, read_timeout: float = 70.0
) -> AsyncIterator[Any]:
    """An aioboto3 client that makes one attempt per call (the bridge's backoff retries)
    and has bounded timeouts."""
    settings = BotoConfig(
        # total_max_attempts counts the first attempt too (max_attempts would add a retry).
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=read_timeout,
        max_pool_connections=64,
    )
    async with session(config).client(
        service,
        region_name=config.region_or(fallback_region),
        endpoint_url=config.endpoint_url,
        config=settings,
    ) as client:
        yield client


# Service names as in botocore's AWS_ENDPOINT_URL_<NAME> variables, where they differ.
_ENV_SERVICE_NAMES = {"dynamodbstreams": "DYNAMODB_STREAMS"}


def endpoint_from_environment(service: str) -> str | None:
    """The endpoint botocore takes from AWS_ENDPOINT_URL_<SERVICE> or AWS_ENDPOINT_URL."""
    suffix = _ENV_SERVICE_NAMES.get(service.lower(), service.upper())
    return os.environ.get(f"AWS_ENDPOINT_URL_{suffix}") or os.environ.get("AWS_ENDPOINT_URL")


def announce_endpoint(
    log: Any, config: AwsConnectionConfig, service: str, resource: str, region: str
) -> None:
    """One prominent line when a connector talks to real AWS rather than an emulator."""
    endpoint = config.endpoint_url or endpoint_from_environment(service)
    if endpoint is None:
        structlog.get_logger("connectors.aws").warning(
            "aws.real_endpoint",
            service=service,
            resource=resource,
            region=region,
            message=f"REAL AWS: this mapping reads and changes {service} {resource}",
        )
    else:
        log.info("aws.endpoint", service=service, endpoint_url=redact_url(endpoint))
