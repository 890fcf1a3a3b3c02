"""PolicySource: the BackendTrafficPolicies of one namespace, each at its last valid version.

One list+watch (see `extproc.k8s.watch`) of ``gateway.envoyproxy.io/v1alpha1``
``backendtrafficpolicies`` in the namespace. Every object is read by
`extproc.envoyconf.policy.parse_policy_object`, the static file's reader, so both sources accept
the same documents. An invalid object is logged (namespace, name, field) and ignored: if an
earlier version of it was valid, that version stays in force, as a rejected file keeps the last
good resources; a deletion always removes it. Handlers run on the event loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from extproc.envoyconf.policy import POLICY_API_VERSION, BackendTrafficPolicy, parse_policy_object
from extproc.errors import ConfigError
from extproc.k8s.client import JSON
from extproc.k8s.objects import metadata, object_name
from extproc.k8s.settings import WatchSettings
from extproc.k8s.source import Collection
from extproc.k8s.watch import ListWatch, stop_watches
from extproc.logs import get_logger

log = get_logger(__name__)

POLICY_RESOURCE = "backendtrafficpolicies"
_JOIN_TIMEOUT_S = 5.0


def policies_path(namespace: str) -> str:
    return f"/apis/{POLICY_API_VERSION}/namespaces/{namespace}/{POLICY_RESOURCE}"


class PolicySource:
    """Keeps `policies()` equal to the namespace's valid BackendTrafficPolicies until `stop()`."""

    def __init__(
        self, namespace: str, api_client: Any, *, watch: WatchSettings | None = None
    ) -> None:
        self.namespace = namespace
        self._api = api_client
        self._settings = watch or WatchSettings()
        self.synced = asyncio.Event()
        self._policies: dict[str, BackendTrafficPolicy] = {}
        self._listeners: list[Callable[[], None]] = []
        self._watch: ListWatch | None = None

    def policies(self) -> tuple[BackendTrafficPolicy, ...]:
        """Sorted by name: equal creationTimestamps go to the first name (oldest-wins ties)."""
        return tuple(self._policies[name] for name in sorted(self._policies))

    def on_change(self, listener: Callable[[], None]) -> None:
        """Called (on the loop) after the first list and whenever the valid set changes."""
        self._listeners.append(listener)

    async def start(self) -> None:
        handler = Collection(POLICY_RESOURCE, self._on_list, self._on_event, self._on_listed)
        self._watch = ListWatch(
            self._api, policies_path(self.namespace), handler, asyncio.get_running_loop(),
            self._settings, name=POLICY_RESOURCE,
        )  # fmt: skip
        self._watch.start()

    async def stop(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            await stop_watches([watch], _JOIN_TIMEOUT_S)

    # -- handlers ---------------------------------------------------------------------------
    def _parse(self, obj: JSON) -> BackendTrafficPolicy | None:
        try:
            return parse_policy_object(obj, "kubernetes")
        except ConfigError as exc:
            name = object_name(obj)
            log.error(
                "invalid_policy_ignored", namespace=metadata(obj).get("namespace", self.namespace),
                name=name, error=str(exc), kept_last_good=name in self._policies,
            )  # fmt: skip
            return None

    def _on_list(self, items: list[JSON]) -> None:
        current: dict[str, BackendTrafficPolicy] = {}
        for obj in items:
            name = object_name(obj)
            policy = self._parse(obj) or self._policies.get(name)
            if policy is not None:
                current[name] = policy
        self._set(current)

    def _on_event(self, event_type: str, obj: JSON) -> None:
        name = object_name(obj)
        current = dict(self._policies)
        if event_type == "DELETED":
            if current.pop(name, None) is None:
                return
        else:
            policy = self._parse(obj)
            if policy is None:
                return
            current[name] = policy
        self._set(current)

    def _on_listed(self, _kind: str) -> None:
        if not self.synced.is_set():
            self.synced.set()
            log.info("policies_synced", namespace=self.namespace, policies=len(self._policies))
            self._notify()

    def _set(self, policies: dict[str, BackendTrafficPolicy]) -> None:
        if policies == self._policies:
            return
        self._policies = policies
        log.info("policies_changed", namespace=self.namespace, policies=sorted(policies))
        if self.synced.is_set():
            self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()
