"""LocalStack itself: what the other integration tests rely on when they start a stack."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest

from extproc.endpoints import Endpoint
from extproc.stack import stack as stack_module
from extproc.stack.stack import LocalStack, StackConfig

pytestmark = pytest.mark.integration


def test_envoy_is_restarted_on_fresh_ports_when_a_picked_port_was_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A port picked free is taken before Envoy binds it (the race every free-port pick has).
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        real = stack_module.free_port
        picks: Iterator[int] = iter([busy])
        monkeypatch.setattr(stack_module, "free_port", lambda: next(picks, None) or real())
        config = StackConfig(pods=0, with_picker=False,
                             extra_endpoints=(Endpoint("e", "127.0.0.1", 9),))  # fmt: skip
        with LocalStack(config) as stack:
            assert stack.listen_port != busy
            with urllib.request.urlopen(f"{stack.admin_url}/ready", timeout=5) as ready:
                assert ready.status == 200


def test_only_a_port_clash_is_retried_and_only_so_often() -> None:
    calls: list[int] = []

    def clash() -> int:
        calls.append(1)
        raise RuntimeError("envoy exited:\ncannot bind '127.0.0.1:1': Address already in use")

    with pytest.raises(RuntimeError, match="Address already in use"):
        stack_module.retry_port_clash(clash, attempts=3)
    assert len(calls) == 3

    def other() -> int:
        calls.append(1)
        raise RuntimeError("envoy exited:\nbad config")

    calls.clear()
    with pytest.raises(RuntimeError, match="bad config"):
        stack_module.retry_port_clash(other)
    assert len(calls) == 1
