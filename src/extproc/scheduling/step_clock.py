"""Engine step boundaries per endpoint, inferred from the response chunks the picker relays.

A continuous-batching engine (vLLM, SGLang, TensorRT-LLM) emits tokens only at the end of an
engine step, for every running sequence at once, and admits new requests only at the start of
the next one. A request that arrives mid-step waits for the rest of it: on a pod busy decoding
that is half a step on average (~10 ms of a 20-25 ms step on a 7B model), which no scraped
metric shows. The picker relays every streamed response chunk (ext_proc response body mode
STREAMED or FULL_DUPLEX_STREAMED), so it sees when each pod's steps end: chunks that arrive
together belong to one step, and the gaps between bursts are step durations.

`StepClock` keeps, per endpoint, when the current burst of chunks started and the durations of
the last few steps (burst start to burst start); their median is the step estimate, so a long
prefill step, an idle pause or a stray first gap does not stick. It answers "what fraction of
a step until this endpoint starts its next one?". The answer is 0 when it does not know (no
complete step seen yet) or when the step is overdue (the pod is idle, or running a longer step
than usual: a long prefill, which the picker's pending-prefill count already charges).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from itertools import repeat

# Consecutive chunks closer than this belong to one step's burst: the engine emits a step's
# tokens together and Envoy relays each stream's chunk separately, microseconds apart.
SAME_STEP_S = 0.002
# Step durations kept per endpoint; the estimate is their median.
WINDOW = 8


# The phase of an endpoint without an estimate: due long ago, so no wait (see `phases`).
UNKNOWN: tuple[float, float] = (0.0, 0.0)


class _Steps:
    """One endpoint's burst timing."""

    __slots__ = ("burst_start", "durations", "estimate", "last_chunk")

    def __init__(self, now: float) -> None:
        self.burst_start = now
        self.last_chunk = now
        self.durations: deque[float] = deque(maxlen=WINDOW)
        self.estimate = 0.0


class StepClock:
    """Per endpoint address: burst timing, the estimated step duration, and the derived phase
    ``(next step due, 1 / duration)`` that scheduling cycles read."""

    __slots__ = ("_phases", "_steps")

    def __init__(self) -> None:
        self._steps: dict[str, _Steps] = {}
        self._phases: dict[str, tuple[float, float]] = {}

    def observe(self, address: str, now: float) -> None:
        """A response chunk from `address` arrived at `now` (monotonic seconds)."""
        steps = self._steps.get(address)
        if steps is None:
            self._steps[address] = _Steps(now)
            return
        if now < steps.last_chunk:  # an injected clock that went back: not a step boundary
            return
        if now - steps.last_chunk < SAME_STEP_S:  # the same burst
            steps.last_chunk = now
            return
        durations = steps.durations
        durations.append(now - steps.burst_start)
        steps.burst_start = steps.last_chunk = now
        estimate = steps.estimate = sorted(durations)[len(durations) // 2]
        self._phases[address] = (now + estimate, 1.0 / estimate)

    def estimates(self) -> dict[str, float]:
        """Address → estimated step duration (seconds), for the endpoints that have one."""
        return {address: s.estimate for address, s in self._steps.items() if s.estimate}

    def forget(self, address: str) -> None:
        """`address` has nothing in flight: its next chunk starts a fresh history."""
        self._steps.pop(address, None)
        self._phases.pop(address, None)

    def phases(self, addresses: Sequence[str]) -> Iterator[tuple[float, float]]:
        """Per address, ``(due, inverse)``: the fraction of a step until the next one starts
        at `now` is ``max(0, (due - now) x inverse)`` (`UNKNOWN` gives 0). Lazy and C-level,
        for the scorer to fold into its own pass over the endpoints."""
        return map(self._phases.get, addresses, repeat(UNKNOWN))

    def wait_many(self, addresses: Sequence[str], now: float) -> list[float]:
        """Per address, the fraction of a step (0-1) until it likely starts its next step."""
        return [
            w if (w := (due - now) * inverse) > 0.0 else 0.0
            for due, inverse in self.phases(addresses)
        ]
