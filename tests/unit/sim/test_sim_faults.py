"""Fault settings: validation of runtime updates and the injected behaviour."""

from __future__ import annotations

import asyncio

import pytest

from extproc.sim.faults import FaultConfig, Faults
from extproc.sim.openai_api import ApiError


def test_update_applies_known_keys() -> None:
    config = FaultConfig().updated({"error_rate": 1, "latency_ms": 5, "stall": True})
    assert config == FaultConfig(error_rate=1.0, latency_ms=5.0, stall=True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"bogus": 1}, "unknown fault setting", id="unknown-key"),
        pytest.param({"error_rate": 2}, "between 0 and 1", id="rate-too-big"),
        pytest.param({"error_rate": "x"}, "number", id="rate-not-number"),
        pytest.param({"latency_ms": -1}, "negative", id="negative-latency"),
        pytest.param({"stall": 1}, "boolean", id="stall-not-bool"),
        pytest.param({"error_status": 404}, "5xx", id="not-5xx"),
    ],
)
def test_bad_updates_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultConfig().updated(changes)


async def test_error_rate_one_always_fails_with_the_status() -> None:
    faults = Faults(FaultConfig(error_rate=1.0, error_status=503), seed=0)
    with pytest.raises(ApiError) as err:
        await faults.apply()
    assert err.value.status == 503 and faults.injected_errors == 1


async def test_error_rate_is_roughly_honoured() -> None:
    faults = Faults(FaultConfig(error_rate=0.3), seed=1)
    failures = 0
    for _ in range(1000):
        try:
            await faults.apply()
        except ApiError:
            failures += 1
    assert 250 < failures < 350


async def test_stall_waits_until_released() -> None:
    faults = Faults(FaultConfig(stall=True), seed=0)
    task = asyncio.create_task(faults.apply())
    await asyncio.sleep(0.01)
    assert not task.done()
    faults.released.set()
    with pytest.raises(ApiError):
        await task
