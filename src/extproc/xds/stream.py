"""The state of one ADS stream (state of the world): what to send for each request or change.

Per type URL the stream remembers the subscribed names, the nonce and version of the last
response, and what Envoy accepted or rejected. The rules, in the order they apply:

1. A request whose ``response_nonce`` is not the nonce of our last response of that type is
   stale (Envoy will answer the newer response too): ignored.
2. A request answering our last response is an ACK (no ``error_detail``) or a NACK. A NACK is
   logged with Envoy's message; Envoy keeps the version it last accepted and we do not send the
   rejected version again: the next response goes out when the content changes.
3. A request repeating a nonce that was already answered is a new subscription (Envoy does this
   for the EDS resources of a cluster that a CDS update sent back to warming, and waits): it is
   answered with the current resources under a fresh nonce, whose ACK ends the exchange.
4. A response is sent for a first request of a type (also after a reconnect: Envoy tells the
   version it holds, but a restarted server cannot know its content) or when the subscribed
   names change, and for every change of the type's content while subscribed.

This class is synchronous and does no I/O; `extproc.xds.server` drives it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse

from extproc.logs import get_logger
from extproc.xds.cache import ResourceCache, TypeSnapshot, short_type
from extproc.xds.metrics import StreamCounts
from extproc.xds.resources import CLUSTER_TYPE

log = get_logger(__name__)
WILDCARD = "*"


@dataclass(slots=True)
class TypeState:
    names: frozenset[str] = frozenset()
    subscribed: bool = False
    nonce: str = ""
    answered: bool = False  # Envoy has ACKed or NACKed `nonce`
    sent_version: str = ""
    acked_version: str = ""
    rejected_version: str = ""
    last_error: str = ""


class AdsStream:
    """Feed it requests (`on_request`) and cache changes (`on_change`); send what it returns."""

    def __init__(
        self, cache: ResourceCache, peer: str = "", counts: StreamCounts | None = None
    ) -> None:
        self._cache = cache
        self._counts = counts if counts is not None else StreamCounts()
        self._nonces = itertools.count(1)
        self.peer = peer
        self.node_id = ""
        self.types: dict[str, TypeState] = {}

    def on_request(self, req: DiscoveryRequest) -> list[DiscoveryResponse]:
        if req.node is not None and req.node.id:
            self.node_id = req.node.id
        type_url = req.type_url
        state = self.types.setdefault(type_url, TypeState())
        names = frozenset(req.resource_names)
        short = short_type(type_url)
        if req.response_nonce:
            if req.response_nonce != state.nonce:
                log.debug("stale_nonce", type=short, nonce=req.response_nonce, current=state.nonce)
                return []
            if state.answered:
                # Envoy repeats an acknowledged nonce when it subscribes again, e.g. the EDS
                # request of a cluster that a CDS update sent back to warming: it waits for an
                # answer, so send the current resources (under a new nonce).
                log.info("resubscribed", node=self.node_id, type=short, version=req.version_info)
                state.names = names
                return self._respond(type_url, state)
            state.answered = True
            error = req.error_detail
            if error is not None and (error.code or error.message):
                state.rejected_version = state.sent_version
                state.last_error = error.message
                self._counts.rejected[type_url] += 1
                log.warning(
                    "update_rejected", node=self.node_id, type=short,
                    rejected_version=state.sent_version, kept_version=req.version_info,
                    error=error.message,
                )  # fmt: skip
            else:
                state.acked_version = req.version_info
                self._counts.accepted[type_url] += 1
                log.info("update_accepted", node=self.node_id, type=short, version=req.version_info)
            if state.subscribed and names == state.names:
                return []
        else:
            log.info(
                "subscribed", node=self.node_id, peer=self.peer, type=short,
                names=",".join(sorted(names)) or WILDCARD, envoy_version=req.version_info,
            )  # fmt: skip
        state.names = names
        state.subscribed = True
        return self._respond(type_url, state)

    def on_change(self, type_urls: Iterable[str]) -> list[DiscoveryResponse]:
        out: list[DiscoveryResponse] = []
        for type_url in type_urls:
            state = self.types.get(type_url)
            if state is None or not state.subscribed:
                continue
            current = self._cache.get(type_url)
            if current is None or current.version == state.sent_version:
                continue
            out.extend(self._respond(type_url, state))
        return out

    def _respond(self, type_url: str, state: TypeState) -> list[DiscoveryResponse]:
        snap = self._cache.get(type_url)
        if snap is None:
            return []
        selected = _select(snap, type_url, state.names)
        state.nonce = str(next(self._nonces))
        state.answered = False
        state.sent_version = snap.version
        self._counts.sent[type_url] += 1
        log.info(
            "update_sent", node=self.node_id, type=short_type(type_url), version=snap.version,
            nonce=state.nonce, resources=len(selected),
        )  # fmt: skip
        return [
            DiscoveryResponse(
                version_info=snap.version,
                resources=[snap.resources[name] for name in selected],
                type_url=type_url,
                nonce=state.nonce,
            )
        ]


def _select(snap: TypeSnapshot, type_url: str, names: frozenset[str]) -> list[str]:
    """Resource names to send: all for a wildcard subscription, else the requested ones."""
    # CDS (and LDS) subscriptions with no names are wildcard; EDS ones never are.
    if WILDCARD in names or (not names and type_url == CLUSTER_TYPE):
        return sorted(snap.resources)
    return sorted(n for n in names if n in snap.resources)
