"""Every error row of DESIGN.md through a real Envoy, and bad input that must not hurt the server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from extproc.envoyconf.bootstrap import CircuitBreaker
from extproc.stack.stack import LocalStack, StackConfig, scenario_documents
from tests.integration.httpclient import chat, metric_sum, request
from tests.integration.polling import wait_until

pytestmark = pytest.mark.integration

SHEDDABLE_MODEL: dict[str, Any] = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
    "kind": "InferenceModel",
    "metadata": {"name": "batch"},
    "spec": {
        "modelName": "batch",
        "criticality": "Sheddable",
        "poolRef": {"name": "vllm-llama2-7b-pool"},
        "targetModels": [{"name": "/model/llama2"}],
    },
}
OPEN_BREAKER = CircuitBreaker()  # Envoy's defaults: nothing overflows in these tests


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    config = StackConfig(
        pods=1,
        speed=20,
        breaker=OPEN_BREAKER,
        documents=(*scenario_documents(), SHEDDABLE_MODEL),
        # One running sequence per pod makes the waiting queue easy to fill for the 429 case.
        sim_args=("--max-num-seqs", "1"),
        picker_args=("--profile", "default", "--refresh-metrics-interval", "0.05"),
    )
    with LocalStack(config) as s:
        yield s


def _error(resp: Any) -> dict[str, Any]:
    assert resp.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(resp.body)["error"]
    return body


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(b"this is not json", 400, "BadRequest", id="not-json"),
        pytest.param(b'{"model": "/model/llama2"', 400, "BadRequest", id="truncated"),
        pytest.param(b'\xff\xfe{"model": 1}', 400, "BadRequest", id="not-utf8"),
        pytest.param(b'{"model": 7, "prompt": "x"}', 400, "BadRequest", id="model-not-string"),
        pytest.param(b'{"prompt": "x"}', 400, "BadRequest", id="no-model"),
        pytest.param(b"", 400, "BadRequest", id="empty-body"),
        pytest.param(json.dumps(chat("no-such-model")).encode(), 404, "ModelNotFound", id="unknown-model"),
    ],
)  # fmt: skip
def test_bad_requests(stack: LocalStack, body: bytes, status: int, code: str) -> None:
    headers = {"content-length": "0"} if not body else None
    resp = request(stack.url, body=body or None, headers=headers, method="POST")
    assert resp.status == status, resp.body
    error = _error(resp)
    assert (error["code"], error["type"]) == (status, code)
    assert b"Traceback" not in resp.body


def test_body_over_envoy_buffer_is_413(stack: LocalStack) -> None:
    body = json.dumps(chat(prompt="x" * (2 * 1024 * 1024))).encode()
    assert request(stack.url, body=body, timeout=30).status == 413


def test_client_closing_mid_body_leaks_nothing(stack: LocalStack) -> None:
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", stack.listen_port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: example.com\r\n"
                b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
                b'{"model": "/model/llama2", "mess'
            )
    assert request(stack.url, body=chat()).status == 200
    assert _running_requests(stack) == 0


def test_envoy_resets_of_finished_calls_do_not_spend_the_reset_budget(stack: LocalStack) -> None:
    # Envoy ends each ext_proc stream with RST_STREAM once its HTTP request is done, while the
    # call is still open on our side: thousands a second under load. They count as calls
    # under way, never against the rapid-reset budget (resets before any message).
    under_way = 'extproc_grpc_stream_resets_total{stage="under_way"}'
    before = metric_sum(stack, under_way)
    for _ in range(3):
        assert request(stack.url, body=chat()).status == 200
    wait_until(lambda: metric_sum(stack, under_way) >= before + 3, 20, "the resets counted")
    assert metric_sum(stack, 'extproc_grpc_stream_resets_total{stage="before_message"}') == 0


def test_sheddable_request_is_shed_when_saturated_and_critical_is_not(stack: LocalStack) -> None:
    pod_url = f"http://{stack.endpoints[0].address}"
    # Fill the pod's waiting queue directly (not through Envoy): one runs, eight wait, for
    # several seconds each (2,000 tokens at speed 20).
    fillers = [
        threading.Thread(target=request, args=(pod_url,), kwargs={"body": chat(max_tokens=2000)})
        for _ in range(9)
    ]
    for t in fillers:
        t.start()
    try:
        wait_until(lambda: _pod_waiting(pod_url) >= 8, 20, "the pod's queue to fill")
        # The pool gauge is computed from the scraped snapshots: once it shows the queue, the
        # scheduler sees it too (however slow this machine is today).
        wait_until(
            lambda: metric_sum(stack, "inference_pool_average_queue_size{") > 5,
            20,
            "the pool gauge to show the queue",
        )
        shed = request(stack.url, body=chat("batch"), timeout=5)
        assert shed.status == 429, shed
        assert _error(shed)["type"] == "InferencePoolResourceExhausted"
        # The scenario's model is Critical: never shed; it is routed and waits its turn.
        critical = request(stack.url, body=chat(max_tokens=1), timeout=120)
        assert critical.status == 200
    finally:
        for t in fillers:
            t.join(120)
    # Once the queue drains, sheddable traffic is routed again.
    wait_until(
        lambda: request(stack.url, body=chat("batch", max_tokens=1)).status == 200,
        20,
        "the pool to admit sheddable requests again",
    )


def _pod_waiting(pod_url: str) -> float:
    text = request(pod_url, "/metrics", method="GET").body.decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:num_requests_waiting{")
    )


def _running_requests(stack: LocalStack) -> float:
    return metric_sum(stack, "inference_model_running_requests{")


@pytest.fixture(scope="module")
def empty_pool() -> Iterator[LocalStack]:
    config = StackConfig(pods=0, picker_endpoints=(), picker_args=("--max-body-bytes", "1000"))
    with LocalStack(config) as s:
        yield s


def test_no_ready_endpoint_is_503(empty_pool: LocalStack) -> None:
    resp = request(empty_pool.url, body=chat())
    assert resp.status == 503
    assert _error(resp)["type"] == "ServiceUnavailable"


def test_header_only_request_without_endpoints_is_503(empty_pool: LocalStack) -> None:
    resp = request(empty_pool.url, path="/v1/models", method="GET")
    assert resp.status == 503
    assert _error(resp)["type"] == "ServiceUnavailable"


def test_picker_unreachable_is_500(stack: LocalStack) -> None:
    # Last in this module: it stops the picker for good.
    stack.stop_picker()
    resp = request(stack.url, body=chat())
    assert resp.status == 500


def test_full_duplex_body_over_picker_limit_is_413() -> None:
    config = StackConfig(
        pods=1, speed=20, body_mode="FULL_DUPLEX_STREAMED",
        picker_args=("--max-body-bytes", "4096"), breaker=OPEN_BREAKER,
    )  # fmt: skip
    with LocalStack(config) as s:
        resp = request(s.url, body=chat(prompt="y" * 10_000))
        assert resp.status == 413
        assert _error(resp)["type"] == "PayloadTooLarge"
        assert request(s.url, body=chat()).status == 200
