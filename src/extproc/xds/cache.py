"""The resources currently served, one content-addressed version per type URL."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from envoy_data_plane.google.protobuf import Any

from extproc.xds.resources import TYPE_ORDER, Resources

ChangeListener = Callable[[list[str]], None]


def short_type(type_url: str) -> str:
    """`Cluster` for `type.googleapis.com/envoy.config.cluster.v3.Cluster`."""
    return type_url.rsplit(".", 1)[-1]


def short_types(type_urls: list[str]) -> str:
    """`Cluster,RouteConfiguration`: the changed types, for a log line."""
    return ",".join(map(short_type, type_urls))


@dataclass(frozen=True, slots=True)
class TypeSnapshot:
    """All resources of one type. `version` hashes names and bytes, so the same content has the
    same version across restarts of the server (Envoy reports the version it last accepted)."""

    version: str
    resources: Mapping[str, Any]
    wire: Mapping[str, bytes]


def snapshot(resources: Mapping[str, Any]) -> TypeSnapshot:
    wire = {name: bytes(resources[name]) for name in sorted(resources)}
    digest = hashlib.sha256()
    for name, data in wire.items():
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return TypeSnapshot(digest.hexdigest()[:16], dict(resources), wire)


class ResourceCache:
    """Holds the latest snapshot per type and tells the open streams which types changed."""

    def __init__(self) -> None:
        self._types: dict[str, TypeSnapshot] = {}
        self._listeners: list[ChangeListener] = []

    def get(self, type_url: str) -> TypeSnapshot | None:
        return self._types.get(type_url)

    def versions(self) -> dict[str, str]:
        return {t: s.version for t, s in self._types.items()}

    def versions_text(self) -> str:
        """`Cluster=v1,RouteConfiguration=v2`: the served versions, for a log line."""
        return ",".join(f"{short_type(t)}={v}" for t, v in self._types.items())

    def update(self, resources: Resources) -> list[str]:
        """Replace the served set; return the changed type URLs (clusters first) and notify.

        A type served before but absent now becomes empty (its resources are removed).
        """
        changed: list[str] = []
        types = [t for t in TYPE_ORDER if t in resources or t in self._types]
        types += sorted(set(resources) - set(types))
        for type_url in types:
            new = snapshot(resources.get(type_url, {}))
            old = self._types.get(type_url)
            if old is None or old.version != new.version:
                self._types[type_url] = new
                changed.append(type_url)
        if changed:
            for listener in list(self._listeners):
                listener(changed)
        return changed

    def subscribe(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: ChangeListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
