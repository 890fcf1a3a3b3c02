"""The prefill scorer and the picker's own prefill accounting."""

from __future__ import annotations

import random
from typing import Any

import pytest

from extproc.config.strict import Fields
from extproc.errors import ConfigError
from extproc.scheduling.config import parse_config
from extproc.scheduling.context import PluginHandle
from extproc.scheduling.inflight import InFlight
from extproc.scheduling.plugins import prefill_scorer
from extproc.scheduling.plugins.prefix_cache_scorer import PrefixCacheScorer
from tests.unit.scheduling.builders import make_context, make_endpoint, make_request, make_scheduler

HEAD = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"

SYSTEM = "You are a helpful assistant. " * 80  # ~2,300 characters shared by every request


def _scorer(
    half: int = 2048,
    *,
    step_tokens: int = 0,
    inflight: InFlight | None = None,
    lora_load_tokens: int = 0,
    inflight_tokens: int = 0,
) -> tuple[prefill_scorer.PrefillScorer, PrefixCacheScorer]:
    prefix = PrefixCacheScorer(
        "prefix-cache-scorer", block_chars=64, max_blocks=256, capacity=10_000, chars_per_token=4
    )
    scorer = prefill_scorer.PrefillScorer(
        "prefill-scorer", half_score=half, prefix=prefix, step_tokens=step_tokens,
        lora_load_tokens=lora_load_tokens, inflight_tokens=inflight_tokens, inflight=inflight,
    )  # fmt: skip
    return scorer, prefix


def test_idle_endpoints_score_by_the_prompt_they_must_prefill() -> None:
    scorer, prefix = _scorer()
    a, b = make_endpoint("a"), make_endpoint("b")
    request = make_request(prompt=SYSTEM + "question one")
    ctx = make_context([a, b], request)
    ctx.prefill = [0, 0]
    # Nobody holds the prefix yet: equal scores, K / (K + prompt tokens).
    scores = scorer.score(ctx)
    tokens = len(SYSTEM + "question one") // 4
    assert scores == pytest.approx([2048 / (2048 + tokens)] * 2)
    # After `b` served the same prefix, only the unshared tail remains there.
    prefix.index.add(b.address, prefix.hashes(request, {}), 10_000)
    ctx = make_context([a, b], make_request(prompt=SYSTEM + "question two"))
    ctx.prefill = [0, 0]
    score_a, score_b = scorer.score(ctx)
    assert score_b > score_a
    assert score_b > 0.9


def test_pending_prefill_weighs_against_an_endpoint() -> None:
    scorer, _ = _scorer()
    a, b = make_endpoint("a"), make_endpoint("b")
    ctx = make_context([a, b], make_request(prompt="short prompt"))
    ctx.prefill = [6000, 0]
    score_a, score_b = scorer.score(ctx)
    assert score_a < 0.3 < 0.9 < score_b


def test_an_endpoint_mid_step_costs_the_rest_of_the_step() -> None:
    inflight = InFlight()
    a, b = make_endpoint("a"), make_endpoint("b")
    for pod, last_chunk in ((a, 1.030), (b, 1.010)):
        inflight.started(pod.address)
        inflight.emitted(pod.address, last_chunk - 0.020)
        inflight.emitted(pod.address, last_chunk)  # steps of 20 ms
    scorer, _ = _scorer(step_tokens=200, inflight=inflight)
    ctx = make_context([a, b], make_request(prompt="p" * 400))  # 100 tokens
    ctx.prefill, ctx.now = [0, 0], 1.035
    # `a` started a step 5 ms ago (15 ms left: 3/4 of 200 tokens), `b` is due now.
    assert scorer.score(ctx) == pytest.approx([2048 / (2048 + 100 + 150), 2048 / (2048 + 100)])
    # stepTokens 0 turns the term off.
    plain, _ = _scorer(step_tokens=0, inflight=inflight)
    assert plain.score(ctx) == pytest.approx([2048 / (2048 + 100)] * 2)


@pytest.mark.parametrize(
    ("target", "pods", "expected_tokens"),
    [
        # Running on `b`: `a` must load it first (a free slot).
        ("sql-lora", ({}, {"running": ["sql-lora"]}), (100 + 400, 100)),
        # Only waiting on `b`, whose slots are all taken: it waits for a slot, then loads.
        ("sql-lora", ({}, {"running": ["w", "x", "y", "z"], "waiting": ["sql-lora"]}),
         (100 + 400, 100 + 800)),
        # Running nowhere: a load everywhere, after a free slot where all are taken.
        ("sql-lora", ({"running": ["w", "x", "y", "z"]}, {"running": ["tweet"]}),
         (100 + 800, 100 + 400)),
        # The base model is charged alike: kept off endpoints whose slots adapters need.
        ("base", ({"running": ["sql-lora"]}, {}), (100 + 400, 100 + 400)),
        # No adapter slots reported (max_lora 0): nothing to tell endpoints apart.
        ("sql-lora", ({"max_lora": 0}, {"max_lora": 0}), (100 + 400, 100 + 400)),
    ],
)  # fmt: skip
def test_lora_load_tokens_charge_endpoints_without_the_adapter_running(
    target: str, pods: tuple[dict[str, Any], ...], expected_tokens: tuple[int, int]
) -> None:
    scorer, _ = _scorer(lora_load_tokens=400)
    endpoints = [
        make_endpoint(name, loras=each.get("running", ()), waiting_loras=each.get("waiting", ()),
                      max_lora=each.get("max_lora", 4))
        for name, each in zip("ab", pods, strict=True)
    ]  # fmt: skip
    ctx = make_context(endpoints, make_request(target=target, prompt="p" * 400))  # 100 tokens
    ctx.prefill = [0, 0]
    assert scorer.score(ctx) == pytest.approx([2048 / (2048 + t) for t in expected_tokens])
    # The charge steers the choice only; the pending prefill recorded after the pick is the
    # prompt alone.
    scorer.post_pick(ctx.request, ctx.state, endpoints[0].endpoint, endpoints[0].metrics)
    assert ctx.state["prefill_tokens"] == 100


def test_inflight_tokens_charge_each_request_in_flight() -> None:
    scorer, _ = _scorer(inflight_tokens=100)
    pods = [make_endpoint("a", inflight=3), make_endpoint("b", inflight=0)]
    ctx = make_context(pods, make_request(prompt="p" * 400))  # 100 tokens
    ctx.prefill = [0, 500]
    # `a`: 100 + 3 x 100; `b`: 100 + 500 pending.
    assert scorer.score(ctx) == pytest.approx([2048 / (2048 + 400), 2048 / (2048 + 600)])


def test_post_pick_leaves_the_estimate_and_the_scheduler_returns_it() -> None:
    pods = [make_endpoint("a"), make_endpoint("b")]
    scheduler, _ = make_scheduler(pods, "default")
    result = scheduler.pick(make_request(prompt="x" * 4000))
    assert result.prefill_tokens == 1000
    # The same prompt again: the chosen endpoint now likely holds nearly all of it.
    again = scheduler.pick(make_request(prompt="x" * 4000))
    if again.primary == result.primary:
        assert again.prefill_tokens < 100  # at most the last partial prefix block


def test_inflight_prefill_accounting() -> None:
    inflight = InFlight()
    inflight.started("a", 500)
    inflight.started("a", 300)
    assert (inflight.get("a"), inflight.pending_prefill("a")) == (2, 800)
    inflight.prefilled("a", 500)
    assert inflight.pending_prefill("a") == 300
    inflight.prefilled("a", 300)
    inflight.finished("a")
    inflight.finished("a")
    assert (inflight.get("a"), inflight.pending_prefill("a")) == (0, 0)


def test_factory_reads_step_tokens_and_uses_the_handles_inflight() -> None:
    handle = PluginHandle(random.Random(0), InFlight())
    handle.add("prefix-cache-scorer", _scorer()[1])
    scorer = prefill_scorer.factory("p", Fields({"stepTokens": 240}, "t"), handle)
    assert (scorer.step_tokens, scorer.inflight) == (240, handle.inflight)
    default = prefill_scorer.factory("p", Fields({}, "t"), handle)
    assert default.step_tokens == prefill_scorer.DEFAULT_STEP_TOKENS
    with pytest.raises(ConfigError, match="stepTokens"):
        prefill_scorer.factory("p", Fields({"stepTokens": -1}, "t"), handle)
    for key, attr, value in (("loraLoadTokens", "lora_load_tokens", 400),
                             ("inflightTokens", "inflight_tokens", 64)):  # fmt: skip
        assert getattr(default, attr) == 0
        assert (
            getattr(prefill_scorer.factory("p", Fields({key: value}, "t"), handle), attr) == value
        )
        with pytest.raises(ConfigError, match=key):
            prefill_scorer.factory("p", Fields({key: -1}, "t"), handle)


def test_factory_requires_a_declared_prefix_scorer() -> None:
    handle = PluginHandle(random.Random(0))
    with pytest.raises(ConfigError, match="prefixScorer"):
        prefill_scorer.factory("prefill-scorer", Fields({}, "epp.yaml: plugins[0]"), handle)


def test_endpoints_that_leave_the_pool_are_forgotten_by_the_prefix_index() -> None:
    from tests.unit.scheduling.builders import FakeDatastore

    pods = [make_endpoint("a"), make_endpoint("b")]
    scheduler, _ = make_scheduler(pods, "default")
    datastore = FakeDatastore(pods)
    scheduler._endpoints = datastore.endpoints  # the pool the scheduler reads
    primary = scheduler.pick(make_request(prompt="y" * 4000)).primary
    prefix = next(h for h, _ in scheduler._post_pick if isinstance(h, PrefixCacheScorer))
    assert prefix.index.size(primary.address) > 0
    datastore.eps = tuple(p.endpoint for p in pods if p.endpoint != primary)
    scheduler.pick(make_request(prompt="z" * 400))
    assert prefix.index.size(primary.address) == 0


def test_the_prefix_index_learns_when_only_prefill_scorer_is_in_the_profile() -> None:
    # prefill-scorer reads the prefix scorer's index: its post-pick runs even when the prefix
    # scorer itself is only declared, not listed in the profile.
    config = parse_config(
        HEAD + "plugins:\n- type: prefix-cache-scorer\n- type: prefill-scorer\n"
        "schedulingProfiles:\n- name: p\n  plugins:\n  - {pluginRef: prefill-scorer}\n",
        "epp.yaml",
    )
    scheduler, _ = make_scheduler([make_endpoint("a"), make_endpoint("b")], config)
    request = make_request(prompt="x" * 4000)  # 1,000 tokens
    assert scheduler.pick(request).prefill_tokens == 1000
    assert scheduler.pick(request).prefill_tokens < 1000  # its prefix is held now


def test_the_estimate_is_the_same_without_fresh_metrics() -> None:
    # Without fresh metrics the profile does not run; the estimate must still count the prompt
    # the endpoint did not hold before this request (not after its own blocks were recorded).
    request = make_request(prompt="z" * 4000)
    fresh, _ = make_scheduler([make_endpoint("a"), make_endpoint("b")], "default")
    stale, _ = make_scheduler(
        [make_endpoint("a", fresh=False), make_endpoint("b", fresh=False)], "default"
    )
    assert stale.pick(request).prefill_tokens == fresh.pick(request).prefill_tokens == 1000
