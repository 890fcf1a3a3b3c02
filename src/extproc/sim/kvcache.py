"""Paged KV-cache block manager with automatic prefix caching (vLLM v1 semantics, simplified).

Blocks hold ``block_size`` tokens. A full prompt block is identified by a hash chained over
all previous blocks (the chain is seeded with the model or adapter name), so two prompts share
cached blocks exactly as far as their tokens agree block by block. Blocks whose reference count
drops to zero go to the tail of a free queue but keep their hash: they can still be hit by a
later request until allocation evicts them from the head (least recently freed first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence


def prompt_block_hashes(seed: str, tokens: Sequence[Hashable], block_size: int) -> list[int]:
    """Chained hashes of the full blocks of ``tokens``; a trailing partial block has none.

    Hashes are only compared inside one process, so Python's per-process salted ``hash``
    is fine (and fast).
    """
    parent = hash(("prefix-chain", seed))
    hashes: list[int] = []
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = hash((parent, tuple(tokens[start : start + block_size])))
        hashes.append(parent)
    return hashes


class KVCache:
    """Fixed pool of blocks with reference counts, a hash index and an LRU free queue."""

    __slots__ = ("_cached", "_free", "_hash", "_ref", "block_size", "num_blocks")

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._ref = [0] * num_blocks
        self._hash: list[int | None] = [None] * num_blocks
        self._cached: dict[int, int] = {}  # block hash -> block id
        # Insertion order is eviction order: head = least recently freed.
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))

    @property
    def num_free(self) -> int:
        """Blocks not referenced by any request (cached or empty)."""
        return len(self._free)

    @property
    def num_cached(self) -> int:
        """Blocks currently indexed by hash (referenced or not)."""
        return len(self._cached)

    @property
    def usage(self) -> float:
        """Fraction of blocks referenced by requests, 0..1 (vLLM's kv_cache_usage_perc)."""
        return 1.0 - len(self._free) / self.num_blocks

    def blocks_for(self, num_tokens: int) -> int:
        """Blocks needed to hold ``num_tokens`` tokens."""
        return -(-num_tokens // self.block_size)

    def match_prefix(self, hashes: Sequence[int]) -> list[int]:
        """Cached blocks for the longest prefix of ``hashes``; does not take references."""
        hits: list[int] = []
        cached = self._cached
        for h in hashes:
            block = cached.get(h)
            if block is None:
                break
            hits.append(block)
        return hits

    def allocate(self, blocks: list[int], hits: Sequence[int], num_new: int) -> bool:
        """Append ``hits`` (taking a reference) and ``num_new`` fresh blocks to ``blocks``.

        All or nothing: returns False and changes nothing when the pool cannot supply them.
        Fresh blocks come from the head of the free queue, evicting their cached hash.
        """
        ref = self._ref
        revived = sum(1 for b in hits if ref[b] == 0)
        if num_new + revived > len(self._free):
            return False
        free = self._free
        for b in hits:
            if ref[b] == 0:
                del free[b]
            ref[b] += 1
            blocks.append(b)
        for _ in range(num_new):
            b, _unused = free.popitem(last=False)
            old = self._hash[b]
            if old is not None:
                self._hash[b] = None
                if self._cached.get(old) == b:
                    del self._cached[old]
            ref[b] = 1
            blocks.append(b)
        return True

    def cache_block(self, block: int, block_hash: int) -> None:
        """Index a now-full prompt block by its chained hash (first block with a hash wins)."""
        if self._hash[block] is None and block_hash not in self._cached:
            self._hash[block] = block_hash
            self._cached[block_hash] = block

    def release(self, blocks: Sequence[int]) -> None:
        """Drop one reference to each of ``blocks``.

        Freed in reverse so a request's tail blocks, the least likely to be shared, are
        evicted before its head blocks.
        """
        ref = self._ref
        free = self._free
        for b in reversed(blocks):
            ref[b] -= 1
            if ref[b] == 0:
                free[b] = None
