"""Settings of the `sns` on-failure destination (no SDK import here)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from bridge.config.plugins import BuildContext, DestinationConfig, Identity
from bridge.protocols import Destination
from connectors.aws.config import AwsConnectionConfig

# arn:<partition>:sns:<region>:<account>:<topic name>
TOPIC_ARN = re.compile(
    r"^arn:aws[a-z-]*:sns:(?P<region>[a-z]{2}(-[a-z]+)+-\d+):\d{12}:(?P<name>[A-Za-z0-9_.-]{1,256})$"
)


class SnsDestinationConfig(DestinationConfig, AwsConnectionConfig):
    """Failure records published to a standard SNS topic: metadata only, as on AWS
    (esm-reference.md 10.1)."""

    type: Literal["sns"]
    topic_arn: str = Field(description="ARN of a standard (not FIFO) topic.")

    @field_validator("topic_arn")
    @classmethod
    def _standard_topic(cls, topic_arn: str) -> str:
        """AWS takes only standard topics as on-failure destinations (esm-reference.md 10.1)."""
        match = TOPIC_ARN.match(topic_arn)
        if match is None:
            raise ValueError(
                f"{topic_arn!r} is not a topic ARN (arn:aws:sns:<region>:<account>:<name>)"
            )
        if match["name"].endswith(".fifo"):
            raise ValueError(
                "FIFO topics cannot be on-failure destinations (AWS takes only standard topics)"
            )
        return topic_arn

    def arn(self, identity: Identity) -> str | None:
        return self.topic_arn

    @property
    def topic_region(self) -> str:
        match = TOPIC_ARN.match(self.topic_arn)
        assert match is not None, "checked by the validator"
        return match["region"]

    def build(self, name: str, context: BuildContext) -> Destination:
        from connectors.sns.destination import SnsDestination

        return SnsDestination(name, self)
