"""Settings of the `eventbridge` destination (no SDK import here)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from bridge.config.plugins import BuildContext, DestinationConfig, Identity
from bridge.protocols import Destination
from connectors.aws.config import AwsConnectionConfig

BUS_ARN = re.compile(
    r"^arn:aws[a-z-]*:events:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):event-bus/(?P<name>[A-Za-z0-9._/-]{1,256})$"
)
BUS_NAME = re.compile(r"^[A-Za-z0-9._/-]{1,256}$")


class EventBridgeDestinationConfig(DestinationConfig, AwsConnectionConfig):
    """Records of asynchronous invocations put on an event bus with Lambda's envelope
    (esm-reference.md 10.5). Asynchronous invocation only: mappings cannot use it, as on
    AWS."""

    type: Literal["eventbridge"]
    event_bus: str = Field(
        "default", description="The bus's name (in the client's region) or its ARN."
    )

    @field_validator("event_bus")
    @classmethod
    def _name_or_arn(cls, value: str) -> str:
        if value.startswith("arn:"):
            if BUS_ARN.match(value) is None:
                raise ValueError(
                    f"{value!r} is not an event bus ARN "
                    "(arn:aws:events:<region>:<account>:event-bus/<name>)"
                )
        elif BUS_NAME.match(value) is None:
            raise ValueError(f"{value!r} is not an event bus name")
        return value

    def bus_region(self, identity: Identity) -> str:
        """`region` if set, else the bus ARN's, else the environment's or aws.region."""
        match = BUS_ARN.match(self.event_bus)
        if self.region is None and match is not None:
            return match["region"]
        return self.region_or(identity.region)

    def arn(self, identity: Identity) -> str | None:
        return self.bus_arn(identity)

    def bus_arn(self, identity: Identity) -> str:
        if BUS_ARN.match(self.event_bus):
            return self.event_bus
        region = self.bus_region(identity)
        return f"arn:aws:events:{region}:{identity.account_id}:event-bus/{self.event_bus}"

    def build(self, name: str, context: BuildContext) -> Destination:
        from connectors.eventbridge.destination import EventBridgeDestination

        return EventBridgeDestination(name, self, context.identity)
