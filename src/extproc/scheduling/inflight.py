"""Requests in flight through this picker, per endpoint: fresher than any scrape."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from itertools import repeat

from extproc.scheduling.step_clock import StepClock


class InFlight:
    """Counts requests routed to each endpoint address and not yet finished, the prompt
    tokens those requests are estimated to still prefill (until their first response byte),
    and, from their response chunks, when each endpoint's engine steps end (`StepClock`)."""

    __slots__ = ("_counts", "_prefill", "_steps")

    def __init__(self) -> None:
        self._counts: defaultdict[str, int] = defaultdict(int)
        self._prefill: defaultdict[str, int] = defaultdict(int)
        self._steps = StepClock()

    def started(self, address: str, prefill_tokens: int = 0) -> None:
        self._counts[address] += 1
        if prefill_tokens:
            self._prefill[address] += prefill_tokens

    def prefilled(self, address: str, prefill_tokens: int) -> None:
        """The request's first response byte arrived (or it ended): its prefill is done."""
        if not prefill_tokens:
            return
        left = self._prefill[address] - prefill_tokens
        if left > 0:
            self._prefill[address] = left
        else:
            del self._prefill[address]

    def emitted(self, address: str, now: float) -> None:
        """A response chunk of a request in flight to `address` arrived at `now` (monotonic)."""
        self._steps.observe(address, now)

    def finished(self, address: str) -> None:
        count = self._counts[address] - 1
        if count > 0:
            self._counts[address] = count
        else:
            del self._counts[address]
            self._steps.forget(address)

    def get(self, address: str) -> int:
        return self._counts.get(address, 0)

    def pending_prefill(self, address: str) -> int:
        return self._prefill.get(address, 0)

    def get_many(self, addresses: Sequence[str]) -> list[int]:
        """`get` for many addresses in one C-level pass (the scheduler's per-cycle read)."""
        return list(map(self._counts.get, addresses, repeat(0)))

    def pending_prefill_many(self, addresses: Sequence[str]) -> list[int]:
        return list(map(self._prefill.get, addresses, repeat(0)))

    def step_durations(self) -> dict[str, float]:
        """Address → estimated engine step (seconds), where response chunks have shown one."""
        return self._steps.estimates()

    def step_phases(self, addresses: Sequence[str]) -> Iterator[tuple[float, float]]:
        """`StepClock.phases`: per address ``(due, inverse)``, lazily."""
        return self._steps.phases(addresses)

    def total(self) -> int:
        return sum(self._counts.values())
