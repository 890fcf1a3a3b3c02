"""prefix-cache-scorer: prefer endpoints likely to hold the prompt's prefix in their KV cache."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.endpoints import Endpoint
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import PostPick, Scorer
from extproc.scheduling.prefix_index import PrefixIndex, block_hashes, prompt_text
from extproc.scheduling.types import LLMRequest
from extproc.scraper.snapshot import EndpointMetrics

DEFAULT_BLOCK_CHARS = 64
DEFAULT_MAX_BLOCKS = 256
DEFAULT_LRU_CAPACITY = 31250
DEFAULT_CHARS_PER_TOKEN = 4
_SPARSE = 4  # below 1/4 of the endpoints matched, fill scores by position


class PrefixCacheScorer(Scorer, PostPick):
    """Score ``matched_blocks / total_blocks`` (0 when the prompt has no complete block).

    Inputs: the prompt text (chat messages concatenated, or `prompt`), cut into blocks of
    `hashBlockSize` characters and hash-chained from the target model name; an approximate
    index of the blocks routed to each endpoint, updated after every pick (post-pick).

    Parameters: `hashBlockSize` (characters, 64), `maxPrefixBlocksToMatch` (256),
    `lruCapacityPerServer` (blocks, 31250; used when the endpoint exports no
    `cache_config_info`, else ``num_gpu_blocks x block_size x charsPerToken / hashBlockSize``),
    `charsPerToken` (4).
    """

    plugin_type = "prefix-cache-scorer"
    bounded = True  # ``depth x (1 / blocks)`` with ``depth <= blocks``.

    def __init__(
        self, name: str, *, block_chars: int, max_blocks: int, capacity: int, chars_per_token: int
    ) -> None:
        super().__init__(name)
        self.block_chars = block_chars
        self.max_blocks = max_blocks
        self.capacity = capacity
        self.chars_per_token = chars_per_token
        self.index = PrefixIndex()
        # Cycle-state keys of this instance: two instances (other block sizes) must not read
        # each other's hashes or matches.
        self._hashes_key = f"{name}.hashes"
        self._matched_key = f"{name}.matched"
        self._chars_key = f"{name}.prompt_chars"
        # Holding the list keeps its identity from being reused by another list.
        self._positions_of: Sequence[str] | None = None
        self._position_map: dict[str, int] = {}

    def hashes(self, request: LLMRequest, state: dict[str, object]) -> list[int]:
        """The request's block hashes, computed once per cycle and kept in `state`."""
        cached = state.get(self._hashes_key)
        if isinstance(cached, list):
            return cached
        text = prompt_text(request.body)
        hashes = block_hashes(request.target_model, text, self.block_chars, self.max_blocks)
        state[self._hashes_key] = hashes
        state[self._chars_key] = len(text)
        return hashes

    def matches(self, request: LLMRequest, state: dict[str, object]) -> dict[str, int]:
        """Endpoint address → number of leading prompt blocks it likely holds (cached per cycle)."""
        cached = state.get(self._matched_key)
        if isinstance(cached, dict):
            return cached
        hashes = self.hashes(request, state)
        matched = self.index.match(hashes) if hashes else {}
        state[self._matched_key] = matched
        return matched

    def uncached_tokens(
        self, request: LLMRequest, state: dict[str, object], addresses: Sequence[str]
    ) -> list[int]:
        """Per address, the prompt tokens not covered by the prefix it likely holds."""
        hashes = self.hashes(request, state)
        chars = state.get(self._chars_key)
        total = chars if isinstance(chars, int) else 0
        matched = self.matches(request, state) if hashes else None
        per_token = self.chars_per_token
        out = [total // per_token] * len(addresses)
        if not matched:
            return out
        per_block = self.block_chars
        if len(matched) * _SPARSE > len(addresses):
            get = matched.get
            return [max(0, total - get(a, 0) * per_block) // per_token for a in addresses]
        positions = self._positions(addresses)
        for address, depth in matched.items():
            i = positions.get(address)
            if i is not None:
                out[i] = max(0, total - depth * per_block) // per_token
        return out

    def score(self, ctx: SchedulingContext) -> Sequence[float]:
        hashes = self.hashes(ctx.request, ctx.state)
        if not hashes:
            return [0.0] * len(ctx)
        matched = self.matches(ctx.request, ctx.state)
        if not matched:
            return [0.0] * len(ctx)
        scale = 1.0 / len(hashes)
        addresses = ctx.addresses
        if len(matched) * _SPARSE > len(addresses):
            get = matched.get
            return [get(a, 0) * scale for a in addresses]
        # Few endpoints hold the prefix: write their scores by position, not all n.
        positions = self._positions(addresses)
        scores = [0.0] * len(addresses)
        for address, depth in matched.items():
            i = positions.get(address)
            if i is not None:
                scores[i] = depth * scale
        return scores

    def _positions(self, addresses: Sequence[str]) -> dict[str, int]:
        """address → index, reused while the scheduler passes the same (unmutated) list."""
        if addresses is not self._positions_of:
            self._positions_of = addresses
            self._position_map = {a: i for i, a in enumerate(addresses)}
        return self._position_map

    def post_pick(
        self,
        request: LLMRequest,
        state: dict[str, object],
        endpoint: Endpoint,
        metrics: EndpointMetrics | None,
    ) -> None:
        hashes = self.hashes(request, state)
        if hashes:
            # What the endpoints held *before* this request: later hooks of the cycle (the
            # prefill estimate) must not see its own blocks as cached. Cached already when the
            # profile ran; computed here when it did not (no fresh metrics).
            self.matches(request, state)
            self.index.add(endpoint.address, hashes, self._capacity(metrics))

    def forget(self, address: str) -> None:
        self.index.forget(address)

    def _capacity(self, metrics: EndpointMetrics | None) -> int:
        if metrics is not None and metrics.num_gpu_blocks and metrics.block_size:
            chars = metrics.num_gpu_blocks * metrics.block_size * self.chars_per_token
            return max(1, chars // self.block_chars)
        return self.capacity


def factory(name: str, params: Fields, handle: PluginHandle) -> PrefixCacheScorer:
    return PrefixCacheScorer(
        name,
        block_chars=params.integer("hashBlockSize", DEFAULT_BLOCK_CHARS, lo=1),
        max_blocks=params.integer("maxPrefixBlocksToMatch", DEFAULT_MAX_BLOCKS, lo=1),
        capacity=params.integer("lruCapacityPerServer", DEFAULT_LRU_CAPACITY, lo=1),
        chars_per_token=params.integer("charsPerToken", DEFAULT_CHARS_PER_TOKEN, lo=1),
    )
