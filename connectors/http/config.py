"""Settings of the `http` invoker."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bridge.plugins import BuildContext, FunctionConfig
from bridge.protocols import Invoker


class HttpFunctionConfig(FunctionConfig):
    invoker: Literal["http"]
    url: str = Field(
        pattern=r"^https?://",
        description="Invoke URL, e.g. http://127.0.0.1:9000/2015-03-31/functions/function/invocations",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    connect_timeout: float = Field(5.0, gt=0, le=300)
    detect_error_body: bool = Field(
        True,
        description=(
            "Treat a 200 answer whose body is only a Lambda error document as a "
            "function error (the RIE answers errors that way)."
        ),
    )

    def build(self, name: str, context: BuildContext) -> Invoker:
        from connectors.http.invoker import HttpInvoker

        return HttpInvoker(name, self)
