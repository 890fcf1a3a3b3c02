"""Reading Kubernetes objects: resourceVersion order, Pod readiness, selectors."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from extproc.endpoints import Endpoint


def metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def object_name(obj: Mapping[str, Any]) -> str:
    return str(metadata(obj).get("name", ""))


def resource_version(obj: Mapping[str, Any]) -> str:
    return str(metadata(obj).get("resourceVersion", ""))


def is_older(candidate: str, applied: str) -> bool:
    """True when `candidate` is a resourceVersion strictly older than `applied`.

    resourceVersions are opaque to clients, but every API server in practice uses etcd
    revisions (integers). Non-numeric versions cannot be ordered: they count as newer.
    """
    if not (candidate.isdigit() and applied.isdigit()):
        return False
    return int(candidate) < int(applied)


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the picker needs of a Pod: whether it is a Ready endpoint, and its labels."""

    name: str
    ip: str
    labels: tuple[tuple[str, str], ...]
    ready: bool

    def matches(self, selector: Mapping[str, str]) -> bool:
        labels = dict(self.labels)
        return all(labels.get(k) == v for k, v in selector.items())

    def endpoint(self, port: int) -> Endpoint:
        return Endpoint(name=self.name, ip=self.ip, port=port)


def pod_info(obj: Mapping[str, Any]) -> PodInfo:
    """Ready = condition Ready=True, has a valid podIP and is not being deleted."""
    meta = metadata(obj)
    raw_labels = meta.get("labels")
    labels = raw_labels if isinstance(raw_labels, Mapping) else {}
    status = obj.get("status")
    status = status if isinstance(status, Mapping) else {}
    ip = str(status.get("podIP") or "")
    try:
        ip = str(ipaddress.ip_address(ip)) if ip else ""
    except ValueError:
        ip = ""
    conditions = status.get("conditions")
    ready_condition = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in (conditions if isinstance(conditions, list) else [])
    )
    ready = (
        ready_condition
        and bool(ip)
        and not meta.get("deletionTimestamp")
        and status.get("phase") not in ("Succeeded", "Failed")
    )
    return PodInfo(
        name=str(meta.get("name", "")),
        ip=ip,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        ready=ready,
    )
