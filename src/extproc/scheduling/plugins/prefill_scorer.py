"""prefill-scorer: prefer the endpoint that will start this request's first token soonest."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.endpoints import Endpoint
from extproc.errors import ConfigError
from extproc.scheduling.context import PREFILL_TOKENS_KEY, PluginHandle, SchedulingContext
from extproc.scheduling.plugin import PostPick, Scorer
from extproc.scheduling.plugins.prefix_cache_scorer import PrefixCacheScorer
from extproc.scheduling.types import LLMRequest
from extproc.scraper.snapshot import EndpointMetrics

DEFAULT_HALF_SCORE_TOKENS = 2048
DEFAULT_PREFIX_SCORER = "prefix-cache-scorer"


class PrefillScorer(Scorer, PostPick):
    """Score ``K / (K + pending + own)`` per endpoint, in tokens of prefill work ahead of the
    request's first token.

    `pending` is what this picker already routed there and has not seen a first response byte
    for (`SchedulingContext.prefill`): exact and instantaneous, where a scraped queue length
    counts a 50-token and a 5,000-token prompt alike and lags by a scrape. `own` is this
    request's prompt minus the prefix the endpoint likely holds (from the prefix-cache scorer's
    index), so prefix affinity and load are weighed in one unit. ``K`` (`halfScoreTokens`,
    2,048, about one chunked-prefill step) is the work at which the score halves.

    After the pick it leaves the primary's `own` in the cycle state; the picker adds it to the
    endpoint's pending prefill until the first response byte arrives.

    Parameters: `halfScoreTokens` (2048), `prefixScorer` (the prefix-cache-scorer plugin's
    name, `prefix-cache-scorer`; declared before this plugin).
    """

    plugin_type = "prefill-scorer"
    bounded = True  # K / (K + x) with K > 0 and x >= 0.

    def __init__(self, name: str, *, half_score: int, prefix: PrefixCacheScorer) -> None:
        super().__init__(name)
        self.half_score = half_score
        self.prefix = prefix

    def score(self, ctx: SchedulingContext) -> Sequence[float]:
        own = self.prefix.uncached_tokens(ctx.request, ctx.state, ctx.addresses)
        k = float(self.half_score)
        if not any(ctx.prefill):  # nothing pending anywhere: the common idle case
            return [k / (k + o) for o in own]
        return [k / (k + p + o) for p, o in zip(ctx.prefill, own, strict=True)]

    def post_pick(
        self,
        request: LLMRequest,
        state: dict[str, object],
        endpoint: Endpoint,
        metrics: EndpointMetrics | None,
    ) -> None:
        (own,) = self.prefix.uncached_tokens(request, state, [endpoint.address])
        state[PREFILL_TOKENS_KEY] = own


def factory(name: str, params: Fields, handle: PluginHandle) -> PrefillScorer:
    prefix_name = params.string("prefixScorer", DEFAULT_PREFIX_SCORER)
    prefix = handle.plugin(prefix_name)
    if not isinstance(prefix, PrefixCacheScorer):
        raise ConfigError(
            f"{params.where}.prefixScorer: no prefix-cache-scorer named {prefix_name!r} is "
            "declared before this plugin"
        )
    return PrefillScorer(
        name,
        half_score=params.integer("halfScoreTokens", DEFAULT_HALF_SCORE_TOKENS, lo=1),
        prefix=prefix,
    )
