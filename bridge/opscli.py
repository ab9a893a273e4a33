"""`lambda-bridge status` and `reload`: the commands an operator reaches for.

`status` and `reload` talk to a running daemon's admin endpoint: `--url`, or the
`http` section of `--config` (a daemon listening on port 0 leaves the address it got
in `state_dir/admin-address`). The token comes from `--token-file`, `--token` (which
every user of the machine can read in `ps`), the config, or LAMBDA_BRIDGE_HTTP_TOKEN.
"""

from __future__ import annotations

import http.client
import re
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from bridge.addresses import reachable_address
from bridge.admin import ADDRESS_FILE, CLIENT_HEADER
from bridge.codec import JSONDecodeError, loads
from bridge.config import LoadedConfig

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
    # The admin endpoint refuses a POST without it (or a JSON body): see bridge.admin.
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


def _metrics(url: str, token: str | None) -> dict[str, dict[str, float]]:
    status, body = _request(url, token)
    if status != 200:
        raise AdminError(f"{url} answered HTTP {status}")
    return parse_metrics(body.decode("utf-8", "replace"))


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


_SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """Per mapping (its label as exposed), the sum of each sample over its other labels;
    histogram buckets and the state gauge are left out."""
    found: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in text.splitlines():
        sample = _SAMPLE.match(line)
        if sample is None:
            continue
        name, labels_text, value = sample.groups()
        if name.endswith("_bucket") or name.endswith("mapping_state"):
            continue
        labels = dict(_LABEL.findall(labels_text))
        found[labels.get("mapping", "")][name.removeprefix("lambda_bridge_")] += float(value)
    return found


def _lag(mapping: dict[str, float]) -> str:
    parts = []
    if mapping.get("offset_lag"):
        parts.append(f"{int(mapping['offset_lag'])} rec")
    if "iterator_age_seconds" in mapping:
        parts.append(f"{mapping['iterator_age_seconds']:.1f}s")
    return " / ".join(parts) or "-"


def status(base: str, token: str | None, interval: float) -> int:
    _, readiness = _answer(f"{base}/readyz", token)
    if not isinstance(readiness.get("mappings"), list):
        raise AdminError(f"{base}/readyz is not a lambda-bridge readiness answer")
    first = _metrics(f"{base}/metrics", token)
    second = first
    if interval > 0:
        time.sleep(interval)
        second = _metrics(f"{base}/metrics", token)
    print(_table(readiness, first, second, interval))
    return 0 if readiness.get("ready") else 1


def _rate(name: str, before: dict[str, float], after: dict[str, float], interval: float) -> str:
    if interval <= 0:
        return "-"
    return f"{(after.get(name, 0.0) - before.get(name, 0.0)) / interval:.1f}"


def _table(
    readiness: dict[str, Any],
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
    interval: float,
) -> str:
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
    for entry in readiness.get("mappings", []):
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("name", "?"))
        now, then = after.get(name, {}), before.get(name, {})
        rows.append(
            [
                name,
                str(entry.get("State", "?")),
                _lag(now),
                _rate("polled_events_total", then, now, interval),
                _rate("invoked_events_total", then, now, interval),
                str(int(now.get("failed_invoke_events_total", 0))),
                str(int(now.get("on_failure_destination_delivered_events_total", 0))),
                str(int(now.get("filtered_out_events_total", 0))),
                str(entry.get("LastProcessingResult", "-")),
            ]
        )
        if entry.get("StateReason"):
            notes.append(f"{name}: {entry['StateReason']}")
        catch_up = entry.get("CatchUp")
        if catch_up:
            notes.append(
                f"{name}: catching up, {catch_up.get('done', 0)} of {catch_up.get('total', 0)}"
            )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    ready = "ready" if readiness.get("ready") else "NOT ready"
    return "\n".join([f"daemon: {ready}", *lines, *notes])
