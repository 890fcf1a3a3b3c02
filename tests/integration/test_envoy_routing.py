"""Requests through a real Envoy reach the pod the picker chose, with the model rewritten."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from extproc.stack.stack import LocalStack, StackConfig, scenario_documents
from tests.integration.httpclient import chat, metric_sum, request
from tests.integration.upstream import RecordingUpstream, recording_upstream

pytestmark = pytest.mark.integration

WEIGHTED_MODEL: dict[str, Any] = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
    "kind": "InferenceModel",
    "metadata": {"name": "weighted"},
    "spec": {
        "modelName": "weighted",
        "criticality": "Standard",
        "poolRef": {"name": "vllm-llama2-7b-pool"},
        "targetModels": [{"name": "target-a", "weight": 80}, {"name": "target-b", "weight": 20}],
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with recording_upstream() as up:
        yield up


@pytest.fixture(scope="module", params=["BUFFERED", "FULL_DUPLEX_STREAMED"])
def stack(request: pytest.FixtureRequest, upstream: RecordingUpstream) -> Iterator[LocalStack]:
    # Two simulated pods exist, but the picker is told only about the recording upstream:
    # every request landing there proves Envoy honoured the picker's destination.
    config = StackConfig(
        pods=1,
        speed=50,
        body_mode=request.param,
        extra_endpoints=(upstream.endpoint,),
        picker_endpoints=(upstream.endpoint,),
        documents=(*scenario_documents(), WEIGHTED_MODEL),
        picker_args=("--profile", "least-inflight"),
        breaker=StackConfig().breaker.__class__(),  # Envoy's defaults: no overflow here
    )
    with LocalStack(config) as s:
        yield s


def test_request_reaches_the_chosen_pod(stack: LocalStack, upstream: RecordingUpstream) -> None:
    resp = request(stack.url, body=chat())
    assert resp.status == 200, resp.body
    assert resp.headers["x-inference-pod"] == upstream.endpoint.name
    assert resp.json()["model"] == "/model/llama2"


def test_spoofed_destination_header_is_overwritten(
    stack: LocalStack, upstream: RecordingUpstream
) -> None:
    sim_pod = stack.endpoints[0]
    assert sim_pod != upstream.endpoint
    resp = request(
        stack.url, body=chat(), headers={"x-gateway-destination-endpoint": sim_pod.address}
    )
    assert resp.status == 200
    assert resp.headers["x-inference-pod"] == upstream.endpoint.name
    seen = upstream.requests[-1].headers["x-gateway-destination-endpoint"]
    assert seen == upstream.endpoint.address


def test_weighted_targets_rewrite_the_model(stack: LocalStack, upstream: RecordingUpstream) -> None:
    before = len(upstream.requests)
    models = Counter(request(stack.url, body=chat("weighted")).json()["model"] for _ in range(200))
    assert set(models) == {"target-a", "target-b"}
    # 80/20 over 200 draws: 160 expected, a 5-sigma band is about ±28.
    assert 132 <= models["target-a"] <= 188
    for recorded in upstream.requests[before:]:
        body = json.loads(recorded.body)
        assert body["model"] in {"target-a", "target-b"}
        if stack.config.body_mode == "BUFFERED":
            assert int(recorded.headers["Content-Length"]) == len(recorded.body)
        else:  # Envoy streams a full-duplex body upstream chunked, whatever length we announce
            assert recorded.headers["Transfer-Encoding"] == "chunked"


def test_body_rewrite_keeps_everything_but_the_model(
    stack: LocalStack, upstream: RecordingUpstream
) -> None:
    raw = b'{"temperature":0.10, "model" : "weighted","messages":[{"role":"user","content":"hi"}]}'
    resp = request(stack.url, body=raw)
    assert resp.status == 200
    received = upstream.requests[-1].body
    target = resp.json()["model"]
    assert received == raw.replace(b'"weighted"', json.dumps(target).encode())


def test_large_body_arrives_intact(stack: LocalStack, upstream: RecordingUpstream) -> None:
    # BUFFERED mode is bounded by Envoy's 1 MiB buffer; FULL_DUPLEX_STREAMED is not.
    size = 5 * 1024 * 1024 if stack.config.body_mode == "FULL_DUPLEX_STREAMED" else 900 * 1024
    body = json.dumps(chat("weighted", prompt="x" * size)).encode()
    resp = request(stack.url, body=body, timeout=60)
    assert resp.status == 200, resp.body[:300]
    target = resp.json()["model"]
    expected = body.replace(b'"weighted"', json.dumps(target).encode(), 1)
    assert resp.json()["received_bytes"] == len(expected)
    assert resp.json()["received_sha256"] == hashlib.sha256(expected).hexdigest()


def test_sse_response_is_byte_identical_and_usage_is_counted(
    stack: LocalStack, upstream: RecordingUpstream
) -> None:
    from tests.integration.upstream import SSE_PARTS

    before = _output_tokens(stack)
    resp = request(stack.url, body=chat(stream=True))
    assert resp.status == 200
    assert resp.body == b"".join(SSE_PARTS)
    assert _output_tokens(stack) == before + 3


def test_header_only_request_is_routed(stack: LocalStack, upstream: RecordingUpstream) -> None:
    resp = request(stack.url, path="/v1/models", method="GET")
    assert resp.status == 200
    assert resp.headers["x-inference-pod"] == upstream.endpoint.name


def test_transport_gauges_show_envoys_connections(
    stack: LocalStack, upstream: RecordingUpstream
) -> None:
    assert request(stack.url, body=chat()).status == 200
    assert metric_sum(stack, "extproc_grpc_connections") >= 1  # Envoy's worker connection(s)
    assert metric_sum(stack, "extproc_grpc_open_streams") == 0  # the exchange has ended


def _output_tokens(stack: LocalStack) -> float:
    return metric_sum(stack, "inference_model_output_tokens_sum")
