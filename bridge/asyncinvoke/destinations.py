"""The `lambda` destination: another configured function, invoked asynchronously with the
record as its event (esm-reference.md 10.5).

Delivering it means committing the record to that function's own asynchronous queue,
which the daemon's asynchronous service does itself (it owns the queues); this object
only names the function. Mappings cannot use it, as on AWS.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bridge.config.plugins import BuildContext, DestinationConfig
from bridge.errors import PermanentDestinationError
from bridge.protocols import Destination, EventFormatter
from bridge.records import Delivery, FailureRecord


class LambdaDestinationConfig(DestinationConfig):
    type: Literal["lambda"]
    function: str = Field(description="Name of an entry under `functions`.")

    def build(self, name: str, context: BuildContext) -> Destination:
        return FunctionDestination(name, self.function)


class FunctionDestination:
    def __init__(self, name: str, function: str) -> None:
        self.name = name
        self.function = function

    async def start(self) -> None:
        return None

    async def send(self, failure: FailureRecord, formatter: EventFormatter) -> None:
        raise PermanentDestinationError(
            f"destination {self.name!r}: a function takes records of asynchronous "
            "invocations only, not of event source mappings"
        )

    async def deliver(self, delivery: Delivery) -> None:
        raise PermanentDestinationError(
            f"destination {self.name!r}: records for function {self.function!r} are queued "
            "by the asynchronous service, not delivered here"
        )

    async def close(self) -> None:
        return None
