"""Raw HTTP requests to a daemon's admin endpoint: any Host, any header bytes."""

from __future__ import annotations

import socket


def raw_request(
    address: str,
    method: str,
    path: str,
    headers: dict[str, str | bytes],
    body: bytes = b"",
    version: str = "1.1",
) -> tuple[int, bytes]:
    """Send the request exactly as given (no Host unless in `headers`) to the daemon at
    `address` (`host:port`; a wildcard host is reached on 127.0.0.1); (status, body)."""
    port = int(address.rsplit(":", 1)[1])
    lines = [f"{method} {path} HTTP/{version}".encode()]
    for name, value in {**headers, "Connection": "close"}.items():
        raw = value if isinstance(value, bytes) else value.encode()
        lines.append(name.encode() + b": " + raw)
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}".encode())
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, content = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), content
