"""Engine scheduling: batching, chunked prefill, prefix caching, preemption, LoRA waits."""

from __future__ import annotations

import asyncio

import pytest

from extproc.sim.profiles import A10_7B

from .builders import drive, make_engine, make_request


def test_single_request_generates_max_output_tokens_one_per_step() -> None:
    engine = make_engine()
    req = make_request(prompt_len=20, max_output=100)
    engine.add(req)
    end = drive(engine)
    assert req.finished and req.finish_reason == "length"
    assert req.num_output == 100
    assert engine.steps == 0  # drive() bypasses the loop's step counter
    assert engine.stats.generation_tokens == 100
    assert engine.stats.prompt_tokens == 20
    # The calibration: 100 tokens, short prompt, idle a10-7b pod: 1.5..3 s.
    assert 1.5 <= end <= 3.0
    assert engine.kv.usage == 0.0


def test_ttft_rises_with_queue_length() -> None:
    engine = make_engine(max_num_seqs=2)
    reqs = [make_request(prompt_len=50, max_output=20) for _ in range(6)]
    for req in reqs:
        engine.add(req)
    drive(engine)
    ttfts = [r.first_token_time for r in reqs]
    assert all(t is not None for t in ttfts)
    assert ttfts[0] == ttfts[1]  # batched together
    assert ttfts[1] < ttfts[2] == ttfts[3] < ttfts[4]  # type: ignore[operator]


def test_long_prompt_is_prefilled_in_chunks_of_the_token_budget() -> None:
    engine = make_engine(max_num_batched_tokens=512)
    req = make_request(prompt_len=1300, max_output=1)
    engine.add(req)
    batch, prefill, decode = engine.schedule(0.0)
    assert batch == [(req, 512)] and prefill == 512 and decode == 0
    engine.commit(batch, 0.1)
    assert req.num_computed == 512 and req.num_output == 0
    drive(engine, 0.1)
    assert req.num_output == 1


def test_repeated_prefix_hits_the_cache_and_shortens_ttft() -> None:
    engine = make_engine()
    system = [f"s{i}" for i in range(1024)]
    first = make_request(tokens=[*system, "q1"], max_output=1)
    engine.add(first)
    end = drive(engine)
    second = make_request(tokens=[*system, "q2", "more"], max_output=1, arrival=end)
    engine.add(second)
    drive(engine, end)
    assert first.first_token_time is not None and second.first_token_time is not None
    ttft_first = first.first_token_time - first.arrival_time
    ttft_second = second.first_token_time - second.arrival_time
    assert ttft_second < ttft_first / 3
    assert second.num_prompt_cached == 1024
    assert engine.stats.prefix_hits == 1024
    assert engine.stats.prefix_queries == 1025 + 1026


def test_fully_cached_prompt_still_computes_its_last_token() -> None:
    engine = make_engine()
    tokens = [f"x{i}" for i in range(64)]
    engine.add(make_request(tokens=tokens, max_output=1))
    end = drive(engine)
    again = make_request(tokens=tokens, max_output=1)
    engine.add(again)
    _, prefill, _ = engine.schedule(end)
    assert again.num_prompt_cached == 48  # 3 of 4 blocks: at least one token is computed
    assert prefill == 16


def test_adapter_seeds_the_prefix_chain() -> None:
    engine = make_engine()
    tokens = [f"x{i}" for i in range(64)]
    engine.add(make_request(tokens=tokens, max_output=1))
    end = drive(engine)
    other = make_request(tokens=tokens, max_output=1, adapter="sql-lora")
    engine.add(other)
    drive(engine, end)
    assert other.num_prompt_cached == 0


def test_kv_exhaustion_preempts_newest_request_and_everything_finishes() -> None:
    engine = make_engine(num_gpu_blocks=40)  # 640 tokens
    reqs = [make_request(prompt_len=150, max_output=120) for _ in range(3)]
    for req in reqs:
        engine.add(req)
    peak = 0.0
    now = 0.0
    while engine.running or engine.waiting:
        now = drive(engine, now, until=now + 0.05)
        peak = max(peak, engine.kv.usage)
    assert engine.stats.preemptions > 0
    assert peak > 0.9
    assert all(r.finished and r.num_output == 120 for r in reqs)
    assert engine.kv.usage == 0.0


def test_preempted_request_goes_to_front_of_waiting_queue() -> None:
    engine = make_engine(num_gpu_blocks=10)
    old = make_request(prompt_len=70, max_output=50)
    new = make_request(prompt_len=70, max_output=50)
    engine.add(old)
    engine.add(new)
    later = make_request(prompt_len=10, max_output=5)
    now = 0.0
    while engine.stats.preemptions == 0:
        now = drive(engine, now, until=now + 0.02)
    engine.add(later)
    assert engine.waiting[0] is new
    assert new.num_computed == 0 and new.blocks == []


def test_max_num_seqs_limits_running() -> None:
    engine = make_engine(max_num_seqs=3)
    for _ in range(5):
        engine.add(make_request())
    engine.schedule(0.0)
    assert len(engine.running) == 3 and len(engine.waiting) == 2


def test_unloaded_adapter_waits_for_a_slot_while_others_proceed() -> None:
    engine = make_engine(max_loras=1)
    a = make_request(adapter="a", max_output=30)
    b = make_request(adapter="b", max_output=5)
    base = make_request(max_output=5)
    for req in (a, b, base):
        engine.add(req)
    now = drive(engine, 0.0, until=A10_7B.lora_load_ms / 1000 + 0.1)
    gauges = engine.gauges()
    assert gauges.running_loras == ("a",)
    assert gauges.waiting_loras == ("b",)
    assert base.finished  # the base model is not blocked behind b
    drive(engine, now)
    assert a.finished and b.finished
    assert b.first_token_time is not None and a.finish_time is not None
    assert b.first_token_time > a.finish_time
    assert engine.lora.loads == 2


def test_lora_load_latency_delays_first_token() -> None:
    engine = make_engine()
    req = make_request(adapter="a", max_output=1)
    engine.add(req)
    drive(engine)
    assert req.first_scheduled_time == pytest.approx(A10_7B.lora_load_ms / 1000)


def test_abort_frees_blocks_and_counts_abort() -> None:
    engine = make_engine()
    req = make_request(prompt_len=100, max_output=50)
    engine.add(req)
    drive(engine, until=0.1)
    assert engine.kv.usage > 0
    engine.abort(req)
    assert engine.kv.usage == 0.0 and not engine.running
    assert req.finish_reason == "abort"
    assert engine.stats.success["abort"] == 1
    engine.abort(req)  # idempotent
    assert engine.stats.success["abort"] == 1


def test_abort_of_waiting_request_removes_it() -> None:
    engine = make_engine()
    req = make_request()
    engine.add(req)
    engine.abort(req)
    assert not engine.waiting and req.finished


def test_latency_histograms_are_observed() -> None:
    engine = make_engine()
    engine.add(make_request(max_output=5))
    drive(engine)
    stats = engine.stats
    assert stats.ttft.count == 1 and stats.e2e.count == 1 and stats.queue_time.count == 1
    assert stats.itl.count == 4
    assert stats.success["length"] == 1


async def test_run_loop_paces_steps_by_speed() -> None:
    import asyncio

    from extproc.sim.engine import Engine, SimClock

    engine = Engine(A10_7B, clock=SimClock(20.0), max_loras=1)
    task = asyncio.create_task(engine.run())
    req = make_request(prompt_len=10, max_output=40, arrival=engine.clock.now())
    engine.add(req)
    start = asyncio.get_running_loop().time()
    while not req.finished:
        await req.wait_progress()
    wall = asyncio.get_running_loop().time() - start
    task.cancel()
    modelled = engine.busy_sim_seconds / 20.0
    assert engine.steps == 40
    assert wall == pytest.approx(modelled, rel=0.3, abs=0.02)


async def test_cancelling_an_idle_engine_stops_it_even_as_it_is_woken() -> None:
    # Python 3.11's wait_for swallowed a cancellation arriving with the wake-up: `run`, which
    # is stopped by cancelling it, went on.
    engine = make_engine()
    idle = asyncio.create_task(engine._idle_until_runnable(0.0))
    await asyncio.sleep(0.01)
    engine._wake.set()  # a request arrives...
    idle.cancel()  # ...as the simulator shuts down
    with pytest.raises(asyncio.CancelledError):
        await idle
