"""The Lambda Extensions API, served beside the Runtime API of one environment
(esm-reference.md 15 covers the Runtime API; the Extensions API's shapes follow AWS's
Extensions API reference).

Routes (on the environment's own AWS_LAMBDA_RUNTIME_API address):

- `POST /2020-01-01/extension/register` (header `Lambda-Extension-Name`, body
  `{"events": ["INVOKE", "SHUTDOWN"]}`): 200 with `Lambda-Extension-Identifier` and
  `{"functionName", "functionVersion", "handler"}` (and `accountId` when asked for with
  `Lambda-Extension-Accept-Feature: accountId`). Only during INIT (403 after). A name that
  is not one of the environment's extension files is an internal extension (one the runtime
  process registers), which may not subscribe to SHUTDOWN.
- `GET /2020-01-01/extension/event/next` (header `Lambda-Extension-Identifier`): the next
  INVOKE or SHUTDOWN event, with `Lambda-Extension-Event-Identifier`. Calling it says the
  extension is done with the previous phase.
- `POST /2020-01-01/extension/init/error` and `/exit/error` (headers
  `Lambda-Extension-Identifier`, `Lambda-Extension-Function-Error-Type`): 202; the first
  fails INIT, the second ends the environment.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.invokers import error_document

PREFIX = "/2020-01-01/extension"
NAME_HEADER = "Lambda-Extension-Name"
ID_HEADER = "Lambda-Extension-Identifier"
EVENT_ID_HEADER = "Lambda-Extension-Event-Identifier"
ERROR_TYPE_HEADER = "Lambda-Extension-Function-Error-Type"
FEATURE_HEADER = "Lambda-Extension-Accept-Feature"
EVENT_TYPES = frozenset({"INVOKE", "SHUTDOWN"})
MAX_BODY = 1 << 20


@dataclass
class Extension:
    """One registered extension and the events waiting for it."""

    name: str
    events: frozenset[str]
    internal: bool
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    # Set while it waits in `next` with nothing to hand it: done with the current phase.
    waiting: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class ExtensionFailure:
    """An extension reported /init/error or /exit/error, or its process ended."""

    name: str
    error_type: str
    message: str

    def document(self, request_id: str = "") -> bytes:
        return error_document(self.error_type, self.message, request_id)


class ExtensionsApi:
    """The Extensions API state of one environment; `add_routes` puts it on its server."""

    def __init__(
        self, function_name: str, handler: str, function_arn: str, files: list[str]
    ) -> None:
        self._identity = {
            "functionName": function_name,
            "functionVersion": "$LATEST",
            "handler": handler,
        }
        arn_parts = function_arn.split(":")
        self._account_id = arn_parts[4] if len(arn_parts) > 4 else ""
        self.files = files  # the names of the external extensions started in the environment
        self.extensions: dict[str, Extension] = {}
        self.init_over = False
        self.registered = asyncio.Event()  # every external extension registered
        self.failure: ExtensionFailure | None = None
        self.failed = asyncio.Event()
        if not files:
            self.registered.set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(f"{PREFIX}/register", self._register)
        app.router.add_get(f"{PREFIX}/event/next", self._next)
        app.router.add_post(f"{PREFIX}/init/error", self._init_error)
        app.router.add_post(f"{PREFIX}/exit/error", self._exit_error)

    def subscribers(self, event_type: str) -> list[Extension]:
        return [ext for ext in self.extensions.values() if event_type in ext.events]

    def ready(self) -> list[asyncio.Event]:
        """What INIT (and each invocation) waits for: every extension back in `next`."""
        return [extension.waiting for extension in self.extensions.values()]

    def send(self, event_type: str, event: dict[str, object]) -> list[Extension]:
        """Hand `event` to every extension subscribed to `event_type`; return them."""
        body = dumps({"eventType": event_type, **event})
        extensions = self.subscribers(event_type)
        for extension in extensions:
            extension.waiting.clear()
            extension.queue.put_nowait(body)
        return extensions

    def fail(self, failure: ExtensionFailure) -> None:
        if self.failure is None:
            self.failure = failure
            self.failed.set()

    async def _register(self, request: web.Request) -> web.Response:
        name = request.headers.get(NAME_HEADER, "")
        if not name:
            return _status(400, "InvalidRequest", f"the {NAME_HEADER} header is missing")
        if self.init_over:
            return _status(403, "Extension.RegistrationNotAllowed", "INIT is over")
        if any(extension.name == name for extension in self.extensions.values()):
            return _status(409, "Extension.AlreadyRegistered", f"{name!r} is registered already")
        events = await _events(request)
        if isinstance(events, web.Response):
            return events
        internal = name not in self.files
        if internal and "SHUTDOWN" in events:
            message = "an internal extension (not a file in extensions/) cannot get SHUTDOWN"
            return _status(400, "ShutdownEventNotSupportedForInternalExtension", message)
        extension = Extension(name, events, internal)
        self.extensions[extension.id] = extension
        external = {ext.name for ext in self.extensions.values() if not ext.internal}
        if external >= set(self.files):
            self.registered.set()
        body: dict[str, str] = dict(self._identity)
        if "accountId" in request.headers.get(FEATURE_HEADER, ""):
            body["accountId"] = self._account_id
        return web.json_response(body, headers={ID_HEADER: extension.id})

    async def _next(self, request: web.Request) -> web.StreamResponse:
        extension = self.extensions.get(request.headers.get(ID_HEADER, ""))
        if extension is None:
            return _status(403, "Extension.UnknownExtensionIdentifier", "not registered")
        if extension.queue.empty():
            extension.waiting.set()
        body = await extension.queue.get()
        extension.waiting.clear()
        headers = {EVENT_ID_HEADER: str(uuid.uuid4())}
        return web.Response(body=body, headers=headers, content_type="application/json")

    async def _init_error(self, request: web.Request) -> web.Response:
        return await self._error(request, during_init=True)

    async def _exit_error(self, request: web.Request) -> web.Response:
        return await self._error(request, during_init=False)

    async def _error(self, request: web.Request, *, during_init: bool) -> web.Response:
        extension = self.extensions.get(request.headers.get(ID_HEADER, ""))
        if extension is None:
            return _status(403, "Extension.UnknownExtensionIdentifier", "not registered")
        if during_init and self.init_over:
            return _status(403, "InvalidStateTransition", "INIT is over")
        error_type = request.headers.get(ERROR_TYPE_HEADER, "")
        if not error_type:
            return _status(400, "InvalidRequest", f"the {ERROR_TYPE_HEADER} header is missing")
        body = await request.content.read(MAX_BODY)
        message = _message(body) or f"extension {extension.name!r} reported {error_type}"
        self.fail(ExtensionFailure(extension.name, error_type, message))
        return web.json_response({"status": "OK"}, status=202)


async def _events(request: web.Request) -> frozenset[str] | web.Response:
    try:
        document = loads(await request.content.read(MAX_BODY) or b"{}")
    except JSONDecodeError:
        return _status(400, "InvalidRequest", "the body is not JSON")
    events = document.get("events", []) if isinstance(document, dict) else None
    if not isinstance(events, list) or not all(event in EVENT_TYPES for event in events):
        return _status(400, "InvalidEventType", 'events must be a list of "INVOKE", "SHUTDOWN"')
    return frozenset(events)


def _message(body: bytes) -> str:
    try:
        document = loads(body) if body.strip() else None
    except JSONDecodeError:
        return body.decode("utf-8", "replace").strip()
    if isinstance(document, dict) and isinstance(document.get("errorMessage"), str):
        return str(document["errorMessage"])
    return ""


def _status(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"errorType": error_type, "errorMessage": message}, status=status)
