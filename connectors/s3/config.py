"""Settings of the `s3` on-failure destination (no SDK import here)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bridge.config.plugins import BuildContext, DestinationConfig, Identity
from bridge.protocols import Destination
from connectors.aws.config import AwsConnectionConfig


class S3DestinationConfig(DestinationConfig, AwsConnectionConfig):
    """Failure records written as objects, each with the discarded event
    (esm-reference.md 10.2)."""

    type: Literal["s3"]
    bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="Bucket name (not an ARN); it must exist.",
    )
    prefix: str = Field(
        "",
        max_length=512,
        description="Folder the objects go under, before AWS's aws/lambda/<uuid>/... key.",
    )

    @field_validator("bucket", mode="before")
    @classmethod
    def _name_from_arn(cls, value: object) -> object:
        """AWS names the destination by bucket ARN; accept that form too."""
        if isinstance(value, str) and value.startswith("arn:"):
            service, _, name = value.partition(":::")
            if not service.endswith(":s3") or not name or "/" in name:
                raise ValueError(f"{value!r} is not a bucket ARN (arn:aws:s3:::<bucket>)")
            return name
        return value

    @field_validator("prefix")
    @classmethod
    def _folder(cls, prefix: str) -> str:
        """Stored as `folder/` (or empty), so keys are always `<prefix>aws/lambda/...`."""
        stripped = prefix.strip("/")
        return f"{stripped}/" if stripped else ""

    def arn(self, identity: Identity) -> str | None:
        return f"arn:aws:s3:::{self.bucket}"

    def build(self, name: str, context: BuildContext) -> Destination:
        from connectors.s3.destination import S3Destination

        return S3Destination(name, self, context)
