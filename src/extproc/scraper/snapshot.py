"""The immutable per-endpoint metrics snapshot and the store the hot path reads it from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

# A snapshot older than this is stale and never used for scoring (20 scrapes at 50 ms: tolerant
# of event-loop hiccups; fast failures mark an endpoint unhealthy sooner, see ScrapeConfig).
DEFAULT_STALENESS_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointMetrics:
    """What one scrape of a model server's /metrics page said, and when (monotonic seconds)."""

    waiting: int = 0
    running: int = 0
    kv_usage: float = 0.0
    running_loras: frozenset[str] = frozenset()
    waiting_loras: frozenset[str] = frozenset()
    # 0 when the server exports no LoRA info (no adapter slots known).
    max_lora: int = 0
    # Cache geometry from cache_config_info; 0 when not exported.
    block_size: int = 0
    num_gpu_blocks: int = 0
    prefix_cache_queries: float = 0.0
    prefix_cache_hits: float = 0.0
    updated_at: float = 0.0


class MetricsStore:
    """Latest snapshot per endpoint address. Writers replace whole values; readers never lock.

    A snapshot is *fresh* when it exists, is at most `staleness` seconds old and its endpoint
    is not marked unhealthy (several scrapes in a row failed).
    """

    __slots__ = ("_snapshots", "_unhealthy", "staleness")

    def __init__(self, staleness: float = DEFAULT_STALENESS_S) -> None:
        self.staleness = staleness
        self._snapshots: dict[str, EndpointMetrics] = {}
        self._unhealthy: set[str] = set()

    def get(self, address: str) -> EndpointMetrics | None:
        return self._snapshots.get(address)

    def is_fresh(self, address: str, now: float) -> bool:
        snap = self._snapshots.get(address)
        return (
            snap is not None
            and address not in self._unhealthy
            and now - snap.updated_at <= self.staleness
        )

    def fresh(self, address: str, now: float) -> EndpointMetrics | None:
        """The snapshot if it is fresh, else None (one lookup for the hot path)."""
        snap = self._snapshots.get(address)
        if snap is None or now - snap.updated_at > self.staleness or address in self._unhealthy:
            return None
        return snap

    def fresh_many(self, addresses: list[str], now: float) -> list[EndpointMetrics | None]:
        """`fresh` for many addresses in one call (the scheduler's per-cycle read)."""
        oldest = now - self.staleness
        unhealthy = self._unhealthy
        get = self._snapshots.get
        out: list[EndpointMetrics | None] = []
        for address in addresses:
            snap = get(address)
            out.append(
                snap
                if snap is not None and snap.updated_at >= oldest and address not in unhealthy
                else None
            )
        return out

    def fresh_all(self, addresses: list[str], now: float) -> list[EndpointMetrics] | None:
        """The snapshots of `addresses` when every one is fresh, else None (then use
        `fresh_many`): the hot path's common case, without per-address branching."""
        got = list(map(self._snapshots.get, addresses))
        if not all(got) or (self._unhealthy and not self._unhealthy.isdisjoint(addresses)):
            return None
        snaps = cast("list[EndpointMetrics]", got)
        if snaps and min([s.updated_at for s in snaps]) < now - self.staleness:
            return None
        return snaps

    def put(self, address: str, metrics: EndpointMetrics) -> None:
        self._snapshots[address] = metrics
        self._unhealthy.discard(address)

    def mark_unhealthy(self, address: str) -> None:
        self._unhealthy.add(address)

    def is_healthy(self, address: str) -> bool:
        return address not in self._unhealthy

    def remove(self, address: str) -> None:
        self._snapshots.pop(address, None)
        self._unhealthy.discard(address)

    def addresses(self) -> tuple[str, ...]:
        return tuple(self._snapshots)
