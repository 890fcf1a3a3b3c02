"""List + watch of one namespaced collection, in a dedicated thread.

Why threads: the `kubernetes` client is synchronous (urllib3). Each collection gets one
daemon thread that lists (paged), then watches from the list's resourceVersion with
``allowWatchBookmarks=true``, and hands every result to the event loop with
`loop.call_soon_threadsafe`, so the handler — and with it every datastore write — runs on the
loop thread, in order, without locks. A dedicated thread (not `asyncio.to_thread`) because a
watch blocks for minutes and would starve the loop's small default executor.

Recovery: a watch that ends normally (server timeout) resumes from the last resourceVersion
seen (events and bookmarks); HTTP 410 Gone, or an ERROR event with code 410, means that
version was compacted: list again. HTTP 404 means the API server does not serve the
collection (its CRD is not installed, e.g. BackendTrafficPolicy without Envoy Gateway): the
handler gets an empty list, so that its consumers start, and the list is retried with backoff
until the CRD appears. Any other failure (connection refused or dropped, 5xx,
bad JSON) waits with exponential backoff and jitter, capped, then watches again from the
last resourceVersion (a failed list is retried the same way). `stop()` shuts the socket of
the open watch down, so the thread exits at once instead of at the next read timeout.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from extproc.k8s.client import JSON, ApiError, open_request, request_json
from extproc.k8s.settings import WatchSettings
from extproc.logs import get_logger

log = get_logger(__name__)

GONE = 410
NOT_FOUND = 404
# A watch that ends this soon without delivering anything counts as a failure (no hot loop).
_MIN_HEALTHY_WATCH_S = 1.0


class WatchHandler(Protocol):
    """Receives one collection's state on the event loop thread."""

    def replace(self, items: list[JSON]) -> None:
        """A full list: the collection is exactly `items` now."""

    def apply(self, event_type: str, obj: JSON) -> None:
        """One ADDED, MODIFIED or DELETED event."""


class _Gone(Exception):
    """The resourceVersion we asked for is too old: relist."""


class _Stopped(Exception):
    pass


class ListWatch:
    def __init__(
        self,
        api: Any,
        path: str,
        handler: WatchHandler,
        loop: asyncio.AbstractEventLoop,
        settings: WatchSettings,
        *,
        name: str,
        field_selector: str | None = None,
    ) -> None:
        self._api = api
        self._path = path
        self._handler = handler
        self._loop = loop
        self._settings = settings
        self._name = self.name = name
        self._field_selector = field_selector
        self._stop = threading.Event()
        self._response_lock = threading.Lock()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)
        self.lists = 0  # completed lists (for tests and logs)
        # The resourceVersion of the last event delivered: where a failed watch resumes.
        self._seen = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to exit and unblock its read; `join()` waits for it."""
        self._stop.set()
        with self._response_lock:
            response, self._response = self._response, None
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # already released or closed: the read is over anyway
                log.debug("watch_shutdown_failed", resource=self._name)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        delay = self._settings.backoff
        version = ""
        missing = False  # the collection answered 404 and the handler holds an empty list
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._list()
                    delay = self._settings.backoff
                    missing = False
                self._seen = version
                version, healthy = self._watch(version)
                if healthy:
                    delay = self._settings.backoff
                    continue
                raise ApiError(0, "watch closed without events")
            except _Stopped:
                return
            except _Gone:
                log.info("watch_expired", resource=self._name, resource_version=version)
                version = ""
            except ApiError as exc:
                if self._stop.is_set():
                    return
                if version:  # a watch failed: resume after the last event it delivered
                    version = self._seen
                if exc.status == NOT_FOUND:
                    version = ""  # list again once it is served
                    if not missing:
                        missing = True
                        log.warning("collection_not_served", resource=self._name, path=self._path)
                        try:
                            self._post(self._handler.replace, [])
                        except _Stopped:
                            return
                wait = delay * random.uniform(0.8, 1.2)
                log.warning(
                    "watch_failed", resource=self._name, error=str(exc), retry_in=round(wait, 3)
                )
                delay = min(delay * 2, self._settings.max_backoff)
                # Resume from `version`: if it is too old by then, the server answers 410.
                if self._stop.wait(wait):
                    return

    def _post(self, callback: Any, *args: Any) -> None:
        if self._stop.is_set():
            raise _Stopped
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError as exc:  # the loop is closed: nobody is listening any more
            raise _Stopped from exc

    def _query(self, extra: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        query = list(extra)
        if self._field_selector:
            query.append(("fieldSelector", self._field_selector))
        return query

    def _list(self) -> str:
        items: list[JSON] = []
        cont = ""
        s = self._settings
        while True:
            query = [("limit", str(s.page_size))] + ([("continue", cont)] if cont else [])
            try:
                page = request_json(
                    self._api, "GET", self._path, query=self._query(query),
                    timeout=(s.connect_timeout, s.list_timeout),
                )  # fmt: skip
            except ApiError as exc:
                if exc.status == GONE and cont:  # the continue token expired: start over
                    items, cont = [], ""
                    continue
                raise
            raw_items = page.get("items") or []
            if not isinstance(raw_items, list):
                raise ApiError(200, "list: items is not a list")
            items.extend(i for i in raw_items if isinstance(i, dict))
            meta = page.get("metadata") or {}
            cont = str(meta.get("continue") or "")
            if not cont:
                version = str(meta.get("resourceVersion") or "")
                break
        self._post(self._handler.replace, items)
        self.lists += 1
        log.debug("listed", resource=self._name, items=len(items), resource_version=version)
        return version

    def _watch(self, version: str) -> tuple[str, bool]:
        """Watch from `version`; return the last version seen and whether the watch was healthy."""
        s = self._settings
        query = [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(s.timeout_seconds)),
        ]
        started = time.monotonic()
        response = open_request(
            self._api, "GET", self._path, query=self._query(query),
            timeout=(s.connect_timeout, s.timeout_seconds + 30),
        )  # fmt: skip
        with self._response_lock:
            self._response = response
        if self._stop.is_set():
            response.close()
            raise _Stopped
        events = 0
        complete = False
        try:
            if response.status == GONE:
                raise _Gone
            if response.status != 200:
                raise ApiError(response.status, str(response.reason))
            pending = b""
            for chunk in response.stream(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        version = self._seen = self._event(line, version)
                        events += 1
            complete = True
        except (_Gone, _Stopped, ApiError):
            raise
        except Exception as exc:  # dropped connection, protocol error, read timeout
            if self._stop.is_set():
                raise _Stopped from exc
            raise ApiError(0, f"watch interrupted: {type(exc).__name__}: {exc}") from exc
        finally:
            with self._response_lock:
                self._response = None
            if complete:
                response.release_conn()
            else:  # never hand a half-read connection back to the pool
                response.close()
        if self._stop.is_set():
            raise _Stopped
        healthy = events > 0 or time.monotonic() - started >= _MIN_HEALTHY_WATCH_S
        return version, healthy

    def _event(self, line: bytes, version: str) -> str:
        try:
            event = json.loads(line)
            event_type = str(event["type"])
            obj = event["object"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(200, f"bad watch event: {exc}") from exc
        if not isinstance(obj, dict):
            raise ApiError(200, "bad watch event: object is not a JSON object")
        if event_type == "ERROR":
            if obj.get("code") == GONE:
                raise _Gone
            raise ApiError(int(obj.get("code") or 0), str(obj.get("message", "watch error")))
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if event_type in ("ADDED", "MODIFIED", "DELETED"):
            self._post(self._handler.apply, event_type, obj)
        elif event_type != "BOOKMARK":
            log.warning("watch_event_unknown", resource=self._name, type=event_type)
        return new_version


async def stop_watches(watches: Sequence[ListWatch], within: float) -> None:
    """Stop every watch and wait for their threads together, `within` seconds in all. A
    thread still blocked then (a list request the API server does not answer; only open
    watches can be interrupted) is a daemon: it ends with the process."""
    for watch in watches:
        watch.stop()

    def join() -> None:
        deadline = time.monotonic() + within
        for watch in watches:
            watch.join(max(0.0, deadline - time.monotonic()))

    await asyncio.to_thread(join)
    stuck = [w.name for w in watches if w.alive]
    if stuck:
        log.warning("watch_threads_still_blocked", resources=",".join(stuck))
