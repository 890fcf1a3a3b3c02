"""endpoint-capacity-filter: skip endpoints whose per-endpoint circuit breaker is full."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from extproc.config.static import StaticConfig, load_static_config
from extproc.config.strict import Fields
from extproc.envoyconf.policy import policy_for_pool
from extproc.errors import ConfigError
from extproc.logs import get_logger
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Filter

log = get_logger(__name__)

POLICY_UNLIMITED = 1024  # Envoy's default max_requests when a policy leaves it unset


class EndpointCapacityFilter(Filter):
    """Keep endpoints with ``inflight < maxParallelRequests``.

    For `extproc xds --cluster-mode per-endpoint`, where Envoy holds one cluster per endpoint
    with ``max_requests = maxParallelRequests``: a request sent to a full endpoint would be
    answered 503 (overflow) although another endpoint had room. Input: the picker's own
    in-flight count per endpoint (`SchedulingContext.inflight`). When every endpoint is full the
    filter keeps them all (empty result): Envoy's breaker is the safety net, not the scheduler.

    Parameters (one of):
      ``maxParallelRequests``: the per-endpoint limit;
      ``staticConfig``: a static config file whose BackendTrafficPolicy for the pool gives
      ``circuitBreaker.maxParallelRequests``; re-read when the file changes (as `extproc xds`
      re-reads it), so the filter and Envoy's breakers follow the same edit. An edit that
      leaves no policy for the pool keeps the last limit.
    """

    plugin_type = "endpoint-capacity-filter"

    def __init__(self, name: str, limit: int) -> None:
        super().__init__(name)
        self.limit = limit

    def filter(self, ctx: SchedulingContext) -> Sequence[int]:
        limit = self.limit
        return [i for i, n in enumerate(ctx.inflight) if n < limit]


def factory(name: str, params: Fields, handle: PluginHandle) -> EndpointCapacityFilter:
    limit: int | None = params.integer("maxParallelRequests", None, lo=1)
    path: str | None = params.string("staticConfig", None)
    if (limit is None) == (path is None):
        raise ConfigError(f"{params.where}: set exactly one of maxParallelRequests, staticConfig")
    if path is None:
        assert limit is not None
        return EndpointCapacityFilter(name, limit)
    where = f"{params.where}.staticConfig"
    plugin = EndpointCapacityFilter(name, POLICY_UNLIMITED)

    def follow(config: StaticConfig) -> None:
        new_limit = _policy_limit(config)
        if new_limit is None:
            log.error("capacity_policy_missing", plugin=name, file=path, kept=plugin.limit)
        elif new_limit != plugin.limit:
            log.info("capacity_limit_changed", plugin=name, old=plugin.limit, new=new_limit)
            plugin.limit = new_limit

    # Watch first: the watcher's baseline is the file before our read, so an edit landing
    # between the two is still seen.
    handle.watch_static_config(Path(path), follow)
    found = _policy_limit(load_static_config(Path(path)))
    if found is None:
        raise ConfigError(f"{where}: {path} has no BackendTrafficPolicy for the pool")
    plugin.limit = found
    return plugin


def _policy_limit(config: StaticConfig) -> int | None:
    """The pool's maxParallelRequests (Envoy's default when unset); None without a policy."""
    policy = policy_for_pool(config.policies, config.pool.name)
    if policy is None:
        return None
    limit = policy.circuit_breaker.max_parallel_requests
    return POLICY_UNLIMITED if limit is None else limit
