"""A fake Kubernetes API server (aiohttp, loopback) speaking list/watch and Lease CRUD.

Enough of the real protocol for the picker's watchers and leader election: paged-free lists
with ``metadata.resourceVersion``, ``?watch=true&resourceVersion=N&allowWatchBookmarks=true``
streaming newline-delimited events replayed from an event log, ``fieldSelector`` on
``metadata.name``, 410 Gone for compacted versions (as an ERROR event, like the real server),
and optimistic concurrency (409 Conflict) on Leases. Test hooks inject raw events, bookmarks,
expiries and dropped connections.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

INFERENCE = "/apis/inference.networking.x-k8s.io/v1alpha2"
LEASES = "/apis/coordination.k8s.io/v1"
GATEWAY = "/apis/gateway.envoyproxy.io/v1alpha1"
JSON = dict[str, Any]
_DROP = object()
_END = object()


@dataclass
class _Resource:
    objects: dict[tuple[str, str], JSON] = field(default_factory=dict)
    log: list[tuple[int, str, JSON]] = field(default_factory=list)
    compacted: int = 0
    watchers: set[asyncio.Queue[Any]] = field(default_factory=set)


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip
    return web.json_response(body, status=code)


def _name_selector(request: web.Request) -> str | None:
    selector = request.query.get("fieldSelector", "")
    return (
        selector.removeprefix("metadata.name=") if selector.startswith("metadata.name=") else None
    )


class FakeApiServer:
    def __init__(self) -> None:
        self._rv = 100
        self._resources: dict[str, _Resource] = {}
        self.requests: Counter[tuple[str, str]] = Counter()  # (resource, "list"|"watch"|verb)
        self.fail_next: dict[str, list[int]] = {}  # resource -> statuses for the next requests
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/v1/namespaces/{ns}/{resource}", self._collection)
        app.router.add_route("*", "/api/v1/namespaces/{ns}/{resource}/{name}", self._item)
        for prefix in (INFERENCE, LEASES, GATEWAY):
            app.router.add_route("*", prefix + "/namespaces/{ns}/{resource}", self._collection)
            app.router.add_route("*", prefix + "/namespaces/{ns}/{resource}/{name}", self._item)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                      "namespace": namespace}}],
        }  # fmt: skip
        path.write_text(json.dumps(config))
        return path

    # -- state changes (test hooks) ---------------------------------------------------------
    def _resource(self, resource: str) -> _Resource:
        return self._resources.setdefault(resource, _Resource())

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    @property
    def resource_version(self) -> int:
        return self._rv

    def put(self, resource: str, obj: JSON, *, silent: bool = False) -> JSON:
        """Create or replace an object (new resourceVersion) and emit ADDED/MODIFIED.

        `silent` stores the change without an event (a change a client's watch missed).
        """
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        key = (meta["namespace"], meta["name"])
        res = self._resource(resource)
        previous = res.objects.get(key)
        if previous is not None:
            meta.setdefault("creationTimestamp", previous["metadata"]["creationTimestamp"])
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = self._next_rv()
        res.objects[key] = obj
        if not silent:
            self._emit(resource, "MODIFIED" if previous is not None else "ADDED", obj)
        return obj

    def delete(
        self, resource: str, name: str, namespace: str = "default", *, silent: bool = False
    ) -> None:
        res = self._resource(resource)
        obj = res.objects.pop((namespace, name))
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        if not silent:
            self._emit(resource, "DELETED", obj)

    def get(self, resource: str, name: str, namespace: str = "default") -> JSON | None:
        return self._resource(resource).objects.get((namespace, name))

    def _emit(self, resource: str, event_type: str, obj: JSON) -> None:
        res = self._resource(resource)
        rv = int(obj["metadata"]["resourceVersion"])
        res.log.append((rv, event_type, copy.deepcopy(obj)))
        self.inject(resource, event_type, obj)

    def inject(self, resource: str, event_type: str, obj: JSON) -> None:
        """Send a raw event to the open watches only (not stored): out-of-order tests."""
        for queue in self._resource(resource).watchers:
            queue.put_nowait({"type": event_type, "object": copy.deepcopy(obj)})

    def bookmark(self, resource: str) -> None:
        self._rv += 1  # other collections moved on
        obj = {"kind": "Bookmark", "metadata": {"resourceVersion": str(self._rv)}}
        for queue in self._resource(resource).watchers:
            queue.put_nowait({"type": "BOOKMARK", "object": obj})

    def compact(self, resource: str) -> None:
        """Forget the event log: watches from older versions get 410 Gone."""
        res = self._resource(resource)
        res.compacted = self._rv
        res.log.clear()

    def expire_watches(self, resource: str) -> None:
        """Compact, then tell the open watches their version is gone (ERROR 410)."""
        self.compact(resource)
        gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                "reason": "Expired", "message": "too old resource version"}  # fmt: skip
        for queue in self._resource(resource).watchers:
            queue.put_nowait({"type": "ERROR", "object": gone})
            queue.put_nowait(_END)

    def drop_watches(self, resource: str | None = None) -> None:
        """Cut the open watch connections abruptly (no terminating chunk)."""
        for name, res in self._resources.items():
            if resource is None or name == resource:
                for queue in res.watchers:
                    queue.put_nowait(_DROP)

    def watch_count(self, resource: str) -> int:
        return len(self._resource(resource).watchers)

    # -- HTTP -------------------------------------------------------------------------------
    def _injected_failure(self, resource: str) -> web.Response | None:
        pending = self.fail_next.get(resource)
        if pending:
            code = pending.pop(0)
            return _status(code, "InternalError", "injected failure")
        return None

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        resource, ns = request.match_info["resource"], request.match_info["ns"]
        if request.method == "POST":
            return await self._create(request, resource, ns)
        if request.method != "GET":
            return _status(405, "MethodNotAllowed", request.method)
        failure = self._injected_failure(resource)
        if failure is not None:
            return failure
        if request.query.get("watch") in ("true", "1"):
            self.requests[(resource, "watch")] += 1
            return await self._watch(request, resource, ns)
        self.requests[(resource, "list")] += 1
        only = _name_selector(request)
        items = [
            copy.deepcopy(o)
            for (o_ns, name), o in sorted(self._resource(resource).objects.items())
            if o_ns == ns and (only is None or name == only)
        ]
        return web.json_response(
            {
                "kind": "List",
                "apiVersion": "v1",
                "items": items,
                "metadata": {"resourceVersion": str(self._rv)},
            }
        )

    async def _watch(self, request: web.Request, resource: str, ns: str) -> web.StreamResponse:
        res = self._resource(resource)
        since = int(request.query.get("resourceVersion") or self._rv)
        only = _name_selector(request)
        timeout = float(request.query.get("timeoutSeconds") or 300)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if since < res.compacted:
            gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                    "reason": "Expired", "message": "too old resource version"}  # fmt: skip
            queue.put_nowait({"type": "ERROR", "object": gone})
            queue.put_nowait(_END)
        else:
            for rv, event_type, obj in res.log:
                if rv > since:
                    queue.put_nowait({"type": event_type, "object": copy.deepcopy(obj)})
            res.watchers.add(queue)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    break
                if item is _END:
                    break
                if item is _DROP:
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                obj = item["object"]
                meta = obj.get("metadata", {})
                if item["type"] != "BOOKMARK" and item["type"] != "ERROR":
                    if meta.get("namespace", ns) != ns:
                        continue
                    if only is not None and meta.get("name") != only:
                        continue
                await response.write(json.dumps(item).encode() + b"\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            res.watchers.discard(queue)
        return response

    async def _item(self, request: web.Request) -> web.StreamResponse:
        resource, ns, name = (request.match_info[k] for k in ("resource", "ns", "name"))
        self.requests[(resource, request.method)] += 1
        failure = self._injected_failure(resource)
        if failure is not None:
            return failure
        current = self.get(resource, name, ns)
        if request.method == "GET":
            if current is None:
                return _status(404, "NotFound", f'{resource} "{name}" not found')
            return web.json_response(current)
        if request.method == "PUT":
            body = await request.json()
            if current is None:
                return _status(404, "NotFound", f'{resource} "{name}" not found')
            sent = str(body.get("metadata", {}).get("resourceVersion", ""))
            if sent != current["metadata"]["resourceVersion"]:
                return _status(409, "Conflict", "the object has been modified")
            body["metadata"]["namespace"] = ns
            return web.json_response(self.put(resource, body))
        if request.method == "DELETE":
            if current is None:
                return _status(404, "NotFound", f'{resource} "{name}" not found')
            self.delete(resource, name, ns)
            return web.json_response({"kind": "Status", "status": "Success"})
        return _status(405, "MethodNotAllowed", request.method)

    async def _create(self, request: web.Request, resource: str, ns: str) -> web.Response:
        self.requests[(resource, "POST")] += 1
        body = await request.json()
        body.setdefault("metadata", {})["namespace"] = ns
        body["metadata"].pop("resourceVersion", None)
        if self.get(resource, body["metadata"]["name"], ns) is not None:
            return _status(409, "AlreadyExists", "already exists")
        return web.json_response(self.put(resource, body), status=201)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
