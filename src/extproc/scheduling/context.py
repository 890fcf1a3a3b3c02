"""The per-cycle view plugins read: candidate endpoints with their snapshot and in-flight count."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from extproc.config.reload import StaticConfigReloader
from extproc.config.static import StaticConfig
from extproc.endpoints import Endpoint
from extproc.scheduling.inflight import InFlight
from extproc.scheduling.types import LLMRequest
from extproc.scraper.snapshot import EndpointMetrics

# Cycle-state key under which a post-pick hook leaves the primary's prefill estimate (int).
PREFILL_TOKENS_KEY = "prefill_tokens"


@dataclass(slots=True, kw_only=True)
class SchedulingContext:
    """Parallel lists: `addresses[i]`, `metrics[i]`, `inflight[i]` and `prefill[i]` describe
    `endpoints[i]`.

    `state` is scratch space shared by the plugins of one cycle (e.g. the prompt's block
    hashes, computed once by the prefix scorer and reused after the pick).
    """

    request: LLMRequest
    endpoints: list[Endpoint]
    # `endpoints[i].address`, computed once per pool change (the property formats a string).
    addresses: list[str]
    metrics: list[EndpointMetrics]
    inflight: list[int]
    # Prompt tokens still to prefill for requests this picker routed there (first byte pending).
    prefill: list[int] = field(default_factory=list)
    # The cycle's time (the scheduler's monotonic clock, seconds).
    now: float = 0.0
    state: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.endpoints)

    def select(self, indices: Sequence[int]) -> SchedulingContext:
        """A narrower context over `indices` (same request and state)."""
        return SchedulingContext(
            request=self.request,
            endpoints=[self.endpoints[i] for i in indices],
            addresses=[self.addresses[i] for i in indices],
            metrics=[self.metrics[i] for i in indices],
            inflight=[self.inflight[i] for i in indices],
            prefill=[self.prefill[i] for i in indices] if self.prefill else [],
            now=self.now,
            state=self.state,
        )


class PluginHandle:
    """What a plugin factory may use: the shared rng, the picker's in-flight view, plugins
    declared before it, and file watching (`watch_static_config`: the app polls the files off
    the hot path)."""

    def __init__(self, rng: random.Random, inflight: InFlight | None = None) -> None:
        self.rng = rng
        self.inflight = inflight if inflight is not None else InFlight()
        self._plugins: dict[str, object] = {}
        self.watchers: list[StaticConfigReloader] = []

    def watch_static_config(self, path: Path, apply: Callable[[StaticConfig], None]) -> None:
        """Call `apply` with the re-read static config file whenever it changes (an invalid
        edit is logged and ignored)."""
        self.watchers.append(StaticConfigReloader(path, apply))

    def plugin(self, name: str) -> object | None:
        return self._plugins.get(name)

    def add(self, name: str, plugin: object) -> None:
        self._plugins[name] = plugin
