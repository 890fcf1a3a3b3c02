"""prefill-scorer: prefer the endpoint that will start this request's first token soonest."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.endpoints import Endpoint
from extproc.errors import ConfigError
from extproc.scheduling.context import PREFILL_TOKENS_KEY, PluginHandle, SchedulingContext
from extproc.scheduling.inflight import InFlight
from extproc.scheduling.plugin import Plugin, PostPick, Scorer
from extproc.scheduling.plugins.prefix_cache_scorer import PrefixCacheScorer
from extproc.scheduling.types import LLMRequest
from extproc.scraper.snapshot import EndpointMetrics

DEFAULT_HALF_SCORE_TOKENS = 2048
DEFAULT_PREFIX_SCORER = "prefix-cache-scorer"
# Prompt tokens whose prefill takes as long as one decode step: ~22 ms / 0.15 ms on an A10
# with a 7B model, ~6 ms / 0.025 ms on an H100 (the simulator's profiles).
DEFAULT_STEP_TOKENS = 150
# Charged for an adapter that must be loaded first: off unless configured (an adapter load is
# 60 ms ~ 400 prompt tokens in the simulator's A10 profile).
DEFAULT_LORA_LOAD_TOKENS = 0
# Charged per request in flight on the endpoint: off unless configured.
DEFAULT_INFLIGHT_TOKENS = 0


class PrefillScorer(Scorer, PostPick):
    """Score ``K / (K + pending + own + S x wait)`` per endpoint (plus two optional terms), in
    tokens of prefill work ahead of the request's first token.

    `pending` is what this picker already routed there and has not seen a first response byte
    for (`SchedulingContext.prefill`): exact and instantaneous, where a scraped queue length
    counts a 50-token and a 5,000-token prompt alike and lags by a scrape. `own` is this
    request's prompt minus the prefix the endpoint likely holds (from the prefix-cache scorer's
    index), so prefix affinity and load are weighed in one unit. `wait` is the fraction of an
    engine step until the endpoint starts its next one (`StepClock`, from the response chunks
    the picker relays; 0 when unknown or idle): a request arriving mid-step waits for the rest
    of it. ``S`` (`stepTokens`, 150) converts it: the prompt tokens whose prefill takes as long
    as one decode step (0 turns the term off). ``K`` (`halfScoreTokens`, 2,048, about one
    chunked-prefill step) is the work at which the score halves.

    Two optional terms, off by default. With `loraLoadTokens` ``L`` set, an endpoint where the
    requested model is not among the running LoRA adapters (scraped `vllm:lora_requests_info`)
    is charged ``L`` for loading it, and ``2L`` when all its adapter slots are taken (it waits
    for one first); like the lora-affinity scorer, a base-model request is charged the same way,
    which keeps it off endpoints whose slots adapters need. With `inflightTokens` ``I`` set,
    each request this picker has in flight there adds ``I``: every running sequence lengthens
    every engine step by its decode, so the charge trades a little time to first token for
    shorter token intervals (end-to-end latency) on less crowded endpoints. Both read only what
    this picker routed and the adapters; load it did not route (another active picker,
    requests from before a restart) and KV-cache pressure are the queue and KV scorers' to
    weigh.

    After the pick it leaves the primary's `own` in the cycle state; the picker adds it to the
    endpoint's pending prefill until the first response byte arrives.

    Both live signals come from the response body the picker relays (Envoy's
    `response_body_mode: STREAMED`, as the shipped bootstraps set it). Where Envoy does not
    send the response body, `pending` lasts until the request ends and the step term is 0.

    Parameters: `halfScoreTokens` (2048), `stepTokens` (150), `loraLoadTokens` (0: off),
    `inflightTokens` (0: off), `prefixScorer` (the prefix-cache-scorer plugin's name,
    `prefix-cache-scorer`; declared before this plugin).
    """

    plugin_type = "prefill-scorer"
    bounded = True  # K / (K + x) with K > 0 and x >= 0.

    def __init__(
        self,
        name: str,
        *,
        half_score: int,
        prefix: PrefixCacheScorer,
        step_tokens: int = 0,
        lora_load_tokens: int = 0,
        inflight_tokens: int = 0,
        inflight: InFlight | None = None,
    ) -> None:
        super().__init__(name)
        self.half_score = half_score
        self.prefix = prefix
        self.step_tokens = step_tokens
        self.lora_load_tokens = lora_load_tokens
        self.inflight_tokens = inflight_tokens
        self.inflight = inflight

    def dependencies(self) -> Sequence[Plugin]:
        return (self.prefix,)

    def score(self, ctx: SchedulingContext) -> Sequence[float]:
        own = self.prefix.uncached_tokens(ctx.request, ctx.state, ctx.addresses)
        if self.lora_load_tokens:
            own = self._with_adapter_loads(ctx, own)
        if self.inflight_tokens:
            per = self.inflight_tokens
            own = [o + per * n for o, n in zip(own, ctx.inflight, strict=True)]
        k = float(self.half_score)
        if self.step_tokens and self.inflight is not None:
            # One pass, with ``wait = max(0, (due - now) x inverse)`` folded in.
            step, now = float(self.step_tokens), ctx.now
            pending = ctx.prefill or [0] * len(own)
            phases = self.inflight.step_phases(ctx.addresses)
            return [
                k / (k + p + o + (step * w if (w := (due - now) * inv) > 0.0 else 0.0))
                for p, o, (due, inv) in zip(pending, own, phases, strict=True)
            ]
        if not any(ctx.prefill):  # nothing pending anywhere: the common idle case
            return [k / (k + o) for o in own]
        return [k / (k + p + o) for p, o in zip(ctx.prefill, own, strict=True)]

    def _with_adapter_loads(self, ctx: SchedulingContext, own: list[int]) -> list[int]:
        target, load = ctx.request.target_model, self.lora_load_tokens
        return [
            o
            if target in m.running_loras
            else o + load
            if not m.max_lora or len(m.running_loras) < m.max_lora
            else o + 2 * load
            for o, m in zip(own, ctx.metrics, strict=True)
        ]

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
        step_tokens=params.integer("stepTokens", DEFAULT_STEP_TOKENS, lo=0),
        lora_load_tokens=params.integer("loraLoadTokens", DEFAULT_LORA_LOAD_TOKENS, lo=0),
        inflight_tokens=params.integer("inflightTokens", DEFAULT_INFLIGHT_TOKENS, lo=0),
        inflight=handle.inflight,
    )
