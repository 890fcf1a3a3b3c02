"""Active-passive leader election on a `coordination.k8s.io/v1` Lease.

The algorithm of client-go's leaderelection, with the Lease as the lock:

- every `retry_period` (≤ 2 s) each replica reads the Lease. Absent: create it (a 409 means
  another replica created it first). Held by someone else and not expired: stand by. Held by
  us, or expired, or released (empty holder): write it back with us as holder and the
  resourceVersion we read, so a concurrent writer gets 409 Conflict and loses;
- expiry is judged on our own monotonic clock: a lease is expired when its record (holder,
  renewTime, resourceVersion) has not changed for `leaseDurationSeconds` since we first saw
  it, so clock skew between replicas does not matter;
- a leader that cannot renew for `renew_deadline` (2/3 of the lease duration) steps down
  before anyone else may take over; on shutdown it releases the Lease (empty holder) so a
  standby takes over at its next retry instead of after the lease duration.

The blocking HTTP calls run one at a time on a thread of their own, each bounded by a request
timeout; a leader's round is also bounded by its renew deadline. A round cut short keeps
running in that thread, so the release on shutdown is queued behind it (it cannot undo the
release), and a stopping elector writes nothing more.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from extproc.k8s.client import JSON, ApiError, request_json
from extproc.k8s.settings import LeaderElectionSettings
from extproc.logs import get_logger

log = get_logger(__name__)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
CONFLICT, NOT_FOUND = 409, 404


@dataclass(frozen=True, slots=True)
class _Observed:
    """The last Lease record we read, and when (monotonic) it last changed."""

    record: tuple[str, str, str]  # holder, renewTime, resourceVersion
    duration: float
    since: float


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, api: Any, namespace: str, settings: LeaderElectionSettings) -> None:
        self._api = api
        self._settings = settings
        self._collection = LEASES.format(namespace=namespace)
        self._path = f"{self._collection}/{settings.lease_name}"
        self._namespace = namespace
        self.is_leader = False
        self._observed: _Observed | None = None
        self._last_renew = 0.0
        self._listeners: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._calls = ThreadPoolExecutor(1, thread_name_prefix="lease")
        self._stopping = False
        self.transitions = 0  # times this replica became leader

    @property
    def identity(self) -> str:
        return self._settings.identity

    def on_change(self, listener: Callable[[], None]) -> None:
        """Called on the loop whenever `is_leader` flips."""
        self._listeners.append(listener)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="leader-election")

    async def stop(self) -> None:
        """Stop campaigning and release the Lease if we hold it (also when a round still in
        flight acquired it while stopping). Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._set_leader(False)
        try:
            # Behind any round still running: one worker thread, calls in order.
            released = await asyncio.wait_for(self._call(self._release), self._timeout() * 3 + 1)
            if released:
                log.info("lease_released", lease=self._settings.lease_name)
        except (ApiError, TimeoutError) as exc:
            log.warning("lease_release_failed", lease=self._settings.lease_name, error=str(exc))
        self._calls.shutdown(wait=False)

    def _call(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(self._calls, fn)

    def _timeout(self) -> float:
        return max(1.0, self._settings.retry_period)

    def _set_leader(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        if leader:
            self.transitions += 1
        log.info(
            "leader_changed", leader=leader, identity=self.identity,
            lease=self._settings.lease_name,
        )  # fmt: skip
        for listener in self._listeners:
            listener()

    async def _run(self) -> None:
        s = self._settings
        # `stop` cancels this task, and also sets `_stopping` first: Python 3.11's wait_for
        # swallows a cancellation that arrives as the call it waits for completes, and the
        # loop must end anyway.
        while not self._stopping:
            limit = self._timeout() * 2 + 1
            if self.is_leader:  # a leader must know by its renew deadline
                limit = min(
                    limit, max(0.01, self._last_renew + s.renew_deadline - time.monotonic())
                )
            try:
                async with asyncio.timeout(limit):
                    held = await self._call(self._attempt)
            except (ApiError, TimeoutError) as exc:
                log.warning("lease_attempt_failed", lease=s.lease_name, error=str(exc))
                held = None  # unknown: keep leading until the renew deadline
            if self._stopping:
                return
            now = time.monotonic()
            if held:
                self._last_renew = now
                self._set_leader(True)
            elif held is False or now - self._last_renew > s.renew_deadline:
                self._set_leader(False)
            await asyncio.sleep(s.retry_period)

    # -- blocking calls (worker thread) -----------------------------------------------------
    def _request(self, method: str, path: str, body: JSON | None = None) -> JSON:
        timeout = self._timeout()
        return request_json(self._api, method, path, body=body, timeout=(timeout, timeout))

    def _observe(self, lease: JSON) -> _Observed:
        spec = lease.get("spec") or {}
        record = (
            str(spec.get("holderIdentity") or ""),
            str(spec.get("renewTime") or ""),
            str((lease.get("metadata") or {}).get("resourceVersion") or ""),
        )
        duration = float(spec.get("leaseDurationSeconds") or self._settings.lease_duration)
        previous = self._observed
        since = previous.since if previous and previous.record == record else time.monotonic()
        return _Observed(record, duration, since)

    def _attempt(self) -> bool | None:
        """One round: True when we hold the Lease afterwards (acquired or renewed), False when
        someone else does, None when unknown (stopping, or our renewal met a conflict)."""
        s = self._settings
        now = _micro_time()
        duration = max(1, math.ceil(s.lease_duration))
        try:
            lease = self._request("GET", self._path)
        except ApiError as exc:
            if exc.status != NOT_FOUND:
                raise
            if self._stopping:
                return None
            body = {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": s.lease_name, "namespace": self._namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": duration,
                         "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
            }  # fmt: skip
            try:
                self._observed = self._observe(self._request("POST", self._collection, body))
            except ApiError as exc2:
                if exc2.status == CONFLICT:
                    return False
                raise
            return True
        observed = self._observe(lease)
        self._observed = observed
        holder = observed.record[0]
        mine = holder == self.identity
        expired = not holder or time.monotonic() - observed.since > observed.duration
        if not mine and not expired:
            return False
        spec = dict(lease.get("spec") or {})
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=duration, renewTime=now)
        if not mine:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = spec  # metadata.resourceVersion stays the one we read
        if self._stopping:
            return None
        try:
            self._observed = self._observe(self._request("PUT", self._path, lease))
        except ApiError as exc:
            if exc.status != CONFLICT:
                raise
            # Someone wrote first. Taking over, we lost this round; renewing, the Lease may
            # still be ours (another field was edited): the next read tells.
            return None if mine else False
        return True

    def _release(self) -> bool:
        """Hand the Lease over if we hold it; True when released."""
        try:
            lease = self._request("GET", self._path)
        except ApiError as exc:
            if exc.status == NOT_FOUND:
                return False
            raise
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            return False
        now = _micro_time()
        spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=now, acquireTime=now)
        lease["spec"] = spec
        self._request("PUT", self._path, lease)
        return True
