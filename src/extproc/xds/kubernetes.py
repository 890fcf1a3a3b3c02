"""Kubernetes mode of `extproc xds`: resources from the Ready pods and the namespace's policies.

Two sources, both list+watch (`extproc.k8s`): `KubernetesSource` keeps a Datastore equal to the
InferencePool and its Ready pods (``podIP:targetPortNumber``), `PolicySource` keeps the
namespace's valid BackendTrafficPolicies. Every change of either (endpoint churn, policy
create/update/delete, the pool appearing or going) rebuilds the resources with the same
translation as the file mode (`extproc.xds.resources.resources_for`); the cache sends only the
types whose content changed.

Nothing is published until both sources have listed once, so Envoy never sees a transient
"no policy" or "no endpoints" state at start-up. Which policy governs the pool:
`extproc.envoyconf.policy.policy_for_pool` with `route_name` (None: any HTTPRoute of the
namespace counts as the route in front of the pool).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from extproc.datastore import Datastore
from extproc.envoyconf.ads import ClusterMode
from extproc.envoyconf.bootstrap import ROUTE_TIMEOUT_S
from extproc.envoyconf.policy import policy_for_pool
from extproc.k8s.policies import PolicySource
from extproc.k8s.settings import WatchSettings
from extproc.k8s.source import KubernetesSource
from extproc.logs import get_logger
from extproc.xds.cache import ResourceCache, short_types
from extproc.xds.resources import breaker_spec, failure_mode, resources_for

log = get_logger(__name__)


class KubernetesWatcher:
    """`await run(stop)` watches until `stop` is set; `synced` is set at the first publish."""

    def __init__(
        self,
        api_client: Any,
        *,
        pool_name: str,
        namespace: str,
        route_name: str | None,
        mode: ClusterMode,
        cache: ResourceCache,
        watch: WatchSettings | None = None,
        route_timeout_s: int = ROUTE_TIMEOUT_S,
    ) -> None:
        self.pool_name = pool_name
        self.route_timeout_s = route_timeout_s
        self.namespace = namespace
        self.route_name = route_name
        self.mode = mode
        self.cache = cache
        self.synced = asyncio.Event()
        # The Datastore only carries the pool and its endpoints here; the rng is never used.
        self.datastore = Datastore(random.Random(0))
        self.source = KubernetesSource(
            self.datastore, pool_name, namespace, api_client, watch=watch
        )
        self.policies = PolicySource(namespace, api_client, watch=watch)
        self.datastore.on_endpoints_changed(self._changed)
        self.source.on_change(self._changed)
        self.policies.on_change(self._changed)

    async def run(self, stop: asyncio.Event) -> None:
        await self.source.start()
        await self.policies.start()
        log.info(
            "kubernetes_watch_started", pool=self.pool_name, namespace=self.namespace,
            route=self.route_name or "*", mode=self.mode,
        )  # fmt: skip
        try:
            await stop.wait()
        finally:
            await self.source.stop()
            await self.policies.stop()

    def _changed(self, *_: object) -> None:
        self.publish()

    def publish(self) -> bool:
        """Rebuild and publish the resources; True when a type changed (False before sync)."""
        if not (self.source.synced.is_set() and self.policies.synced.is_set()):
            return False
        policies = self.policies.policies()
        policy = policy_for_pool(policies, self.pool_name, self.route_name)
        endpoints = self.datastore.endpoints()
        failure = failure_mode(self.datastore.pool())
        resources = resources_for(
            breaker_spec(policy), endpoints, self.mode, failure,
            route_timeout_s=self.route_timeout_s,
        )  # fmt: skip
        changed = self.cache.update(resources)
        if changed or not self.synced.is_set():
            log.info(
                "kubernetes_state_published", pool=self.pool_name,
                pool_present=self.datastore.pool() is not None, endpoints=len(endpoints),
                policy=f"{policy.namespace}/{policy.name}" if policy else None,
                policies=len(policies), mode=self.mode, failure_mode=failure,
                changed=short_types(changed), versions=self.cache.versions_text(),
            )  # fmt: skip
        self.synced.set()
        return bool(changed)
