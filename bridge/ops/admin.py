"""The admin endpoint (aiohttp): `/healthz`, `/readyz`, `/metrics`, `/status` and
`POST /reload`.

`/healthz` answers while the event loop runs (liveness). `/readyz` is 200 only when
every enabled mapping is connected and polling (state `Enabled`), 503 otherwise; its
JSON lists each mapping's state, the reason, `LastProcessingResult` and catch-up
progress. `/metrics` is Prometheus text (bridge.ops.exposition, by prometheus_client);
`/status` is what `lambda-bridge status` shows, as JSON (bridge.ops.status). Beyond
loopback every path but `/healthz` requires `Authorization: Bearer <token>`; the token
is never logged.

A web page the operator opens must not reach the endpoint through the browser. Bound to
loopback, it answers only requests whose Host is a loopback name or address: a page that
rebinds its own name to 127.0.0.1 sends its own name as Host (`/healthz`, which says
nothing but "alive", answers any Host, as liveness probes name the pod's address). A POST
must carry `Content-Type: application/json` or an `X-Lambda-Bridge` header, which no page
can send to another site without a CORS preflight this endpoint never grants: a form
posted cross-site cannot reload the daemon.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client.core import Metric

from bridge.addresses import host_name, is_loopback, parse_listen
from bridge.codec import dumps_text
from bridge.ops.exposition import CONTENT_TYPE, render
from bridge.ops.metrics import MappingView
from bridge.ops.status import is_ready, status_document

ADDRESS_FILE = "admin-address"


class ReloadRejected(Exception):
    """The new config has problems; the running one stays."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class AdminTarget(Protocol):
    async def views(self) -> list[MappingView]: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def checkpoint_write_failures(self) -> int: ...

    def invoker_metrics(self) -> list[Metric]: ...

    async def reload(self) -> dict[str, Any]: ...


def readiness(views: Sequence[MappingView], stopping: bool) -> tuple[bool, dict[str, Any]]:
    mappings = []
    for view in views:
        entry: dict[str, Any] = {
            "name": view.name,
            "State": view.state,
            "StateReason": view.reason,
            "LastProcessingResult": view.metrics.last_processing_result,
        }
        if view.progress is not None:
            entry["CatchUp"] = dict(view.progress)
        mappings.append(entry)
    ready = is_ready(views, stopping)
    return ready, {"ready": ready, "stopping": stopping, "mappings": mappings}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Longest request line or header; aiohttp answers 400 to anything longer.
HTTP_LINE_LIMIT = 8190

# The header a non-browser client may send on POST instead of a JSON content type.
CLIENT_HEADER = "X-Lambda-Bridge"
HEALTH_PATH = "/healthz"


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def foreign_host(request: web.Request) -> bool:
    """A Host header that is not a loopback name or address (no header: not a browser)."""
    header = request.headers.get("Host")
    if header is None:
        return False
    name = host_name(header)
    return name is None or not is_loopback(name)


def _posted_by_a_client(request: web.Request) -> bool:
    media_type = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    return media_type == "application/json" or CLIENT_HEADER in request.headers


class _BadRequestLine(logging.Filter):
    """aiohttp logs every request it cannot parse (a huge header, a malformed request
    line, TLS sent to the plain port) with a traceback. Such a request is the client's
    fault and was answered 400: it becomes one `<server>.bad_request` line naming the kind
    of problem, never the request's bytes, which may hold a token."""

    def __init__(self, server: str) -> None:
        super().__init__()
        self.server = server

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        structlog.get_logger(f"bridge.{self.server}").info(
            f"{self.server}.bad_request", status=error.code, problem=type(error).__name__
        )
        return False


def server_logger(server: str = "admin") -> logging.Logger:
    """The logger for an aiohttp server of the daemon (`admin`, `api`), which reports
    unparsable requests as one line each."""
    logger = logging.getLogger(f"bridge.{server}.server")
    if not any(isinstance(existing, _BadRequestLine) for existing in logger.filters):
        logger.addFilter(_BadRequestLine(server))
    return logger


async def serve(
    app: web.Application, host: str, port: int, server: str, shutdown_timeout: float = 60.0
) -> tuple[web.AppRunner, str]:
    """Serve `app` on `host:port` as one of the daemon's servers (`admin`, `api`): its
    logger, bounded request lines; the runner and the bound `host:port` (IPv6 in
    brackets). Raises OSError, with nothing left open, if it cannot bind."""
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        logger=server_logger(server),
        max_line_size=HTTP_LINE_LIMIT,
        max_field_size=HTTP_LINE_LIMIT,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return runner, f"{shown}:{bound[1]}"


async def stop_serving(runner: web.AppRunner | None, address_file: Path) -> None:
    """Stop a server `serve` started (requests under way finish, up to its shutdown
    timeout) and take back the address it left in `address_file`."""
    if runner is not None:
        await runner.cleanup()
        await asyncio.to_thread(address_file.unlink, missing_ok=True)


class AdminServer:
    def __init__(
        self, target: AdminTarget, listen: str, token: str | None, state_dir: Path
    ) -> None:
        self._target = target
        self._listen = listen
        self._token = token
        self._loopback_only = is_loopback(parse_listen(listen)[0])
        self._address_file = state_dir / ADDRESS_FILE
        self._runner: web.AppRunner | None = None
        self._log = structlog.get_logger("bridge.ops.admin")
        self.address: str | None = None

    async def start(self) -> str:
        """Serve; returns the bound `host:port`. Raises OSError if it cannot bind."""
        host, port = parse_listen(self._listen)
        app = web.Application(middlewares=[self._check_host, self._authorize, self._check_post])
        app.router.add_get(HEALTH_PATH, self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        app.router.add_post("/reload", self._reload)
        self._runner, self.address = await serve(app, host, port, "admin")
        self._address_file.write_text(self.address + "\n")
        self._log.info("admin.listening", address=self.address, token=self._token is not None)
        return self.address

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        await stop_serving(runner, self._address_file)

    @web.middleware
    async def _check_host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._loopback_only and request.path != HEALTH_PATH and foreign_host(request):
            # 421 Misdirected Request: this server does not answer for that name.
            return _error(
                "this endpoint listens on loopback and answers only to a loopback Host "
                "(127.0.0.1, [::1] or localhost)",
                421,
            )
        return await handler(request)

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token is None or request.path == HEALTH_PATH:
            return await handler(request)
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {self._token}"
        # Header bytes that are not UTF-8 come as surrogates: back to the bytes sent.
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
            # Which of the two, never what was given or expected.
            error = "the bearer token is not accepted" if given else "a bearer token is required"
            return _error(error, 401, {"WWW-Authenticate": 'Bearer realm="lambda-bridge"'})
        return await handler(request)

    @web.middleware
    async def _check_post(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST" and not _posted_by_a_client(request):
            return _error(
                f"a POST needs Content-Type: application/json or an {CLIENT_HEADER} header",
                415,
            )
        return await handler(request)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, body = readiness(await self._target.views(), self._target.stopping)
        return web.Response(
            text=dumps_text(body), status=200 if ready else 503, content_type="application/json"
        )

    async def _metrics(self, _: web.Request) -> web.Response:
        body = render(
            await self._target.views(),
            checkpoint_write_failures=self._target.checkpoint_write_failures,
            families=self._target.invoker_metrics(),
        )
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _status(self, _: web.Request) -> web.Response:
        document = status_document(
            await self._target.views(),
            self._target.stopping,
            self._target.checkpoint_write_failures,
        )
        return web.Response(text=dumps_text(document), content_type="application/json")

    async def _reload(self, _: web.Request) -> web.Response:
        try:
            summary = await self._target.reload()
        except ReloadRejected as rejected:
            return web.json_response({"reloaded": False, "errors": rejected.problems}, status=400)
        return web.json_response({"reloaded": True, **summary})
