"""Ticker: coarse timers for many periodic jobs, run from one event-loop timer.

The scraper wants two timers per endpoint and scrape: the next scrape and the request's
timeout. As asyncio timers, each is a `TimerHandle` pushed into the loop's heap, ordered by a
Python-level `__lt__`; a cancelled timeout stays in the heap until its time comes, so at 100
endpoints every 50 ms the heap held ~2,000 handles and pushing into it was a tenth of the
scraper's CPU (`make bench-scheduling`). The ticker rounds each time to a slot of
`resolution` seconds: callbacks that share a slot share one loop timer, and an entry is a
list append. There is no cancel: a callback checks whether it still applies (the scrape
loop's and the HTTP client's do).
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable
from typing import Any

from extproc.logs import get_logger

log = get_logger(__name__)

# Callbacks run within half a slot of the asked time; a job re-arming every `interval` stays
# on the same slot (no drift). The scrape manager picks its own resolution (MAX_TICK_S).
DEFAULT_RESOLUTION_S = 0.002

_Entry = tuple[Callable[..., object], tuple[Any, ...]]


class Ticker:
    """Run callbacks at about a given loop time, grouped into `resolution`-wide slots.

    Bound lazily to the running loop on first use; `close()` drops everything pending.
    """

    def __init__(self, resolution: float = DEFAULT_RESOLUTION_S) -> None:
        if resolution <= 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self._resolution = resolution
        self._slots: dict[int, list[_Entry]] = {}
        self._order: list[int] = []  # heap of the slot numbers in `_slots`
        self._ran = -1  # the last slot run: new entries go after it
        self._armed: int | None = None  # the slot the loop timer is set for
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> None:
        """Call `callback(*args)` about `delay` seconds from now (within half a slot)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self.call_at(loop.time() + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> None:
        """Call `callback(*args)` at about loop time `when`; never within the running slot."""
        slot = max(round(when / self._resolution), self._ran + 1)
        entries = self._slots.get(slot)
        if entries is not None:
            entries.append((callback, args))
            return
        self._slots[slot] = [(callback, args)]
        heapq.heappush(self._order, slot)
        if self._armed is None or slot < self._armed:
            self._arm(slot)

    def pending(self) -> int:
        """Callbacks waiting to run."""
        return sum(len(entries) for entries in self._slots.values())

    def close(self) -> None:
        """Drop everything pending; the ticker may be used again (on any loop)."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._armed = self._loop = None
        self._slots.clear()
        self._order.clear()
        self._ran = -1

    def _arm(self, slot: int) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if self._handle is not None:
            self._handle.cancel()
        self._armed = slot
        self._handle = loop.call_at(slot * self._resolution, self._tick)

    def _tick(self) -> None:
        self._handle = None
        self._armed = -1  # callbacks' new entries wait for the re-arm below
        assert self._loop is not None
        # The slots that have begun: a late tick must not run the next slot early. (The loop
        # may run a timer a clock-resolution early, hence the microsecond.)
        now = math.floor((self._loop.time() + 1e-6) / self._resolution)
        order, slots = self._order, self._slots
        try:
            while order and order[0] <= now:
                slot = heapq.heappop(order)
                self._ran = slot
                for callback, args in slots.pop(slot):
                    try:
                        callback(*args)
                    except Exception as exc:  # one failing job must not stop the others
                        name = getattr(callback, "__qualname__", repr(callback))
                        log.error("ticker_callback_failed", callback=name, error=repr(exc),
                                  exc_info=True)  # fmt: skip
        finally:  # even a BaseException from a callback must leave the ticker armed
            self._armed = None
            if order:
                self._arm(order[0])
