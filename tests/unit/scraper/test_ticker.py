"""Ticker: slot grouping, order, no re-entry into the running slot, isolation of failures."""

from __future__ import annotations

import asyncio

import pytest

from extproc.scraper.ticker import Ticker


async def test_callbacks_run_in_time_order_with_their_arguments() -> None:
    ticker = Ticker(0.005)
    ran: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    start = loop.time()

    def record(name: str) -> None:
        ran.append((name, loop.time() - start))
        if len(ran) == 3:
            done.set()

    ticker.call_later(0.06, record, "late")
    ticker.call_later(0.02, record, "early")
    ticker.call_later(0.04, record, "middle")
    await asyncio.wait_for(done.wait(), 2)
    assert [name for name, _ in ran] == ["early", "middle", "late"]
    for (_, at), want in zip(ran, (0.02, 0.04, 0.06), strict=True):
        assert at >= want - 0.0025 - 0.001  # within half a slot (plus the loop's clock slack)
    ticker.close()


async def test_callbacks_in_one_slot_share_one_loop_timer() -> None:
    ticker = Ticker(0.05)
    ran: list[int] = []
    done = asyncio.Event()

    def record(i: int) -> None:
        ran.append(i)
        if len(ran) == 10:
            done.set()

    loop = asyncio.get_running_loop()
    now = loop.time()
    slot_start = (round(now / 0.05) + 2) * 0.05
    for i in range(10):
        ticker.call_at(slot_start + i * 0.001, record, i)  # all round to one slot
    assert ticker.pending() == 10
    await asyncio.wait_for(done.wait(), 2)
    assert ran == list(range(10))
    ticker.close()


async def test_a_callback_scheduling_for_now_runs_on_a_later_tick() -> None:
    ticker = Ticker(0.002)
    ticks: list[float] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def again() -> None:
        ticks.append(loop.time())
        if len(ticks) < 5:
            ticker.call_at(loop.time(), again)  # "now": must not loop inside this tick
        else:
            done.set()

    ticker.call_later(0, again)
    await asyncio.wait_for(done.wait(), 2)
    assert len(ticks) == 5
    ticker.close()


async def test_a_failing_callback_does_not_stop_the_others() -> None:
    ticker = Ticker(0.01)
    ran: list[str] = []
    done = asyncio.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    ticker.call_later(0.01, boom)
    ticker.call_later(0.01, lambda: (ran.append("after"), done.set()))
    await asyncio.wait_for(done.wait(), 2)
    assert ran == ["after"]
    ticker.close()


async def test_close_drops_pending_callbacks() -> None:
    ticker = Ticker(0.005)
    ran: list[int] = []
    ticker.call_later(0.01, ran.append, 1)
    ticker.close()
    assert ticker.pending() == 0
    await asyncio.sleep(0.03)
    assert ran == []


def test_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Ticker(0)
