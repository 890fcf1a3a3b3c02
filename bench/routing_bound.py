"""What routing could reach: bench-routing's workload replayed offline with perfect information.

Run: `make bench-routing-bound` (`python -m bench.routing_bound`).

No processes and no sockets: eight copies of the simulator's `Engine` (the scheduler and step
costs that `extproc sim` runs) are stepped in simulated time through the seeded workload of
`bench-routing`, and every request is routed by a router that sees each pod's exact state:

- `round-robin`: a check of this replay against the round-robin cells measured through Envoy;
- `oracle`: the pod where the request's first token comes soonest, found by stepping a copy
  of every pod forward with the request added (later arrivals unknown);
- `oracle-pod`: the pod where the request adds the least first-token time, its own plus that
  of the requests already waiting there;
- `estimate`: the `default` profile's estimate (prefill ahead, the rest of the step in
  progress, an adapter load, a charge per request on the pod) computed from the exact state
  instead of the picker's view of it.

Greedy routing with perfect information is not optimal routing (it does not know the requests
to come), but no picker working from scraped metrics knows more about the present. Its p90
says how much of the gap between a measured policy and the routing-independent floor routing
can still close on this workload.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.common import markdown_table, percentile, replace_section
from bench.routing_report import PODS, fmt_ms
from bench.routing_workload import BenchRequest, build, ideal_ttft_s
from extproc.sim.engine import Engine, SimClock
from extproc.sim.kvcache import KVCache
from extproc.sim.profiles import A10_7B
from extproc.sim.request import SimRequest
from extproc.stack.stack import SCENARIO_LORAS

SECTION = "Routing bound: perfect information (make bench-routing-bound)"
ROUTERS = ("round-robin", "oracle", "oracle-pod", "estimate")
# The `default` profile's charge per request on an endpoint (inflightTokens 100 x 0.15 ms).
PER_REQUEST_S = 0.015
# bench-routing's last calibrated capacity (BENCHMARKS.md), requests per simulated second.
CAPACITY = 33.74
MAX_LORAS = 4

Batch = list[tuple[SimRequest, int]]


@dataclass(slots=True)
class Pod:
    """One engine stepped in simulated time: in a step until `step_end`, or idle at `now`."""

    engine: Engine = field(
        default_factory=lambda: Engine(A10_7B, clock=SimClock(1.0), max_loras=MAX_LORAS)
    )
    batch: Batch | None = None
    step_end: float = 0.0
    now: float = 0.0

    def next_event(self) -> float:
        """When the pod's state changes next without new arrivals (inf: never)."""
        if self.batch is not None:
            return self.step_end
        if self.engine.waiting:  # blocked on an adapter load
            ready = self.engine.lora.next_ready_at(self.now)
            return math.inf if ready is None else ready
        return math.inf

    def advance(self, t: float) -> None:
        """Run every step that ends by `t`."""
        while (event := self.next_event()) <= t and event != math.inf:
            if self.batch is not None:
                self.engine.commit(self.batch, event)
            self._start(event)
        if self.batch is None:
            self.now = max(self.now, t)

    def add(self, req: SimRequest, t: float) -> None:
        self.advance(t)
        self.engine.waiting.append(req)
        if self.batch is None:
            self._start(t)

    def first_tokens(self, t: float, req: SimRequest | None) -> tuple[float, float]:
        """On a copy of this pod that gets `req` at `t` and nothing else: seconds after `t` to
        `req`'s first token, and summed over it and every request here still waiting for one."""
        pod = copy.deepcopy(self)
        pod.advance(t)
        engine = pod.engine
        pending = [r for r in (*engine.waiting, *engine.running) if r.first_token_time is None]
        if req is not None:
            pod.add(req, t)
            pending.append(req)
        while any(r.first_token_time is None for r in pending):
            event = pod.next_event()
            if event == math.inf:
                return math.inf, math.inf
            pod.advance(event)
        firsts = [r.first_token_time - t for r in pending if r.first_token_time is not None]
        return (firsts[-1] if req is not None else 0.0), sum(firsts)

    def estimate_s(self, t: float, req: SimRequest) -> float:
        """The `default` profile's estimate with exact inputs: the rest of a decode step in
        progress, the prefill of every request ahead and of `req`'s uncached prompt, an
        adapter load, and a charge per request already here."""
        engine, kv = self.engine, self.engine.kv
        rest = 0.0
        if self.batch is not None and all(n == 1 for _, n in self.batch):
            rest = self.step_end - t  # a long prefill step is counted in `ahead` instead
        ahead = sum(max(0, r.prompt_len - r.num_computed) for r in engine.running)
        ahead += sum(_uncached(kv, r) for r in engine.waiting)
        own = _uncached(kv, req)
        load = 0.0
        if req.adapter is not None and req.adapter not in engine.lora.loaded(t):
            load = A10_7B.lora_load_ms / 1000
        requests = len(engine.running) + len(engine.waiting)
        return (
            rest + (ahead + own) * A10_7B.prefill_token_us / 1e6 + load
            + requests * PER_REQUEST_S
        )  # fmt: skip

    def _start(self, now: float) -> None:
        batch, prefill_tokens, decode_seqs = self.engine.schedule(now)
        if batch:
            self.batch = batch
            self.step_end = now + A10_7B.step_ms(prefill_tokens, decode_seqs) / 1000
        else:
            self.batch = None
            self.now = now


def _uncached(kv: KVCache, req: SimRequest) -> int:
    """Prompt tokens `req` would prefill if admitted now (what the picker's pending counts)."""
    hits = kv.match_prefix(req.block_hashes[: (req.prompt_len - 1) // kv.block_size])
    return req.prompt_len - len(hits) * kv.block_size


def _block_hashes(req: BenchRequest) -> list[int]:
    """The prompt's full blocks: the shared prefix's hash alike for every request of a tenant
    (the workload's prompts agree exactly that far), the rest unique to the request."""
    shared = req.shared_tokens // A10_7B.block_size
    parent = hash(("prefix-chain", req.model))
    out = []
    for i in range(req.prompt_tokens // A10_7B.block_size):
        parent = hash((parent, (req.tenant, i) if i < shared else (req.index, i)))
        out.append(parent)
    return out


def _sim_request(req: BenchRequest) -> Callable[[], SimRequest]:
    hashes = _block_hashes(req)
    adapter = req.model if req.model in SCENARIO_LORAS else None
    return lambda: SimRequest(
        request_id=str(req.index), adapter=adapter, prompt_len=req.prompt_tokens,
        block_hashes=hashes, max_output=req.max_tokens, stop_reason="length",
        arrival_time=req.offset_s,
    )  # fmt: skip


def replay(requests: list[BenchRequest], router: str) -> list[float]:
    """TTFT (simulated seconds) of every request, in order, routed by `router`."""
    pods = [Pod() for _ in range(PODS)]
    sent: list[SimRequest] = []
    for req in requests:
        t, make = req.offset_s, _sim_request(req)
        for pod in pods:
            pod.advance(t)
        if router == "round-robin":
            best = pods[req.index % PODS]
        elif router == "oracle":
            best = min(pods, key=lambda p: p.first_tokens(t, make())[0])
        elif router == "estimate":
            best = min(pods, key=lambda p: p.estimate_s(t, make()))
        elif router == "oracle-pod":
            best = min(
                pods, key=lambda p: p.first_tokens(t, make())[1] - p.first_tokens(t, None)[1]
            )
        else:
            raise ValueError(f"unknown router {router!r}")
        sim = make()
        best.add(sim, t)
        sent.append(sim)
    for pod in pods:
        pod.advance(math.inf)
    return [
        math.inf if r.first_token_time is None else r.first_token_time - r.arrival_time
        for r in sent
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="42-51", help="workload seeds, FIRST-LAST")
    parser.add_argument("--load", type=float, default=0.8, help="fraction of --capacity")
    parser.add_argument("--capacity", type=float, default=CAPACITY,
                        help="requests per simulated second (default: bench-routing's last "
                             "calibration, %(default)s)")  # fmt: skip
    parser.add_argument("--requests", type=int, default=400, help="measured requests per seed")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests first")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    first, _, last = args.seeds.partition("-")
    seeds = range(int(first), int(last or first) + 1)
    started = time.monotonic()
    rate = args.load * args.capacity
    pooled: dict[str, list[float]] = {name: [] for name in ("floor", *ROUTERS)}
    rows: list[list[object]] = []
    for seed in seeds:
        requests = build(args.warmup + args.requests, rate, seed)
        each = {"floor": [ideal_ttft_s(r) for r in requests][args.warmup :]}
        for router in ROUTERS:
            each[router] = replay(requests, router)[args.warmup :]
        for name, values in each.items():
            pooled[name].extend(values)
        rows.append([seed, *(fmt_ms(percentile(v, 90)) for v in each.values())])
        print(f"seed {seed}: p90 " + ", ".join(f"{k} {fmt_ms(percentile(v, 90))} ms"
                                               for k, v in each.items()), flush=True)  # fmt: skip
    rows.append([f"{len(seeds)} seeds pooled",
                 *(fmt_ms(percentile(v, 90)) for v in pooled.values())])  # fmt: skip
    p90s = markdown_table(["workload seed", "floor p90 ms", *(f"`{r}` p90 ms" for r in ROUTERS)],
                          rows)  # fmt: skip
    spread = markdown_table(
        ["", "TTFT p50 ms", "TTFT p90 ms", "TTFT p99 ms"],
        [[k, *(fmt_ms(percentile(v, q)) for q in (50, 90, 99))] for k, v in pooled.items()],
    )
    elapsed = time.monotonic() - started
    print(f"\n{p90s}\n\n{spread}\n\nthe run took {elapsed:.0f} s")
    if args.no_write:
        return 0
    replace_section(
        SECTION,
        f"""\
Command: `make bench-routing-bound` (`.venv/bin/python -m bench.routing_bound`); {elapsed:.0f} s, one core, no processes or sockets.

`bench-routing`'s workload at {args.load:.0%} of its capacity ({args.capacity:g} requests per simulated second), seeds {args.seeds}, the first {args.warmup} requests of each unmeasured, replayed on {PODS} copies of the simulator's engine model stepped in simulated time. Routers: `round-robin` (this replay's check against the round-robin cells measured through Envoy, e.g. seed 42's 1,265 ms p90 in the run recorded above; at 80% round-robin is close to its saturation, where its p90 swings between runs); `oracle`, the pod where the request's first token comes soonest, with every pod's exact state (stepping a copy of each pod forward with the request added); `oracle-pod`, the pod where it adds the least first-token time, its own plus that of the requests already waiting there; `estimate`, the `default` profile's estimate (prefill ahead, the rest of a decode step in progress, an adapter load, 15 ms per request on the pod) from the exact state instead of the picker's view of it. The oracles are greedy: they do not know the requests to come, and they ignore what a choice costs later arrivals, so they are not optimal routing, but no picker working from scraped metrics knows more about the present; three different rules on that knowledge landing together says where routing on it ends. "floor": every request on an idle pod holding its prefix and adapter. The replay has no Envoy, picker or scrape delays: its times are the engines' alone.

{p90s}

Pooled over the seeds:

{spread}
""",
    )
    print(f"wrote the '{SECTION}' section of BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
