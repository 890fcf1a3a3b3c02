"""Builders and fakes for scheduling tests."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extproc.api.v1alpha2 import Criticality
from extproc.endpoints import Endpoint
from extproc.metrics import PickerMetrics
from extproc.scheduling.config import EndpointPickerConfig
from extproc.scheduling.context import SchedulingContext
from extproc.scheduling.factory import build_scheduler
from extproc.scheduling.inflight import InFlight
from extproc.scheduling.scheduler import Scheduler
from extproc.scheduling.types import LLMRequest
from extproc.scraper.snapshot import EndpointMetrics, MetricsStore

NOW = 1000.0


@dataclass(frozen=True)
class Pod:
    endpoint: Endpoint
    metrics: EndpointMetrics
    inflight: int = 0
    fresh: bool = True

    @property
    def address(self) -> str:
        return self.endpoint.address


def make_endpoint(
    name: str,
    *,
    waiting: int = 0,
    kv: float = 0.0,
    running: int = 0,
    loras: Iterable[str] = (),
    waiting_loras: Iterable[str] = (),
    max_lora: int = 0,
    inflight: int = 0,
    fresh: bool = True,
    block_size: int = 0,
    num_gpu_blocks: int = 0,
) -> Pod:
    """A pod with a snapshot; its IP is derived from the name (stable, distinct in practice)."""
    n = zlib.crc32(name.encode())
    ep = Endpoint(name, f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 8000)
    metrics = EndpointMetrics(
        waiting=waiting, running=running, kv_usage=kv, running_loras=frozenset(loras),
        waiting_loras=frozenset(waiting_loras), max_lora=max_lora, block_size=block_size,
        num_gpu_blocks=num_gpu_blocks, updated_at=NOW if fresh else NOW - 60.0,
    )  # fmt: skip
    return Pod(ep, metrics, inflight, fresh)


def make_request(
    *,
    model: str = "m",
    target: str | None = None,
    criticality: Criticality = "Standard",
    prompt: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    subset: Iterable[str] | None = None,
) -> LLMRequest:
    body: dict[str, Any] = {"model": model}
    if prompt is not None:
        body["prompt"] = prompt
    if messages is not None:
        body["messages"] = messages
    return LLMRequest(
        request_id="r1", model=model, target_model=target or model, criticality=criticality,
        body=body, subset=None if subset is None else frozenset(subset),
    )  # fmt: skip


def make_context(pods: Sequence[Pod], request: LLMRequest | None = None) -> SchedulingContext:
    return SchedulingContext(
        request=request or make_request(),
        endpoints=[p.endpoint for p in pods],
        addresses=[p.address for p in pods],
        metrics=[p.metrics for p in pods],
        inflight=[p.inflight for p in pods],
    )


class FakeDatastore:
    """The one method the scheduler needs from the datastore."""

    def __init__(self, pods: Sequence[Pod]) -> None:
        self.eps = tuple(p.endpoint for p in pods)

    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.eps


@dataclass
class Harness:
    pods: Sequence[Pod]
    store: MetricsStore
    inflight: InFlight
    metrics: PickerMetrics


def make_harness(pods: Sequence[Pod]) -> Harness:
    store = MetricsStore(staleness=1.0)
    inflight = InFlight()
    for pod in pods:
        store.put(pod.address, pod.metrics)
        for _ in range(pod.inflight):
            inflight.started(pod.address)
    return Harness(pods, store, inflight, PickerMetrics())


def make_scheduler(
    pods: Sequence[Pod],
    config: str | Path | EndpointPickerConfig = "default",
    *,
    fallbacks: int = 0,
    seed: int = 1,
) -> tuple[Scheduler, Harness]:
    h = make_harness(pods)
    scheduler = build_scheduler(
        config, datastore=FakeDatastore(pods), store=h.store, inflight=h.inflight,
        metrics=h.metrics, rng=random.Random(seed), fallbacks=fallbacks, clock=lambda: NOW,
    )  # fmt: skip
    return scheduler, h
