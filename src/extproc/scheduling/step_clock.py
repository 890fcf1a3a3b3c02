"""Engine step boundaries per endpoint, inferred from the response chunks the picker relays.

A continuous-batching engine (vLLM, SGLang, TensorRT-LLM) emits tokens only at the end of an
engine step, for every running sequence at once, and admits new requests only at the start of
the next one. A request that arrives mid-step waits for the rest of it: on a pod busy decoding
that is half a step on average (~10 ms of a 20-25 ms step on a 7B model), which no scraped
metric shows. The picker relays every streamed response chunk (ext_proc response body mode
STREAMED or FULL_DUPLEX_STREAMED), so it sees when each pod's steps end: chunks that arrive
together belong to one step, and the gaps between bursts are step durations.

`StepClock` keeps, per endpoint, the time of the last chunk and a moving average of the step
duration, and answers "what fraction of a step until this endpoint starts its next one?".
The answer is 0 when it does not know (no chunk yet, one burst only) or when the step is
overdue (the pod is idle, or running a longer step than usual: a long prefill, which the
picker's pending-prefill count already charges).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import repeat

# Chunks closer than this (or than SAME_STEP_FRACTION of the current estimate) belong to the
# same step: Envoy relays each stream's chunk separately, a burst spreads over a millisecond or
# two under load.
SAME_STEP_S = 0.002
SAME_STEP_FRACTION = 0.25
# Gaps longer than this many estimated steps are idle time or an unusual step (a long prefill
# chunk, a LoRA load), not a new normal: they do not move the average.
MAX_STEP_RATIO = 4.0
# Weight of a new step duration in the moving average.
ALPHA = 0.2


# The phase of an endpoint without an estimate: due long ago, so no wait (see `phases`).
UNKNOWN: tuple[float, float] = (0.0, 0.0)


class StepClock:
    """Per endpoint address: the last chunk's time, the estimated step duration, and the
    derived phase ``(next step due, 1 / duration)`` that scheduling cycles read."""

    __slots__ = ("_phases", "_steps")

    def __init__(self) -> None:
        self._steps: dict[str, list[float]] = {}  # [last chunk time, estimate (0: unknown)]
        self._phases: dict[str, tuple[float, float]] = {}

    def observe(self, address: str, now: float) -> None:
        """A response chunk from `address` arrived at `now` (monotonic seconds)."""
        step = self._steps.get(address)
        if step is None:
            self._steps[address] = [now, 0.0]
            return
        gap = now - step[0]
        step[0] = now
        estimate = step[1]
        if gap >= SAME_STEP_S and gap >= SAME_STEP_FRACTION * estimate:
            if not estimate:
                estimate = step[1] = gap
            elif gap < MAX_STEP_RATIO * estimate:
                estimate = step[1] = estimate + ALPHA * (gap - estimate)
        if estimate:
            self._phases[address] = (now + estimate, 1.0 / estimate)

    def estimates(self) -> dict[str, float]:
        """Address → estimated step duration (seconds), for the endpoints that have one."""
        return {address: step[1] for address, step in self._steps.items() if step[1]}

    def forget(self, address: str) -> None:
        """`address` has nothing in flight: its next chunk starts a fresh burst history."""
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
