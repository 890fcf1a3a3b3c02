"""Ticker: slot grouping, order, no re-entry into the running slot, isolation of failures."""

from __future__ import annotations

import asyncio
import time

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


async def test_a_late_tick_does_not_run_the_next_slot_early() -> None:
    resolution = 0.01
    ticker = Ticker(resolution)
    loop = asyncio.get_running_loop()
    slot = round(loop.time() / resolution) + 5
    ran: dict[str, float] = {}
    ticker.call_at(slot * resolution, lambda: ran.setdefault("first", loop.time()))
    asked = (slot + 1) * resolution + 0.004  # the next slot
    ticker.call_at(asked, lambda: ran.setdefault("next", loop.time()))

    def busy() -> None:  # the loop is held for 7 ms just before the first slot
        until = time.monotonic() + 0.007
        while time.monotonic() < until:
            pass

    loop.call_at(slot * resolution - 0.001, busy)
    await asyncio.sleep(0.12)
    assert ran["next"] >= asked - resolution / 2 - 0.0005
    ticker.close()


async def test_a_base_exception_in_a_callback_leaves_the_ticker_running() -> None:
    ticker = Ticker(0.005)
    done = asyncio.Event()

    def cancelled() -> None:
        raise asyncio.CancelledError

    ticker.call_later(0.01, cancelled)  # escapes the tick (asyncio logs it)
    await asyncio.sleep(0.05)
    ticker.call_later(0.01, done.set)
    await asyncio.wait_for(done.wait(), 2)
    ticker.close()


async def test_a_closed_ticker_works_on_another_loop() -> None:
    ticker = Ticker(0.005)
    ticker.call_later(0.01, lambda: None)
    ticker.close()

    def on_new_loop() -> bool:
        async def main() -> bool:
            done = asyncio.Event()
            ticker.call_later(0.01, done.set)
            await asyncio.wait_for(done.wait(), 2)
            return True

        return asyncio.run(main())

    assert await asyncio.to_thread(on_new_loop)
