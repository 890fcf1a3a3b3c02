"""Waiting for a condition that another process makes true."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.01) -> float:
    """Poll `check` until true; return the seconds it took; fail after `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - start
