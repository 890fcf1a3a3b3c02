"""LoRA adapter slots: at most ``max_loras`` adapters on the GPU, loaded on demand with a latency.

An adapter occupies a slot from the moment its load starts. A slot can be reused for another
adapter only when its adapter is fully loaded and no running request uses it; the least
recently used such adapter is evicted. Times are simulated seconds.
"""

from __future__ import annotations


class LoraSlots:
    """Which adapters are on the GPU, which are loading, and how many running requests use each."""

    __slots__ = ("_last_used", "_ready_at", "_running", "load_seconds", "loads", "max_loras")

    def __init__(self, max_loras: int, load_seconds: float) -> None:
        if max_loras < 1:
            raise ValueError("max_loras must be at least 1")
        self.max_loras = max_loras
        self.load_seconds = load_seconds
        self._ready_at: dict[str, float] = {}
        self._last_used: dict[str, float] = {}
        self._running: dict[str, int] = {}
        self.loads = 0

    def acquire(self, name: str, now: float) -> bool:
        """True when ``name`` is usable at ``now``; otherwise start loading it if a slot allows.

        A request whose adapter is not ready stays in the waiting queue and asks again on the
        next engine step.
        """
        ready_at = self._ready_at.get(name)
        if ready_at is None:
            if len(self._ready_at) >= self.max_loras and not self._evict_one(now):
                return False
            ready_at = now + self.load_seconds
            self._ready_at[name] = ready_at
            self.loads += 1
        self._last_used[name] = now
        return ready_at <= now

    def _evict_one(self, now: float) -> bool:
        idle = [n for n, t in self._ready_at.items() if t <= now and self._running.get(n, 0) == 0]
        if not idle:
            return False
        victim = min(idle, key=lambda n: self._last_used.get(n, 0.0))
        del self._ready_at[victim]
        self._last_used.pop(victim, None)
        return True

    def next_ready_at(self, now: float) -> float | None:
        """Earliest completion time of a load still in progress, if any."""
        pending = [t for t in self._ready_at.values() if t > now]
        return min(pending) if pending else None

    def start_running(self, name: str) -> None:
        """A request using ``name`` entered the running batch (pins the adapter)."""
        self._running[name] = self._running.get(name, 0) + 1

    def stop_running(self, name: str) -> None:
        """A request using ``name`` left the running batch."""
        count = self._running[name] - 1
        if count:
            self._running[name] = count
        else:
            del self._running[name]

    def loaded(self, now: float) -> list[str]:
        """Adapters fully loaded at ``now``."""
        return sorted(n for n, t in self._ready_at.items() if t <= now)

    def loading(self, now: float) -> list[str]:
        """Adapters whose load is in progress at ``now``."""
        return sorted(n for n, t in self._ready_at.items() if t > now)
