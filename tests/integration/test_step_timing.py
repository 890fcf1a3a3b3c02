"""The picker times each pod's engine steps from the streamed chunks it relays through Envoy."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest

from extproc.envoyconf.bootstrap import CircuitBreaker
from extproc.stack.stack import LocalStack, StackConfig
from tests.integration.httpclient import Response, chat, picker_metrics, request

pytestmark = pytest.mark.integration

GAUGE = re.compile(r'^extproc_endpoint_step_duration_seconds\{endpoint="([^"]+)"\} (\S+)$', re.M)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    # Simulated A10 pods at real speed: one decode step of one sequence lasts ~22 ms.
    with LocalStack(StackConfig(pods=2, speed=1, breaker=CircuitBreaker())) as s:
        yield s


def _step_gauges(stack: LocalStack) -> dict[str, float]:
    return {address: float(value) for address, value in GAUGE.findall(picker_metrics(stack))}


def test_streamed_tokens_show_the_pods_step_duration(stack: LocalStack) -> None:
    body = chat(max_tokens=120, stream=True)  # ~2.7 s of decode steps
    done: list[Response] = []
    thread = threading.Thread(target=lambda: done.append(request(stack.url, body=body)))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        first_seen: float | None = None
        # Read it half a second after it appears: a few steps' worth of chunks later.
        while True:
            now = time.monotonic()
            gauges = _step_gauges(stack)
            if gauges and first_seen is None:
                first_seen = now
            if first_seen is not None and now - first_seen >= 0.5:
                break
            assert now < deadline, "no step estimate while tokens streamed"
            time.sleep(0.05)
    finally:
        thread.join(timeout=30)
    assert done and done[0].status == 200
    ((address, seconds),) = gauges.items()
    assert address in {f"{e.ip}:{e.port}" for e in stack.endpoints}
    assert 0.015 <= seconds <= 0.1
    assert _step_gauges(stack) == {}  # nothing in flight any more
