"""The user scenario: Envoy's circuit breaker answers the second concurrent request with overflow.

Pool cluster thresholds max_pending_requests=1 and max_requests=1 (the BackendTrafficPolicy of
the source document); simulated A10 pods at real speed, so a 100-token completion lasts ~2 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from extproc.local import SCENARIO_BODY
from extproc.stack.stack import LocalStack, StackConfig
from tests.integration.httpclient import Response, request

pytestmark = pytest.mark.integration

OVERFLOW_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: overflow"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(StackConfig(pods=2, speed=1)) as s:
        yield s


def test_second_concurrent_request_overflows(stack: LocalStack) -> None:
    first: list[Response] = []
    thread = threading.Thread(target=lambda: first.append(request(stack.url, body=SCENARIO_BODY)))
    started = time.monotonic()
    thread.start()
    # Wait until the first request is in flight upstream, then send the second.
    deadline = time.monotonic() + 10
    while stack.envoy_stats().get("cluster.inference-pool.upstream_rq_active", 0) < 1:
        assert time.monotonic() < deadline, "first request never became active"
        time.sleep(0.02)
    second = request(stack.url, body=SCENARIO_BODY)
    thread.join(30)

    assert second.status == 503
    assert second.headers.get("x-envoy-overloaded") == "true"
    assert second.body == OVERFLOW_BODY

    (ok,) = first
    assert ok.status == 200, ok.body
    completion = ok.json()
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "/model/llama2"
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"]["completion_tokens"] == 100
    assert time.monotonic() - started > 1.0  # long enough for a human to overlap two curls

    stats = stack.envoy_stats()
    overflows = stats.get("cluster.inference-pool.upstream_rq_pending_overflow", 0) + stats.get(
        "cluster.inference-pool.upstream_rq_active_overflow", 0
    )
    assert overflows >= 1


def test_after_the_first_finishes_the_next_request_succeeds(stack: LocalStack) -> None:
    body = {**SCENARIO_BODY, "max_completion_tokens": 5}
    assert request(stack.url, body=body).status == 200
