"""KV-cache block manager: prefix hash chains, reference counts, LRU eviction."""

from __future__ import annotations

import pytest

from extproc.sim.kvcache import KVCache, prompt_block_hashes


def test_hash_chain_covers_full_blocks_only() -> None:
    tokens = [str(i) for i in range(40)]
    assert len(prompt_block_hashes("m", tokens, 16)) == 2
    assert prompt_block_hashes("m", tokens[:15], 16) == []


def test_hash_chain_depends_on_seed_and_every_previous_block() -> None:
    a = [str(i) for i in range(48)]
    b = ["x", *a[1:]]
    ha, hb = prompt_block_hashes("m", a, 16), prompt_block_hashes("m", b, 16)
    assert ha[0] != hb[0] and ha[1] != hb[1]  # same second block, different history
    assert prompt_block_hashes("m", a, 16) == ha
    assert prompt_block_hashes("lora", a, 16)[0] != ha[0]


def test_allocate_is_all_or_nothing() -> None:
    kv = KVCache(4, 16)
    blocks: list[int] = []
    assert not kv.allocate(blocks, (), 5)
    assert blocks == [] and kv.num_free == 4
    assert kv.allocate(blocks, (), 3)
    assert len(blocks) == 3 and kv.usage == pytest.approx(0.75)


def test_released_blocks_stay_cached_until_evicted() -> None:
    kv = KVCache(4, 16)
    hashes = [11, 22]
    blocks: list[int] = []
    kv.allocate(blocks, (), 2)
    for block, h in zip(blocks, hashes, strict=True):
        kv.cache_block(block, h)
    kv.release(blocks)
    assert kv.usage == 0.0
    hits = kv.match_prefix([11, 22, 33])
    assert hits == blocks
    again: list[int] = []
    assert kv.allocate(again, hits, 0)
    assert again == blocks and kv.num_free == 2


def test_match_stops_at_first_miss() -> None:
    kv = KVCache(4, 16)
    blocks: list[int] = []
    kv.allocate(blocks, (), 2)
    kv.cache_block(blocks[1], 22)
    assert kv.match_prefix([11, 22]) == []


def test_eviction_takes_least_recently_freed_and_tail_blocks_first() -> None:
    kv = KVCache(4, 16)
    first: list[int] = []
    kv.allocate(first, (), 4)
    for block, h in zip(first, [1, 2, 3, 4], strict=True):
        kv.cache_block(block, h)
    kv.release(first[:2])  # request A: blocks with hashes 1, 2
    kv.release(first[2:])  # request B: 3, 4
    taken: list[int] = []
    kv.allocate(taken, (), 1)
    # A was freed first, and within A the tail block (hash 2) goes first.
    assert kv.match_prefix([1]) == [first[0]]
    assert kv.match_prefix([1, 2]) == [first[0]]
    assert kv.match_prefix([3, 4]) == first[2:]


def test_shared_block_is_freed_when_last_reference_goes() -> None:
    kv = KVCache(2, 16)
    a: list[int] = []
    kv.allocate(a, (), 1)
    kv.cache_block(a[0], 7)
    b: list[int] = []
    kv.allocate(b, kv.match_prefix([7]), 0)
    kv.release(a)
    assert kv.num_free == 1
    kv.release(b)
    assert kv.num_free == 2


def test_first_block_with_a_hash_keeps_the_index() -> None:
    kv = KVCache(2, 16)
    blocks: list[int] = []
    kv.allocate(blocks, (), 2)
    kv.cache_block(blocks[0], 5)
    kv.cache_block(blocks[1], 5)
    assert kv.match_prefix([5]) == [blocks[0]] and kv.num_cached == 1


def test_blocks_for_rounds_up() -> None:
    assert [KVCache(1, 16).blocks_for(n) for n in (0, 1, 16, 17)] == [0, 1, 1, 2]
