"""Endpoints: the model-server pods of an InferencePool, addressed as ``ip:port``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One model-server endpoint. `address` is what Envoy receives (``ip:port``)."""

    name: str
    ip: str
    port: int

    @property
    def address(self) -> str:
        return host_port(self.ip, self.port)


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:9002``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``ip``, ``ip:port`` or ``[v6]:port``; raise ValueError with a clear reason."""
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    try:
        ip = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (host names are not resolved)") from None
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r} has no port")
        return ip, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r} has an invalid port")
    return ip, int(port_text)
