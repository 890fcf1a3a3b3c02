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
# Charged per request the endpoint's last scrape showed waiting beyond those this picker has
# in flight there (another picker's, or from before a restart): off unless configured.
DEFAULT_QUEUED_TOKENS = 0


class PrefillScorer(Scorer, PostPick):
    """Score ``K / (K + pending + own + S x wait [+ optional terms])`` per endpoint, in tokens
    of prefill work ahead of the request's first token.

    `pending` is what this picker already routed there and has not seen a first response byte
    for (`SchedulingContext.prefill`): exact and instantaneous, where a scraped queue length
    counts a 50-token and a 5,000-token prompt alike and lags by a scrape. `own` is this
    request's prompt minus the prefix the endpoint likely holds (from the prefix-cache scorer's
    index), so prefix affinity and load are weighed in one unit. `wait` is the fraction of an
    engine step until the endpoint starts its next one (`StepClock`, from the response chunks
    the picker relays; 0 when unknown or idle): a request arriving mid-step waits for the rest
    of it. ``S`` (`stepTokens`, 150) converts it: the prompt tokens whose prefill takes as long
    as one decode step (0 turns the term off). ``K`` (`halfScoreTokens`, 2,048, about one
    chunked-prefill step) is the work at which the score halves. With `loraLoadTokens` ``L``
    set, an endpoint where the requested LoRA adapter is neither running nor waiting (scraped
    `vllm:lora_requests_info`) is charged ``L`` for loading it, when some other endpoint has it
    active (where none has, every endpoint would pay alike). With `inflightTokens` ``I`` set,
    each request this picker has in flight there adds ``I``: every running sequence lengthens
    every engine step by its decode, so the charge trades a little time to first token for
    shorter token intervals (end-to-end latency) on less crowded endpoints. With `queuedTokens`
    ``Q`` set, each request the endpoint's last scrape showed waiting beyond those this picker
    has in flight there adds ``Q``: load this picker did not route (another picker's, or
    requests from before a restart) that the pending count cannot see. When every request
    passes through this picker the scraped queue never exceeds its in-flight count, and the
    term is 0.

    After the pick it leaves the primary's `own` in the cycle state; the picker adds it to the
    endpoint's pending prefill until the first response byte arrives.

    Both live signals come from the response body the picker relays (Envoy's
    `response_body_mode: STREAMED`, as the shipped bootstraps set it). Where Envoy does not
    send the response body, `pending` lasts until the request ends and the step term is 0.

    Parameters: `halfScoreTokens` (2048), `stepTokens` (150), `loraLoadTokens` (0: off),
    `inflightTokens` (0: off), `queuedTokens` (0: off), `prefixScorer` (the
    prefix-cache-scorer plugin's name, `prefix-cache-scorer`; declared before this plugin).
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
        queued_tokens: int = 0,
        inflight: InFlight | None = None,
    ) -> None:
        super().__init__(name)
        self.half_score = half_score
        self.prefix = prefix
        self.step_tokens = step_tokens
        self.lora_load_tokens = lora_load_tokens
        self.inflight_tokens = inflight_tokens
        self.queued_tokens = queued_tokens
        self.inflight = inflight

    def dependencies(self) -> Sequence[Plugin]:
        return (self.prefix,)

    def score(self, ctx: SchedulingContext) -> Sequence[float]:
        own = self.prefix.uncached_tokens(ctx.request, ctx.state, ctx.addresses)
        if self.lora_load_tokens:
            own = self._with_adapter_loads(ctx, own)
        if self.inflight_tokens or self.queued_tokens:
            own = self._with_requests(ctx, own)
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
        target = ctx.request.target_model
        active = [target in m.running_loras or target in m.waiting_loras for m in ctx.metrics]
        if not any(active):  # the base model, or an adapter active nowhere: no difference
            return own
        load = self.lora_load_tokens
        return [o if a else o + load for o, a in zip(own, active, strict=True)]

    def _with_requests(self, ctx: SchedulingContext, own: list[int]) -> list[int]:
        per, queued = self.inflight_tokens, self.queued_tokens
        return [
            o + per * n + (queued * unseen if (unseen := m.waiting - n) > 0 else 0)
            for o, n, m in zip(own, ctx.inflight, ctx.metrics, strict=True)
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
        queued_tokens=params.integer("queuedTokens", DEFAULT_QUEUED_TOKENS, lo=0),
        inflight=handle.inflight,
    )
