"""The shipped ADS bootstraps pass `envoy --mode validate`."""

from __future__ import annotations

import subprocess

import pytest

from extproc.stack.stack import envoy_binary
from extproc.tools.gen_envoy import ADS_FILES, ENVOY_DIR

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.mark.parametrize("name", sorted(ADS_FILES))
def test_envoy_validates(name: str) -> None:
    out = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(ENVOY_DIR / name)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout + out.stderr
