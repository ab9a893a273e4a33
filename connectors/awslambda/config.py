"""Settings of the `lambda` invoker: a real function, called through Lambda's Invoke API
(no SDK import here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bridge.config.plugins import BuildContext, FunctionConfig
from bridge.protocols import Invoker
from connectors.aws.config import AwsConnectionConfig

# Invoke's FunctionName: a name, a partial ARN (<account>:function:<name>) or a full ARN,
# each optionally followed by :<version or alias> (esm-reference.md 14).
FUNCTION_NAME = re.compile(
    r"^(?:arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+):)?"
    r"(?:(?P<account>\d{12}):)?"
    r"(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_-]{1,64})"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]{1,128}))?$"
)


@dataclass(frozen=True)
class FunctionName:
    """The parts of a FunctionName; `region`, `account` and `partition` only from ARNs."""

    name: str
    qualifier: str | None
    account: str | None
    region: str | None
    partition: str | None

    @classmethod
    def parse(cls, text: str) -> FunctionName:
        match = FUNCTION_NAME.match(text)
        if match is None or (match["partition"] is not None and match["account"] is None):
            raise ValueError(
                f"{text!r} is not a function name, ARN or partial ARN "
                "(my-function, 123456789012:function:my-function, "
                "arn:aws:lambda:us-east-1:123456789012:function:my-function, each "
                "optionally with :version or :alias)"
            )
        return cls(
            match["name"], match["qualifier"], match["account"], match["region"], match["partition"]
        )

    def arn(self, qualifier: str | None) -> str | None:
        """The full ARN (qualified if a qualifier is set), when the name is a full ARN."""
        if self.region is None or self.account is None:
            return None
        base = f"arn:{self.partition}:lambda:{self.region}:{self.account}:function:{self.name}"
        return f"{base}:{qualifier}" if qualifier else base


class LambdaFunctionConfig(FunctionConfig, AwsConnectionConfig):
    """A function deployed to Lambda (or an emulator: LocalStack, moto), invoked
    synchronously like an event source mapping does (esm-reference.md 0, 14).

    `timeout` should be the function's own timeout: sources use it (e.g. for how long a
    message stays invisible); the invoker reads the real one at start, warns if they
    differ, and waits for the longer. Set `arn` (or give a full ARN) so failure records
    name the real function. `memory_size` has no effect here.
    """

    invoker: Literal["lambda"]
    function_name: str = Field(
        min_length=1,
        max_length=170,
        description="Name, partial ARN or ARN, optionally with :version or :alias.",
    )
    qualifier: str | None = Field(
        None,
        pattern=r"^(\$LATEST|[a-zA-Z0-9_-]{1,128})$",
        description="Version or alias; the alternative to a qualifier in function_name.",
    )

    @field_validator("function_name")
    @classmethod
    def _well_formed(cls, function_name: str) -> str:
        FunctionName.parse(function_name)
        return function_name

    @model_validator(mode="after")
    def _one_qualifier_and_arn(self) -> LambdaFunctionConfig:
        parsed = FunctionName.parse(self.function_name)
        if parsed.qualifier and self.qualifier and parsed.qualifier != self.qualifier:
            raise ValueError(
                f"function_name is qualified with {parsed.qualifier!r} but qualifier is "
                f"{self.qualifier!r}; give one of them"
            )
        if self.arn is None:
            self.arn = parsed.arn(parsed.qualifier or self.qualifier)
        return self

    @property
    def parsed_name(self) -> FunctionName:
        return FunctionName.parse(self.function_name)

    @property
    def effective_qualifier(self) -> str | None:
        return self.qualifier or self.parsed_name.qualifier

    def build(self, name: str, context: BuildContext) -> Invoker:
        from connectors.awslambda.invoker import LambdaInvoker

        return LambdaInvoker(name, self, context)
