"""Requests in flight through this picker, per endpoint: fresher than any scrape."""

from __future__ import annotations

from collections import defaultdict


class InFlight:
    """Counts requests routed to each endpoint address and not yet finished."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: defaultdict[str, int] = defaultdict(int)

    def started(self, address: str) -> None:
        self._counts[address] += 1

    def finished(self, address: str) -> None:
        count = self._counts[address] - 1
        if count > 0:
            self._counts[address] = count
        else:
            del self._counts[address]

    def get(self, address: str) -> int:
        return self._counts.get(address, 0)

    def total(self) -> int:
        return sum(self._counts.values())
