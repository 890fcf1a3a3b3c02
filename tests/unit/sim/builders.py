"""Builders for simulator unit tests: engines, requests and a synchronous step driver."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from extproc.sim.engine import Engine, SimClock
from extproc.sim.kvcache import prompt_block_hashes
from extproc.sim.profiles import A10_7B
from extproc.sim.request import SimRequest

_ids = iter(range(1_000_000))


def make_engine(*, max_loras: int = 4, **overrides: int | float) -> Engine:
    """An engine on the a10-7b profile with some constants overridden."""
    profile = dataclasses.replace(A10_7B, **overrides)  # type: ignore[arg-type]
    return Engine(profile, clock=SimClock(1.0), max_loras=max_loras)


def make_request(
    *,
    prompt_len: int = 20,
    tokens: Sequence[str] | None = None,
    max_output: int = 10,
    adapter: str | None = None,
    arrival: float = 0.0,
    seed: str = "/model/llama2",
) -> SimRequest:
    """A request whose prompt is ``tokens`` or ``prompt_len`` distinct tokens."""
    if tokens is None:
        tokens = [f"t{next(_ids)}" for _ in range(prompt_len)]
    return SimRequest(
        request_id=f"r{next(_ids)}",
        adapter=adapter,
        prompt_len=len(tokens),
        block_hashes=prompt_block_hashes(adapter or seed, tokens, 16),
        max_output=max_output,
        stop_reason="length",
        arrival_time=arrival,
    )


def drive(engine: Engine, now: float = 0.0, *, until: float | None = None) -> float:
    """Step ``engine`` on simulated time until idle (or past ``until``); returns the time."""
    for _ in range(100_000):
        if not (engine.running or engine.waiting) or (until is not None and now >= until):
            return now
        batch, prefill, decode = engine.schedule(now)
        if not batch:
            ready = engine.lora.next_ready_at(now)
            assert ready is not None, "engine stuck with nothing runnable"
            now = ready
            continue
        now += engine.profile.step_ms(prefill, decode) / 1000.0
        engine.commit(batch, now)
    raise AssertionError("engine did not go idle")
