"""`host:port` listen addresses of the admin endpoint."""

from __future__ import annotations

import ipaddress
from pathlib import Path


def parse_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:9090`, `[::1]:9090`, `localhost:0` -> (host, port); ValueError if bad."""
    host, separator, port_text = text.rpartition(":")
    if not separator or not host:
        raise ValueError(f"{text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The name or address in a Host header (`name`, `name:port`, `[v6]:port`), lower-case,
    without port, brackets or a final dot; None when it is not of that form."""
    value = header.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        return name
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None
    return name.removesuffix(".") or None


def reachable_address(listen: str, address_file: Path) -> str | None:
    """Where a client reaches a server configured to listen on `listen`: the address it
    wrote to `address_file` when it took port 0 (None if unreadable: not running), with
    a wildcard host (0.0.0.0, ::) replaced by 127.0.0.1."""
    address = listen
    if address.endswith(":0"):
        try:
            address = address_file.read_text().strip()
        except OSError:
            return None
    host = address.rsplit(":", 1)[0]
    if host in ("0.0.0.0", "::", "[::]"):
        address = address.replace(host, "127.0.0.1", 1)
    return address
