"""What the Kinesis and DynamoDB Streams sources need of botocore: its errors, described,
and timestamps as epoch seconds."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import parse_timestamp

from bridge.redaction import describe_error, redact_urls_in
from connectors.aws.client import error_code

SDK_ERRORS = (ClientError, BotoCoreError, OSError)


def _epoch_seconds(value: Any) -> float:
    """botocore timestamp parser giving epoch seconds: the JSON protocols send numbers."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(parse_timestamp(value).timestamp())


def parse_timestamps_as_epoch(client: Any) -> None:
    """Have `client` hand out timestamps as epoch seconds instead of datetimes.

    Building a datetime in the local time zone (dateutil's tzlocal) for every record,
    only to turn it back into epoch seconds, costs more than all the rest of a record's
    way through the bridge. The parser factory belongs to the client's own session
    (`aws_client` makes one per client); if botocore ever moves it, timestamps simply
    stay datetimes, which the record builders accept too.
    """
    factory = getattr(getattr(client, "_endpoint", None), "_response_parser_factory", None)
    if factory is not None and hasattr(factory, "set_parser_defaults"):
        factory.set_parser_defaults(timestamp_parser=_epoch_seconds)


def error_detail(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return redact_urls_in(f"{error_code(error)}: {error}")
    return describe_error(error)
