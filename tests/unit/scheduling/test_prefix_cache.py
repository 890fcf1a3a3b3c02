"""prefix-cache-scorer: block hashing, the approximate index, LRU capacity and post-pick."""

from __future__ import annotations

import random

import pytest

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle
from extproc.scheduling.plugins.prefix_cache_scorer import PrefixCacheScorer, factory
from extproc.scheduling.prefix_index import PrefixIndex, block_hashes, prompt_text

from .builders import make_context, make_endpoint, make_request

A, B, C = make_endpoint("a"), make_endpoint("b"), make_endpoint("c")


def _scorer(**params: int) -> PrefixCacheScorer:
    return factory(
        "prefix", Fields({"hashBlockSize": 4, **params}, "t"), PluginHandle(random.Random())
    )


def _route(scorer: PrefixCacheScorer, prompt: str, pod: object, model: str = "m") -> None:
    request = make_request(prompt=prompt, model=model)
    scorer.post_pick(request, {}, pod.endpoint, pod.metrics)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("history", "prompt", "want"),
    [
        pytest.param([], "aaaabbbbcccc", [0.0, 0.0, 0.0], id="cold"),
        pytest.param([("aaaabbbbcccc", "a")], "aaaabbbbcccc", [1.0, 0.0, 0.0], id="full-hit"),
        pytest.param(
            [("aaaabbbbxxxx", "a"), ("aaaazzzz", "b")], "aaaabbbbcccc", [2 / 3, 1 / 3, 0.0],
            id="partial-prefixes",
        ),
        pytest.param([("aaaabbbbcccc", "a")], "xaaabbbbcccc", [0.0, 0.0, 0.0],
                     id="first-block-differs-nothing-matches"),
        pytest.param([("aaaabbbbcccc", "a")], "aaa", [0.0, 0.0, 0.0], id="no-complete-block"),
    ],
)  # fmt: skip
def test_prefix_scores(history: list[tuple[str, str]], prompt: str, want: list[float]) -> None:
    scorer = _scorer()
    pods = {"a": A, "b": B, "c": C}
    for text, name in history:
        _route(scorer, text, pods[name])
    ctx = make_context([A, B, C], make_request(prompt=prompt))
    assert list(scorer.score(ctx)) == pytest.approx(want)


def test_hashes_are_seeded_by_model() -> None:
    scorer = _scorer()
    _route(scorer, "aaaabbbb", A, model="m1")
    assert list(scorer.score(make_context([A], make_request(prompt="aaaabbbb", model="m2")))) == [
        0.0
    ]


def test_lru_capacity_evicts_a_chain_from_its_tail() -> None:
    scorer = _scorer(lruCapacityPerServer=2)
    _route(scorer, "aaaabbbbcccc", A)
    assert scorer.index.size(A.address) == 2
    # Like the engine, the index dropped the deepest block: the first two still match.
    scores = scorer.score(make_context([A], make_request(prompt="aaaabbbbcccc")))
    assert list(scores) == [pytest.approx(2 / 3)]
    assert list(scorer.score(make_context([A], make_request(prompt="aaaa")))) == [1.0]
    # Another prompt with the same first block refreshes it; the old tail goes first.
    _route(scorer, "aaaadddd", A)
    scores = scorer.score(make_context([A], make_request(prompt="aaaabbbbcccc")))
    assert list(scores) == [pytest.approx(1 / 3)]


@pytest.mark.parametrize("endpoints", [1, 3, 40], ids=["one", "few", "many-holders-scan"])
def test_match_finds_each_endpoints_deepest_block(endpoints: int) -> None:
    index = PrefixIndex()
    chain = list(range(1, 129))  # 128 chained block hashes
    for i in range(endpoints):
        index.add(f"e{i}", chain[: 1 + (i * 37) % 128], 10_000)
    index.add("other", [999, 1000], 10_000)  # another chain: never matched
    want = {f"e{i}": 1 + (i * 37) % 128 for i in range(endpoints)}
    assert index.match(chain) == want
    assert index.match([500, 2]) == {}  # no endpoint holds this first block
    assert index.match([]) == {}


def test_capacity_from_cache_config() -> None:
    scorer = _scorer()
    pod = make_endpoint("g", block_size=16, num_gpu_blocks=10)
    # 10 blocks x 16 tokens x 4 chars / 4-char hash blocks = 160 blocks.
    assert scorer._capacity(pod.metrics) == 160
    assert scorer._capacity(None) == scorer.capacity


def test_prompt_once_per_cycle_and_chat_text() -> None:
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]}]  # fmt: skip
    assert prompt_text({"messages": messages}) == "system:be brief\nuser:hi\n"
    assert prompt_text({"prompt": ["ab", "cd"]}) == "abcd"
    assert prompt_text({}) == ""
    assert len(block_hashes("m", "x" * 100, 10, 3)) == 3
    scorer = _scorer()
    ctx = make_context([A], make_request(messages=messages))
    scorer.score(ctx)
    cached = ctx.state["prefix.hashes"]
    scorer.post_pick(ctx.request, ctx.state, A.endpoint, None)
    assert ctx.state["prefix.hashes"] is cached
    assert list(scorer.score(make_context([A], make_request(messages=messages)))) == [1.0]


def test_instances_with_other_block_sizes_keep_their_own_cycle_state() -> None:
    fine = factory("fine", Fields({"hashBlockSize": 16}, "t"), PluginHandle(random.Random()))
    coarse = factory("coarse", Fields({"hashBlockSize": 256}, "t"), PluginHandle(random.Random()))
    request = make_request(prompt="x" * 1000)
    fine.post_pick(request, {}, A.endpoint, A.metrics)
    coarse.post_pick(request, {}, A.endpoint, A.metrics)
    state: dict[str, object] = {}
    assert fine.matches(request, state) == {A.address: 62}
    assert coarse.matches(request, state) == {A.address: 3}
    # The uncached tail is the prompt minus whole blocks, never negative.
    assert coarse.uncached_tokens(request, state, [A.address, B.address]) == [
        (1000 - 3 * 256) // 4,
        1000 // 4,
    ]
