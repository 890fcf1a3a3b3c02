"""Sustained concurrent load through a real Envoy: every request answered, nothing left behind.

The HTTP/2 server's unit tests drive it frame by frame; here it is driven the way production
drives it, many streams at once on Envoy's connections for a few seconds. That is where a leak
of per-call state, a flow-control stall or a limit that ordinary traffic trips (the rapid-reset
budget once counted the reset Envoy sends at the end of every call) shows up.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from extproc.envoyconf.bootstrap import CircuitBreaker
from extproc.stack.stack import LocalStack, StackConfig, scenario_documents
from tests.integration.httpclient import Response, chat, metric_sum, request
from tests.integration.polling import wait_until

pytestmark = pytest.mark.integration

CLIENTS = 32
REQUESTS_PER_CLIENT = 40
DEADLINE_S = 90.0
# An adapter model split over two adapters: the picker rewrites the body's model.
ADAPTER_MODEL: dict[str, Any] = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
    "kind": "InferenceModel",
    "metadata": {"name": "summaries"},
    "spec": {
        "modelName": "summaries",
        "criticality": "Critical",
        "poolRef": {"name": "vllm-llama2-7b-pool"},
        "targetModels": [
            {"name": "tweet-summary", "weight": 50},
            {"name": "tweet-summary-1", "weight": 50},
        ],
    },
}


@pytest.fixture(scope="module", params=["BUFFERED", "FULL_DUPLEX_STREAMED"])
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    config = StackConfig(
        pods=2,
        body_mode=request.param,
        speed=50,
        breaker=CircuitBreaker(),  # Envoy's defaults: nothing overflows
        documents=(*scenario_documents(), ADAPTER_MODEL),
        picker_args=("--profile", "default", "--refresh-metrics-interval", "0.05"),
    )
    with LocalStack(config) as s:
        yield s


def _body(client: int, i: int) -> dict[str, Any]:
    """A mix: streamed and not, the base model and adapters, short and 12 KB prompts."""
    n = client * REQUESTS_PER_CLIENT + i
    model = "summaries" if n % 3 == 0 else "/model/llama2"
    extra: dict[str, Any] = {}
    if n % 2:
        extra = {"stream": True, "stream_options": {"include_usage": True}}
    body = chat(model, max_tokens=1 + n % 4, **extra)
    if n % 10 == 0:
        body["messages"] = [{"role": "user", "content": "word " * 2400}]
    return body


def _client(url: str, client: int, out: list[Response | BaseException]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    for i in range(REQUESTS_PER_CLIENT):
        try:
            out.append(
                request(url, body=_body(client, i), timeout=max(deadline - time.monotonic(), 1))
            )
        except Exception as exc:  # reported by the test
            out.append(exc)


def _routed(stack: LocalStack) -> float:
    return metric_sum(stack, "inference_model_request_total{")


def test_sustained_concurrent_load_loses_nothing_and_leaks_nothing(stack: LocalStack) -> None:
    routed_before = _routed(stack)
    results: list[list[Response | BaseException]] = [[] for _ in range(CLIENTS)]
    threads = [
        threading.Thread(target=_client, args=(stack.url, c, results[c]), daemon=True)
        for c in range(CLIENTS)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S + 30)
    elapsed = time.monotonic() - start

    answers = [r for rs in results for r in rs]
    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT, "a client thread did not finish"
    failed = [r if isinstance(r, BaseException) else (r.status, r.body[:200]) for r in answers
              if isinstance(r, BaseException) or r.status != 200]  # fmt: skip
    assert not failed, f"{len(failed)} of {len(answers)} failed in {elapsed:.1f} s: {failed[:5]}"
    for r in answers:
        assert isinstance(r, Response)
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            assert r.body.rstrip().endswith(b"data: [DONE]"), r.body[-200:]
        else:
            assert json.loads(r.body)["object"] == "chat.completion"

    # Every request was routed once; every call and request ended on the picker's side.
    assert _routed(stack) - routed_before == len(answers)
    wait_until(lambda: metric_sum(stack, "extproc_grpc_open_streams") == 0, 10, "streams to end")
    wait_until(
        lambda: metric_sum(stack, "inference_model_running_requests{") == 0, 10, "requests to end"
    )
    # Envoy's end-of-call resets are calls under way, never rapid resets; no connection failed.
    assert metric_sum(stack, 'extproc_grpc_stream_resets_total{stage="before_message"}') == 0
    assert metric_sum(stack, "extproc_grpc_connection_errors_total") == 0
    assert metric_sum(stack, "inference_model_request_error_total") == 0
