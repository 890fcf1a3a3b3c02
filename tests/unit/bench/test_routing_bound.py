"""The offline replay of bench-routing-bound: the engine model stepped in simulated time."""

from __future__ import annotations

import dataclasses

import pytest

from bench.routing_bound import PER_REQUEST_S, Pod, replay
from bench.routing_workload import BenchRequest, build, ideal_ttft_s
from extproc.sim.profiles import A10_7B
from extproc.sim.request import SimRequest


def _spaced(requests: list[BenchRequest], gap_s: float) -> list[BenchRequest]:
    return [dataclasses.replace(r, index=i, offset_s=i * gap_s) for i, r in enumerate(requests)]


def test_a_request_alone_on_a_pod_meets_its_floor_once_the_prefix_is_cached() -> None:
    chat = [r for r in build(200, 1.0, 42) if r.tenant == "chat-a"]
    # A minute apart, each request is done before the next. Round-robin over 8 pods sends
    # requests 0 and 8 to pod 0: the first prefills the system prompt, the second finds it.
    requests = _spaced(chat[:9], 60.0)
    ttft = replay(requests, "round-robin")
    assert ttft[0] > ideal_ttft_s(requests[0]) + 0.2
    assert ttft[8] == pytest.approx(ideal_ttft_s(requests[8]))


def test_the_oracle_sends_a_request_to_the_pod_holding_its_prefix() -> None:
    chat = [r for r in build(200, 1.0, 42) if r.tenant == "chat-a"][:2]
    requests = _spaced(chat, 60.0)
    round_robin = replay(requests, "round-robin")
    oracle = replay(requests, "oracle")
    assert oracle[1] == pytest.approx(ideal_ttft_s(requests[1]))
    assert round_robin[1] > 2 * oracle[1]  # pod 1 is cold


@pytest.mark.parametrize("router", ["round-robin", "oracle", "oracle-pod", "estimate"])
def test_every_request_gets_a_first_token_under_load(router: str) -> None:
    requests = build(120, 40.0, 7)
    ttft = replay(requests, router)
    assert len(ttft) == len(requests)
    assert all(t >= ideal_ttft_s(r) - 1e-9 for t, r in zip(ttft, requests, strict=True))


def test_an_unknown_router_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown router"):
        replay(build(1, 1.0, 1), "fastest")


def _sim(rid: str, hashes: list[int], prompt: int) -> SimRequest:
    return SimRequest(request_id=rid, adapter=None, prompt_len=prompt, block_hashes=hashes,
                      max_output=1, stop_reason="length", arrival_time=0.0)  # fmt: skip


def test_the_estimate_counts_what_a_waiting_request_has_left_to_prefill() -> None:
    bs = A10_7B.block_size
    shared = list(range(1, 2048 // bs + 1))
    pod = Pod()
    pod.add(_sim("warm", shared, 2048), 0.0)
    pod.advance(10.0)  # done; its blocks stay cached
    pod.add(_sim("long", list(range(10_000, 10_000 + 2000 // bs)), 2000), 10.0)  # prefilling
    cached = _sim("cached", shared, 2048)
    pod.add(cached, 10.0)  # waits for the step in progress, 16 tokens left to prefill
    assert list(pod.engine.waiting) == [cached]
    tokens = 2000 + 16 + 15
    expected = tokens * A10_7B.prefill_token_us / 1e6 + 2 * PER_REQUEST_S
    assert pod.estimate_s(10.0, _sim("tiny", [], 15)) == pytest.approx(expected)
