"""The seeded workload of the routing benchmark: tenants, prompts, criticality, Poisson arrivals.

Every prompt word is four letters, which the simulator's tokenizer counts as exactly one token,
so prompt lengths in tokens are known without a tokenizer. The same seed gives byte-identical
request bodies and arrival offsets for every policy.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from typing import Any, Literal

from extproc.sim.profiles import A10_7B, Profile
from extproc.stack.stack import SCENARIO_LORAS, SCENARIO_MODEL

Criticality = Literal["Critical", "Standard", "Sheddable"]

# A model name the clients use for batch jobs: served by the base model, but Sheddable.
BATCH_MODEL = "llama2-batch"
POOL_NAME = "vllm-llama2-7b-pool"
CRITICAL_ADAPTERS = ("tweet-summary", "tweet-summary-1")


@dataclass(frozen=True, slots=True)
class Tenant:
    """Requests that share a model and a system prompt (``system_tokens`` 0: no shared prefix)."""

    name: str
    model: str
    system_tokens: int
    weight: float
    user_tokens: tuple[int, int]
    output_tokens: tuple[int, int]


def _tenants() -> tuple[Tenant, ...]:
    base = [
        Tenant("chat-a", SCENARIO_MODEL, 2600, 0.13, (40, 300), (16, 128)),
        Tenant("chat-b", SCENARIO_MODEL, 1800, 0.11, (40, 300), (16, 128)),
        Tenant("chat-c", SCENARIO_MODEL, 1100, 0.08, (40, 300), (16, 128)),
    ]
    # Adapter popularity falls off like Zipf; the SQL family shares a long schema prompt, the
    # summary family a shorter instruction prompt (the hash chains differ per adapter anyway).
    zipf = [1 / (r + 1) ** 0.8 for r in range(len(SCENARIO_LORAS))]
    scale = 0.48 / sum(zipf)
    order = [0, 5, 1, 6, 2, 7, 3, 8, 4, 9]  # interleave sql-lora* and tweet-summary*
    adapters = []
    for rank, idx in enumerate(order):
        name = SCENARIO_LORAS[idx]
        sql = name.startswith("sql")
        adapters.append(
            Tenant(
                f"lora-{name}", name, 2000 if sql else 1000, zipf[rank] * scale,
                (20, 200) if sql else (100, 400), (24, 160) if sql else (16, 64),
            )
        )  # fmt: skip
    unique = [
        Tenant("unique", SCENARIO_MODEL, 0, 0.10, (200, 1500), (16, 128)),
        Tenant("batch", BATCH_MODEL, 0, 0.10, (300, 1500), (32, 160)),
    ]
    return (*base, *adapters, *unique)


TENANTS = _tenants()


def criticality(model: str) -> Criticality:
    if model == BATCH_MODEL:
        return "Sheddable"
    if model in CRITICAL_ADAPTERS:
        return "Critical"
    return "Standard"


def served_model(model: str) -> str:
    return SCENARIO_MODEL if model == BATCH_MODEL else model


def documents() -> tuple[dict[str, Any], ...]:
    """The InferencePool and one InferenceModel per client-visible model name."""
    ref = {"group": "inference.networking.x-k8s.io", "kind": "InferencePool", "name": POOL_NAME}
    pool = {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferencePool",
        "metadata": {"name": POOL_NAME},
        "spec": {
            "targetPortNumber": 8000,
            "selector": {"app": POOL_NAME},
            "extensionRef": {"name": "inference-gateway-ext-proc"},
        },
    }
    docs: list[dict[str, Any]] = [pool]
    targets = {SCENARIO_MODEL: SCENARIO_MODEL, BATCH_MODEL: SCENARIO_MODEL}
    targets.update({lora: lora for lora in SCENARIO_LORAS})
    for i, (name, target) in enumerate(targets.items()):
        docs.append(
            {
                "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
                "kind": "InferenceModel",
                "metadata": {"name": f"model-{i}"},
                "spec": {
                    "modelName": name,
                    "criticality": criticality(name),
                    "poolRef": ref,
                    "targetModels": [{"name": target, "weight": 100}],
                },
            }
        )
    return tuple(docs)


@dataclass(frozen=True, slots=True)
class BenchRequest:
    index: int
    offset_s: float  # arrival, simulated seconds after the first request
    tenant: str
    model: str
    criticality: Criticality
    prompt_tokens: int  # with the chat template's tokens
    shared_tokens: int  # leading tokens shared with other requests (whole KV blocks)
    max_tokens: int
    body: bytes
    # The same body with `model` already resolved to the served model: what a client sends when
    # there is no picker to apply the InferenceModel (Envoy round-robin straight to the pods).
    direct_body: bytes


def _words(rng: random.Random, n: int) -> str:
    letters = string.ascii_lowercase
    return " ".join("".join(rng.choices(letters, k=4)) for _ in range(n))


def build(n: int, rate_per_s: float, seed: int) -> list[BenchRequest]:
    """``n`` requests with Poisson arrivals at ``rate_per_s`` (simulated seconds).

    Request contents depend only on ``seed`` and the index, never on the rate, so every load
    level sends the same requests, only spaced differently.
    """
    prompts = {t.name: _words(random.Random(f"{seed}-{t.name}"), t.system_tokens) for t in TENANTS}
    rng = random.Random(seed)
    gaps = random.Random(seed + 1)
    weights = [t.weight for t in TENANTS]
    out: list[BenchRequest] = []
    clock = 0.0
    for i in range(n):
        tenant = rng.choices(TENANTS, weights)[0]
        user = rng.randint(*tenant.user_tokens)
        max_tokens = rng.randint(*tenant.output_tokens)
        messages = []
        # Chat template: 3 tokens per message and 2 for the assistant turn (docs/simulator.md).
        prompt_tokens = user + 3 + 2 + (tenant.system_tokens + 3 if tenant.system_tokens else 0)
        shared = (tenant.system_tokens + 2) // 16 * 16 if tenant.system_tokens else 0
        if tenant.system_tokens:
            messages.append({"role": "system", "content": prompts[tenant.name]})
        messages.append({"role": "user", "content": _words(rng, user)})
        body = {
            "model": tenant.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        out.append(
            BenchRequest(
                index=i, offset_s=clock, tenant=tenant.name, model=tenant.model,
                criticality=criticality(tenant.model),
                prompt_tokens=prompt_tokens, shared_tokens=shared, max_tokens=max_tokens,
                body=json.dumps(body).encode(),
                direct_body=json.dumps({**body, "model": served_model(tenant.model)}).encode(),
            )
        )  # fmt: skip
        clock += gaps.expovariate(rate_per_s)
    return out


def ideal_ttft_s(req: BenchRequest, profile: Profile = A10_7B) -> float:
    """TTFT on an idle pod that already holds the shared prefix and the adapter: the floor no
    routing can beat. The uncached tokens are prefilled in chunks of max_num_batched_tokens."""
    uncached = req.prompt_tokens - req.shared_tokens
    steps = -(-uncached // profile.max_num_batched_tokens)
    return (steps * profile.step_base_ms + uncached * profile.prefill_token_us / 1000) / 1000


def describe() -> str:
    """One markdown paragraph describing the tenants."""
    shared = [t for t in TENANTS if t.system_tokens]
    share = sum(t.weight for t in shared)
    lora = sum(t.weight for t in TENANTS if t.model in SCENARIO_LORAS)
    crit = sum(t.weight for t in TENANTS if criticality(t.model) == "Critical")
    shed = sum(t.weight for t in TENANTS if criticality(t.model) == "Sheddable")
    return (
        f"{len(shared)} tenants share a system prompt ({share:.0%} of requests): 3 base-model "
        f"chat tenants with 2,600 / 1,800 / 1,100-token system prompts, and one tenant per "
        f"LoRA adapter ({lora:.0%} of requests, Zipf-like popularity over the 10 adapters; "
        f"`sql-lora*` 2,000-token schema prompt + 20-200-token question, 24-160 output "
        f"tokens; `tweet-summary*` 1,000-token instructions + 100-400-token tweet, 16-64 output "
        f"tokens). The rest have no shared prefix: 10% base-model requests with 200-1,500-token "
        f"prompts and 10% `{BATCH_MODEL}` batch requests (300-1,500 tokens, Sheddable). "
        f"Criticality: `tweet-summary` and `tweet-summary-1` Critical ({crit:.0%}), "
        f"`{BATCH_MODEL}` Sheddable ({shed:.0%}), the rest Standard. Output lengths are set "
        f"with `max_tokens`; every request streams with `include_usage`."
    )
