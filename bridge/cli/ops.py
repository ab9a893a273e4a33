"""`lambda-bridge status` and `reload`: the commands an operator reaches for.

`status` and `reload` talk to a running daemon's admin endpoint: `--url`, or the
`http` section of `--config` (a daemon listening on port 0 leaves the address it got
in `state_dir/admin-address`). The token comes from `--token-file`, `--token` (which
every user of the machine can read in `ps`), the config, or LAMBDA_BRIDGE_HTTP_TOKEN.
"""

from __future__ import annotations

import http.client
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bridge.addresses import reachable_address
from bridge.codec import JSONDecodeError, loads
from bridge.config.model import LoadedConfig
from bridge.ops.admin import ADDRESS_FILE, CLIENT_HEADER

EXIT_INVALID = 2


class AdminError(Exception):
    """The admin endpoint cannot be reached, refused us, or is not lambda-bridge's."""


# A token is a line of text; a file much larger than that is the wrong file.
MAX_TOKEN_FILE_BYTES = 4096


# -- talking to a daemon -----------------------------------------------------------------


def admin_url(url: str | None, loaded: LoadedConfig | None) -> str:
    if url:
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("http", "https") or not rest.strip("/"):
            raise AdminError(f"--url must be http://host:port or https://host:port, not {url!r}")
        return url.rstrip("/")
    if loaded is None:
        return "http://127.0.0.1:9090"
    written = loaded.config.state_dir / ADDRESS_FILE
    address = reachable_address(loaded.config.http.address, written)
    if address is None:
        raise AdminError(f"no daemon address in {written}: is the daemon running?")
    return f"http://{address}"


def read_token_file(path: Path) -> str:
    """The bearer token in `path`: its one line, surrounding whitespace removed."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise AdminError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise AdminError(f"the token file {path} is larger than {MAX_TOKEN_FILE_BYTES} bytes")
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise AdminError(f"the token file {path} is not UTF-8 text") from None
    if not token:
        raise AdminError(f"the token file {path} is empty")
    if not token.isprintable():
        raise AdminError(f"the token file {path} holds more than one line, or control characters")
    return token


def _request(url: str, token: str | None, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    # The admin endpoint refuses a POST without it (or a JSON body): see bridge.ops.admin.
    request.add_header(CLIENT_HEADER, "1")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc or type(exc).__name__
        raise AdminError(f"cannot reach {url}: {reason}") from None


def _answer(url: str, token: str | None, method: str = "GET") -> tuple[int, dict[str, Any]]:
    """(status, JSON object) of an admin request; AdminError if the token is missing
    or rejected, or if what answered is not a lambda-bridge admin endpoint."""
    status, body = _request(url, token, method)
    if status == 401:
        if token:
            raise AdminError(
                "the daemon rejected the bearer token (check --token-file, --token, "
                "http.token or LAMBDA_BRIDGE_HTTP_TOKEN)"
            )
        raise AdminError(
            "the daemon wants a bearer token (--token-file or LAMBDA_BRIDGE_HTTP_TOKEN)"
        )
    try:
        answer = loads(body)
    except JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise AdminError(
            f"{url} answered HTTP {status} with something else than a lambda-bridge admin "
            "endpoint's JSON: is --url right?"
        )
    return status, answer


def reload(base: str, token: str | None) -> int:
    _, answer = _answer(f"{base}/reload", token, method="POST")
    if not answer.get("reloaded"):
        for problem in answer.get("errors", []):
            print(f"error: {problem}", file=sys.stderr)
        print("reload rejected: the running config stays", file=sys.stderr)
        return EXIT_INVALID
    for key in ("started", "stopped", "restarted", "unchanged"):
        print(f"{key}: {', '.join(answer.get(key, [])) or '-'}")
    if answer.get("failed"):
        print(f"failed to start: {', '.join(answer['failed'])} (see the daemon's log)")
        return 1
    return 0


# -- status -----------------------------------------------------------------------------


def _lag(mapping: dict[str, Any]) -> str:
    parts = []
    offset_lag = mapping.get("offset_lag")
    records = sum(offset_lag.values()) if isinstance(offset_lag, dict) else 0
    if records:
        parts.append(f"{int(records)} rec")
    if mapping.get("iterator_age_seconds") is not None:
        parts.append(f"{mapping['iterator_age_seconds']:.1f}s")
    return " / ".join(parts) or "-"


def _status(url: str, token: str | None) -> dict[str, Any]:
    _, answer = _answer(url, token)
    if not isinstance(answer.get("mappings"), list):
        raise AdminError(f"{url} is not a lambda-bridge status answer")
    return answer


def status(base: str, token: str | None, interval: float) -> int:
    first = _status(f"{base}/status", token)
    second = first
    if interval > 0:
        time.sleep(interval)
        second = _status(f"{base}/status", token)
    print(_table(first, second, interval))
    return 0 if second.get("ready") else 1


def _counters(document: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each mapping's counters by name (`polled_events`, ...)."""
    found: dict[str, dict[str, float]] = {}
    for entry in document.get("mappings", []):
        if isinstance(entry, dict) and isinstance(entry.get("counters"), dict):
            found[str(entry.get("name", "?"))] = entry["counters"]
    return found


def _rate(name: str, before: dict[str, float], after: dict[str, float], interval: float) -> str:
    if interval <= 0:
        return "-"
    return f"{(after.get(name, 0.0) - before.get(name, 0.0)) / interval:.1f}"


def _table(first: dict[str, Any], last: dict[str, Any], interval: float) -> str:
    """The mappings as `last` shows them, with rates over `interval` since `first`."""
    before, after = _counters(first), _counters(last)
    header = [
        "MAPPING",
        "STATE",
        "LAG",
        "POLLED/S",
        "INVOKED/S",
        "FAILED",
        "TO DLQ",
        "FILTERED",
        "LAST RESULT",
    ]
    rows = [header]
    notes = []
    for entry in last.get("mappings", []):
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("name", "?"))
        now, then = after.get(name, {}), before.get(name, {})
        rows.append(
            [
                name,
                str(entry.get("state", "?")),
                _lag(entry),
                _rate("polled_events", then, now, interval),
                _rate("invoked_events", then, now, interval),
                str(int(now.get("failed_invoke_events", 0))),
                str(int(now.get("on_failure_destination_delivered_events", 0))),
                str(int(now.get("filtered_out_events", 0))),
                str(entry.get("last_processing_result", "-")),
            ]
        )
        if entry.get("reason"):
            notes.append(f"{name}: {entry['reason']}")
        catch_up = entry.get("catch_up")
        if catch_up:
            notes.append(
                f"{name}: catching up, {catch_up.get('done', 0)} of {catch_up.get('total', 0)}"
            )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    ready = "ready" if last.get("ready") else "NOT ready"
    return "\n".join([f"daemon: {ready}", *lines, *notes])
