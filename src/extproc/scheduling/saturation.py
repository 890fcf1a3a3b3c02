"""Admission: is the pool saturated (no fresh endpoint below the queue and KV thresholds)?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from extproc.scraper.snapshot import EndpointMetrics

DEFAULT_QUEUE_THRESHOLD = 5
DEFAULT_KV_THRESHOLD = 0.8
# The reference sheds non-critical traffic when no endpoint has fresh metrics; we route blind
# (by in-flight counts) instead, so a broken metrics page or a cold start is not an outage.
DEFAULT_SHED_WITHOUT_METRICS = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SaturationConfig:
    queue_threshold: int = DEFAULT_QUEUE_THRESHOLD
    kv_threshold: float = DEFAULT_KV_THRESHOLD
    shed_without_metrics: bool = DEFAULT_SHED_WITHOUT_METRICS


class SaturationDetector:
    """Saturated = no fresh endpoint with waiting ≤ queue_threshold and KV ≤ kv_threshold."""

    __slots__ = ("config",)

    def __init__(self, config: SaturationConfig | None = None) -> None:
        self.config = config or SaturationConfig()

    def has_capacity(self, m: EndpointMetrics) -> bool:
        return m.waiting <= self.config.queue_threshold and m.kv_usage <= self.config.kv_threshold

    def is_saturated(self, fresh: Sequence[EndpointMetrics]) -> bool:
        """`fresh` holds the snapshots of the candidates whose metrics are fresh."""
        if not fresh:
            return self.config.shed_without_metrics
        q, kv = self.config.queue_threshold, self.config.kv_threshold
        return not any(m.waiting <= q and m.kv_usage <= kv for m in fresh)
