"""Connection settings shared by the AWS connectors (no SDK import here)."""

from __future__ import annotations

import os

from pydantic import Field

from bridge.config.plugins import StrictModel


class AwsConnectionConfig(StrictModel):
    """Region, endpoint and profile. Credentials come from the standard AWS chain
    (environment, shared files and profiles, instance or task roles) and never appear in
    the config, the logs or error messages."""

    region: str | None = Field(
        None, description="Default: AWS_REGION, AWS_DEFAULT_REGION, else aws.region of the config."
    )
    endpoint_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="A local emulator (moto, LocalStack, ElasticMQ, ...); unset means real AWS.",
    )
    profile: str | None = Field(None, description="A named profile of the shared AWS config.")

    def region_or(self, fallback: str) -> str:
        return (
            self.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or fallback
        )

    def connection(self) -> AwsConnectionConfig:
        return AwsConnectionConfig(
            region=self.region, endpoint_url=self.endpoint_url, profile=self.profile
        )
