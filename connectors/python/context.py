"""The context object a Python handler receives, with the attributes Lambda's runtime gives."""

from __future__ import annotations

import time
import uuid
from typing import Any

from bridge.codec import loads


class LambdaContext:
    def __init__(
        self,
        *,
        aws_request_id: str,
        function_name: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        deadline: float,
        log_stream_name: str,
        function_version: str = "$LATEST",
    ) -> None:
        self.aws_request_id = aws_request_id
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = invoked_function_arn
        # Lambda's Python runtime reports the memory size as a string.
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = log_stream_name
        self.identity: Any = None
        self.client_context: Any = None
        self.tenant_id: str | None = None
        self._deadline = deadline

    def start_clock(self, timeout: float) -> None:
        """The invocation starts now: its time runs from here (a call that waited for a
        free worker has not used any of it)."""
        self._deadline = time.time() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.time()) * 1000), 0)

    def __repr__(self) -> str:
        return f"LambdaContext({self.function_name!r}, aws_request_id={self.aws_request_id!r})"


class Client:
    """`context.client_context.client`: the mobile app that invoked, as the SDKs tell it."""

    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, fields: dict[str, Any]) -> None:
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class ClientContext:
    """`context.client_context` as Lambda's Python runtime builds it from the Invoke's
    ClientContext: its `client`, `custom` and `env`."""

    __slots__ = ("client", "custom", "env")

    def __init__(self, fields: dict[str, Any]) -> None:
        client = fields.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = fields.get("custom")
        self.env = fields.get("env")


def client_context(text: str | None) -> ClientContext | None:
    """The handler's `client_context` from the JSON text the API received (None: none)."""
    if text is None:
        return None
    fields = loads(text)
    return ClientContext(fields) if isinstance(fields, dict) else None


def log_stream_name(function_version: str = "$LATEST") -> str:
    """One per execution environment, as on Lambda: `2026/11/26/[$LATEST]<32 hex>`."""
    return time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{function_version}]{uuid.uuid4().hex}"
