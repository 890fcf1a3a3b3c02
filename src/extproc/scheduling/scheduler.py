"""The Scheduler: admission, fresh-metrics candidates, one profile run, fallbacks, post-pick."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from time import perf_counter

from extproc.config.reload import StaticConfigReloader
from extproc.endpoints import Endpoint
from extproc.errors import PoolSaturated
from extproc.logs import get_logger
from extproc.metrics import PickerMetrics
from extproc.scheduling.candidates import candidates
from extproc.scheduling.context import PREFILL_TOKENS_KEY, SchedulingContext
from extproc.scheduling.framework import SchedulingProfile, plugin_timer
from extproc.scheduling.inflight import InFlight
from extproc.scheduling.plugin import Plugin, PostPick
from extproc.scheduling.saturation import SaturationDetector
from extproc.scheduling.types import LLMRequest, PickResult
from extproc.scraper.snapshot import MetricsStore

log = get_logger(__name__)


class Scheduler:
    """Implements `EndpointPicker` with a scheduling profile over fresh metrics snapshots.

    - Candidates are the pool's endpoints narrowed by the request's subset hint.
    - Non-Critical requests raise PoolSaturated (429) when the detector says saturated;
      Critical requests are never shed.
    - Only endpoints with fresh snapshots enter the profile. When none is fresh the pick falls
      back to the fewest in-flight requests (random tie-break) among all candidates.
    - The result holds the primary then up to `fallbacks` more endpoints, ranked by the picker
      and topped up from the other fresh candidates (fewest in flight first); never stale ones
      while fresh ones exist.
    - Post-pick hooks see the primary. The caller increments InFlight (not done here).
    """

    def __init__(
        self,
        *,
        endpoints: Callable[[], tuple[Endpoint, ...]],
        store: MetricsStore,
        inflight: InFlight,
        profile: SchedulingProfile,
        saturation: SaturationDetector,
        rng: random.Random,
        post_pick: Sequence[PostPick] = (),
        metrics: PickerMetrics | None = None,
        fallbacks: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoints = endpoints
        self._store = store
        self._inflight = inflight
        self.profile = profile
        self.saturation = saturation
        self._rng = rng
        self._count = 1 + max(0, fallbacks)
        self._clock = clock
        self._cached_for: tuple[Endpoint, ...] | None = None
        self._cached_addresses: list[str] = []
        self._e2e = metrics.scheduler_e2e.observe if metrics is not None else None
        # Files plugins follow (`PluginHandle.watch_static_config`); the app polls them.
        self.watchers: tuple[StaticConfigReloader, ...] = ()
        self._post_pick = [
            (hook, plugin_timer(metrics, "PostPick", hook) if isinstance(hook, Plugin) else None)
            for hook in post_pick
        ]

    def pick(self, request: LLMRequest) -> PickResult:
        started = perf_counter()
        try:
            return self._pick(request)
        finally:
            if self._e2e is not None:
                self._e2e(perf_counter() - started)

    def endpoints_changed(self, endpoints: tuple[Endpoint, ...]) -> None:
        """The pool's endpoints changed (the datastore's listener): endpoints that left are
        forgotten now, so one that leaves and comes back before the next pick (a restarted
        pod, its cache empty) does not keep its old prefix entries."""
        if endpoints is not self._cached_for:
            addresses = [e.address for e in endpoints]
            # Post-pick plugins drop what they learnt about departed endpoints (the prefix
            # index would otherwise grow with every pod ever seen).
            for gone in set(self._cached_addresses).difference(addresses):
                for hook, _ in self._post_pick:
                    hook.forget(gone)
            self._cached_for = endpoints
            self._cached_addresses = addresses

    def _pool(self, request: LLMRequest) -> tuple[list[Endpoint], list[str]]:
        """Candidates and their addresses; addresses are cached per endpoints tuple."""
        endpoints = self._endpoints()
        self.endpoints_changed(endpoints)  # a no-op unless the tuple changed
        if request.subset is None and endpoints:
            return list(endpoints), self._cached_addresses
        pool = candidates(endpoints, request.subset)
        return pool, [e.address for e in pool]

    def _pick(self, request: LLMRequest) -> PickResult:
        pool, addresses = self._pool(request)
        now = self._clock()
        fresh_metrics = self._store.fresh_all(addresses, now)
        if fresh_metrics is not None:  # every candidate is fresh: no per-endpoint copying
            fresh_eps, fresh_addresses = pool, addresses
        else:
            fresh_eps, fresh_addresses, fresh_metrics = [], [], []
            snapshots = self._store.fresh_many(addresses, now)
            for endpoint, address, snapshot in zip(pool, addresses, snapshots, strict=True):
                if snapshot is not None:
                    fresh_eps.append(endpoint)
                    fresh_addresses.append(address)
                    fresh_metrics.append(snapshot)
        if request.criticality != "Critical" and self.saturation.is_saturated(fresh_metrics):
            raise PoolSaturated("every endpoint is over the saturation thresholds")
        state: dict[str, object] = {}
        if fresh_eps:
            ctx = SchedulingContext(
                request=request,
                endpoints=fresh_eps,
                addresses=fresh_addresses,
                metrics=fresh_metrics,
                inflight=self._inflight.get_many(fresh_addresses),
                prefill=self._inflight.pending_prefill_many(fresh_addresses),
                now=now,
                state=state,
            )
            chosen = self.profile.run(ctx, self._count)
            if len(chosen) < self._count and len(fresh_eps) > len(chosen):
                chosen += self._least_inflight(fresh_eps, chosen, self._count - len(chosen))
        else:
            log.debug("schedule_without_metrics", request_id=request.request_id)
            chosen = self._least_inflight(pool, [], self._count)
        primary = chosen[0]
        if self._post_pick:
            snapshot = self._store.get(primary.address)
            for hook, observe in self._post_pick:
                hook_started = perf_counter()
                hook.post_pick(request, state, primary, snapshot)
                if observe is not None:
                    observe(perf_counter() - hook_started)
        estimate = state.get(PREFILL_TOKENS_KEY)
        return PickResult(tuple(chosen), estimate if isinstance(estimate, int) else 0)

    def _least_inflight(
        self, pool: Sequence[Endpoint], taken: Sequence[Endpoint], count: int
    ) -> list[Endpoint]:
        rest = [e for e in pool if e not in taken]
        self._rng.shuffle(rest)  # the stable sort then breaks ties at random
        get = self._inflight.get
        rest.sort(key=lambda e: get(e.address))
        return rest[:count]
