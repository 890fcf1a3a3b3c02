"""A picker that chooses the endpoint with the fewest requests in flight (ties at random)."""

from __future__ import annotations

import random
from collections.abc import Callable

from extproc.endpoints import Endpoint
from extproc.scheduling.candidates import candidates
from extproc.scheduling.inflight import InFlight
from extproc.scheduling.types import LLMRequest, PickResult


class LeastInFlightPicker:
    """Fewest requests in flight through this picker; optional ordered fallbacks."""

    def __init__(
        self,
        endpoints: Callable[[], tuple[Endpoint, ...]],
        inflight: InFlight,
        rng: random.Random,
        fallbacks: int = 0,
    ) -> None:
        self._endpoints = endpoints
        self._inflight = inflight
        self._rng = rng
        self._fallbacks = max(0, fallbacks)  # as the scheduler: a primary at least

    def pick(self, request: LLMRequest) -> PickResult:
        pool = candidates(self._endpoints(), request.subset)
        # Shuffle first so that the stable sort breaks ties at random.
        self._rng.shuffle(pool)
        pool.sort(key=lambda e: self._inflight.get(e.address))
        return PickResult(tuple(pool[: 1 + self._fallbacks]))
