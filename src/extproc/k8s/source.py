"""KubernetesSource: keeps the Datastore equal to the cluster's InferencePool, Pods and models.

Three list+watches (see `extproc.k8s.watch`), all scoped to the pool's namespace:

- the InferencePool (``fieldSelector=metadata.name=<pool>``); its deletion clears the store;
- all Pods of the namespace, cached in compact form, so that a change of the pool's selector
  or targetPortNumber recomputes the endpoints without a relist. An endpoint is a Ready pod
  (condition Ready=True, a podIP, no deletionTimestamp) matching the selector, addressed as
  ``podIP:targetPortNumber`` and named after the pod;
- the InferenceModels whose ``spec.poolRef.name`` is the pool (the oldest of duplicates wins,
  by creationTimestamp, then by object name).

Every handler runs on the event loop thread. Events carrying an older resourceVersion than
the one already applied to that object (deletions included) are dropped, so a late or
replayed event cannot regress state. `synced` is set once each collection has been listed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from extproc.api.v1alpha2 import GROUP, InferenceModel, InferencePool
from extproc.config.static import parse_model, parse_pool
from extproc.datastore import Datastore
from extproc.errors import ConfigError
from extproc.k8s.client import JSON
from extproc.k8s.objects import PodInfo, is_older, object_name, pod_info, resource_version
from extproc.k8s.settings import WatchSettings
from extproc.k8s.watch import ListWatch, stop_watches
from extproc.logs import get_logger

log = get_logger(__name__)

MAX_TOMBSTONES = 10_000
_JOIN_TIMEOUT_S = 5.0


class _Versions:
    """The resourceVersion applied per object name, and recent deletions (tombstones)."""

    def __init__(self) -> None:
        self._live: dict[str, str] = {}
        self._deleted: OrderedDict[str, str] = OrderedDict()

    def reset(self, items: list[JSON]) -> None:
        self._live = {object_name(o): resource_version(o) for o in items}
        self._deleted.clear()

    def accept(self, event_type: str, obj: JSON) -> bool:
        """Record the event's version; False when it is older than what was applied."""
        name, version = object_name(obj), resource_version(obj)
        applied = self._live.get(name) or self._deleted.get(name)
        if applied and is_older(version, applied):
            return False
        if event_type == "DELETED":
            self._live.pop(name, None)
            self._deleted[name] = version
            self._deleted.move_to_end(name)
            while len(self._deleted) > MAX_TOMBSTONES:
                self._deleted.popitem(last=False)
        else:
            self._live[name] = version
            self._deleted.pop(name, None)
        return True


class Collection:
    """WatchHandler adapter: version filtering, then the source's callbacks."""

    def __init__(
        self,
        kind: str,
        on_list: Callable[[list[JSON]], None],
        on_event: Callable[[str, JSON], None],
        on_synced: Callable[[str], None],
    ) -> None:
        self.kind = kind
        self._on_list = on_list
        self._on_event = on_event
        self._on_synced = on_synced
        self._versions = _Versions()

    def replace(self, items: list[JSON]) -> None:
        self._versions.reset(items)
        self._on_list(items)
        self._on_synced(self.kind)

    def apply(self, event_type: str, obj: JSON) -> None:
        if self._versions.accept(event_type, obj):
            self._on_event(event_type, obj)
        else:
            log.debug(
                "stale_event_dropped", kind=self.kind, name=object_name(obj),
                resource_version=resource_version(obj),
            )  # fmt: skip


class KubernetesSource:
    """Feeds `datastore` from the API server until `stop()`."""

    def __init__(
        self,
        datastore: Datastore,
        pool_name: str,
        namespace: str,
        api_client: Any,
        *,
        watch: WatchSettings | None = None,
    ) -> None:
        self._datastore = datastore
        self.pool_name = pool_name
        self.namespace = namespace
        self._api = api_client
        self._settings = watch or WatchSettings()
        self.synced = asyncio.Event()
        self._listed: set[str] = set()
        self._listeners: list[Callable[[], None]] = []
        self._pool: InferencePool | None = None
        self._pods: dict[str, PodInfo] = {}
        self._models: dict[str, InferenceModel] = {}
        self._watches: list[ListWatch] = []

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ns = self.namespace
        crd = f"/apis/{GROUP}/v1alpha2/namespaces/{ns}"
        specs = [
            ("inferencepools", f"{crd}/inferencepools", self._pool_list, self._pool_event,
             f"metadata.name={self.pool_name}"),
            ("pods", f"/api/v1/namespaces/{ns}/pods", self._pod_list, self._pod_event, None),
            ("inferencemodels", f"{crd}/inferencemodels", self._model_list, self._model_event,
             None),
        ]  # fmt: skip
        for kind, path, on_list, on_event, selector in specs:
            handler = Collection(kind, on_list, on_event, self._mark_listed)
            watch = ListWatch(
                self._api, path, handler, loop, self._settings, name=kind,
                field_selector=selector,
            )  # fmt: skip
            self._watches.append(watch)
            watch.start()
        log.info("kubernetes_source_started", pool=self.pool_name, namespace=ns)

    async def stop(self) -> None:
        watches, self._watches = self._watches, []
        await stop_watches(watches, _JOIN_TIMEOUT_S)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Called (on the loop) when `synced` is set or the pool appears, changes or goes (its
        `extensionRef.failureMode` is served by `extproc xds`)."""
        self._listeners.append(listener)

    @property
    def ready(self) -> bool:
        """Synced and the pool exists: the picker can route."""
        return self.synced.is_set() and self._pool is not None

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def _mark_listed(self, kind: str) -> None:
        if kind in self._listed:
            return
        self._listed.add(kind)
        if len(self._listed) == 3:
            self.synced.set()
            log.info(
                "kubernetes_synced", pool=self.pool_name, present=self._pool is not None,
                endpoints=len(self._datastore.endpoints()), models=len(self._models),
            )  # fmt: skip
            self._notify()

    # -- pool -------------------------------------------------------------------------------
    def _pool_list(self, items: list[JSON]) -> None:
        mine = [o for o in items if object_name(o) == self.pool_name]
        if not mine:
            self._set_pool(None)
        else:
            self._pool_event("ADDED", mine[0])

    def _pool_event(self, event_type: str, obj: JSON) -> None:
        if object_name(obj) != self.pool_name:
            return
        if event_type == "DELETED":
            self._set_pool(None)
            return
        try:
            pool = parse_pool(obj, f"{self.namespace}")
        except ConfigError as exc:
            log.error("invalid_pool_ignored", pool=self.pool_name, error=str(exc))
            return
        self._set_pool(pool)

    def _set_pool(self, pool: InferencePool | None) -> None:
        previous, self._pool = self._pool, pool
        if pool == previous:
            return
        log.info(
            "pool_changed", pool=self.pool_name, present=pool is not None,
            selector=pool.selector if pool else None, port=pool.target_port if pool else None,
        )  # fmt: skip
        self._datastore.set_pool(pool)  # None clears endpoints and models
        if pool is not None:
            if previous is None:
                self._push_models()
            self._push_endpoints()
        self._notify()

    # -- pods -------------------------------------------------------------------------------
    def _is_endpoint(self, pod: PodInfo | None) -> bool:
        pool = self._pool
        return pod is not None and pool is not None and pod.ready and pod.matches(pool.selector)

    def _pod_list(self, items: list[JSON]) -> None:
        self._pods = {p.name: p for p in map(pod_info, items) if p.name}
        self._push_endpoints()

    def _pod_event(self, event_type: str, obj: JSON) -> None:
        name = object_name(obj)
        before = self._pods.get(name)
        after = None if event_type == "DELETED" else pod_info(obj)
        if after is None:
            self._pods.pop(name, None)
        else:
            self._pods[name] = after
        if self._is_endpoint(before) or self._is_endpoint(after):
            self._push_endpoints()

    def _push_endpoints(self) -> None:
        pool = self._pool
        if pool is None:
            return
        port = pool.target_port
        self._datastore.set_endpoints(
            p.endpoint(port) for p in self._pods.values() if self._is_endpoint(p)
        )

    # -- models -----------------------------------------------------------------------------
    def _parse_model(self, obj: JSON) -> InferenceModel | None:
        spec = obj.get("spec")
        ref = spec.get("poolRef") if isinstance(spec, dict) else None
        if not isinstance(ref, dict) or ref.get("name") != self.pool_name:
            return None
        try:
            return parse_model(obj, self.namespace)
        except ConfigError as exc:
            log.error("invalid_model_ignored", name=object_name(obj), error=str(exc))
            return None

    def _model_list(self, items: list[JSON]) -> None:
        parsed = ((object_name(o), self._parse_model(o)) for o in items)
        self._models = {name: model for name, model in parsed if model is not None}
        self._push_models()

    def _model_event(self, event_type: str, obj: JSON) -> None:
        name = object_name(obj)
        model = None if event_type == "DELETED" else self._parse_model(obj)
        if model is None:
            if self._models.pop(name, None) is None:
                return
        else:
            self._models[name] = model
        self._push_models()

    def _push_models(self) -> None:
        if self._pool is None:
            return
        # Sorted by name: ties of creationTimestamp (one-second resolution) go to the name.
        self._datastore.replace_models(sorted(self._models.values(), key=lambda m: m.name))
