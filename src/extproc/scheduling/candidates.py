"""Candidate endpoints for a request: the pool's endpoints narrowed by the proxy's subset hint."""

from __future__ import annotations

from extproc.endpoints import Endpoint
from extproc.errors import NoEndpoint


def candidates(endpoints: tuple[Endpoint, ...], subset: frozenset[str] | None) -> list[Endpoint]:
    """Return the endpoints allowed for this request; raise NoEndpoint when none is.

    Envoy's subset hint lists ``ip:port`` strings; as in the reference, only the IPs are
    matched (ports may differ between the proxy's view and the pool's target port).
    """
    if not endpoints:
        raise NoEndpoint("no ready endpoint in the pool")
    if subset is None:
        return list(endpoints)
    allowed = [e for e in endpoints if e.ip in subset]
    if not allowed:
        raise NoEndpoint("no endpoint of the pool matches the proxy's subset hint")
    return allowed
