"""Settings of the `http` invoker."""

from __future__ import annotations

import re
import urllib.parse
from typing import Literal

from pydantic import Field

from bridge.config.plugins import BuildContext, ConfigPath, FunctionConfig
from bridge.protocols import Invoker

# RFC 9110's token: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


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

    def check(self, context: BuildContext) -> list[tuple[ConfigPath, str]]:
        try:
            parts = urllib.parse.urlsplit(self.url)
            parts.port  # noqa: B018 - raises ValueError for a port that is no port
        except ValueError as exc:
            return [(("url",), f"is not a URL: {exc}")]
        if not parts.hostname or any(char.isspace() for char in self.url):
            return [(("url",), "is not a URL: write http://host:port/path")]
        problems: list[tuple[ConfigPath, str]] = []
        for header, value in self.headers.items():
            if not header or not _TOKEN.fullmatch(header):
                problems.append((("headers", header), "is not a valid header name"))
            elif any(char in value for char in "\r\n\0"):
                problems.append((("headers", header), "a header value cannot hold a line break"))
        return problems

    def build(self, name: str, context: BuildContext) -> Invoker:
        from connectors.http.invoker import HttpInvoker

        return HttpInvoker(name, self)
