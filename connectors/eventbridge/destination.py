"""The `eventbridge` destination: one PutEvents entry per asynchronous invocation record.

The entry is Lambda's envelope (esm-reference.md 10.5): source `lambda`, detail-type
`Lambda Function Invocation Result - Success` or `- Failure`, resources the bus's ARN
and the function's, the record as the detail. An entry the bus refuses
(`FailedEntryCount`) is a retriable failure: the event stays queued and is sent again.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog

from bridge.config.plugins import Identity
from bridge.errors import BridgeError, DestinationError, PermanentDestinationError
from bridge.protocols import EventFormatter
from bridge.records import Delivery, FailureRecord
from connectors.aws.client import announce_endpoint, aws_client, aws_errors
from connectors.eventbridge.config import EventBridgeDestinationConfig

SOURCE = "lambda"
DETAIL_TYPES = {
    True: "Lambda Function Invocation Result - Success",
    False: "Lambda Function Invocation Result - Failure",
}
READ_TIMEOUT_SECONDS = 30.0


class _Unreachable(BridgeError):
    """The service did not answer; deliver() will try again."""


class EventBridgeDestination:
    def __init__(self, name: str, config: EventBridgeDestinationConfig, identity: Identity) -> None:
        self.name = name
        self.event_bus = config.event_bus
        self.bus_arn = config.bus_arn(identity)
        self._connection = config.connection().model_copy(
            update={"region": config.bus_region(identity)}
        )
        self._where = f"destination {name!r} (event bus {config.event_bus})"
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._log = structlog.get_logger("connectors.eventbridge").bind(
            destination=name, event_bus=config.event_bus
        )

    async def start(self) -> None:
        """Open the client and check the bus (DescribeEventBus): a missing bus or denied
        access fails here; an unreachable service is only logged."""
        region = self._connection.region_or("us-east-1")
        announce_endpoint(
            self._log, self._connection, "events", f"event bus {self.event_bus}", region
        )
        self._client = await self._stack.enter_async_context(
            aws_client(self._connection, "events", region, read_timeout=READ_TIMEOUT_SECONDS)
        )
        try:
            with aws_errors(
                self._where,
                "DescribeEventBus",
                retriable=_Unreachable,
                permanent=PermanentDestinationError,
            ):
                await self._client.describe_event_bus(Name=self.event_bus)
        except _Unreachable as exc:
            self._log.warning("eventbridge.destination_unreachable", error=str(exc))

    async def send(self, failure: FailureRecord, formatter: EventFormatter) -> None:
        raise PermanentDestinationError(
            f"{self._where}: an event bus takes records of asynchronous invocations only, "
            "not of event source mappings"
        )

    def entry(self, delivery: Delivery) -> dict[str, Any]:
        return {
            "Source": SOURCE,
            "DetailType": DETAIL_TYPES[delivery.success is not False],
            "Detail": delivery.body.decode(),
            "EventBusName": self.event_bus,
            "Resources": [self.bus_arn, delivery.function_arn],
        }

    async def deliver(self, delivery: Delivery) -> None:
        client = self._client
        assert client is not None, "start() was not called"
        with aws_errors(
            self._where,
            "PutEvents",
            retriable=DestinationError,
            permanent=PermanentDestinationError,
        ):
            answer = await client.put_events(Entries=[self.entry(delivery)])
        if answer.get("FailedEntryCount"):
            [failed] = answer["Entries"]
            raise DestinationError(
                f"{self._where}: PutEvents refused the record: "
                f"{failed.get('ErrorCode')}: {failed.get('ErrorMessage')}"
            )

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()
