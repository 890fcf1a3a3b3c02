"""``python -m extproc.sim`` as a real process: address lines, ready, SIGTERM, exit code."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest

from .helpers import chat_body

pytestmark = pytest.mark.integration


async def test_subprocess_prints_addresses_serves_and_exits_cleanly(
    http: aiohttp.ClientSession,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "extproc.sim", "--pods", "3", "--base-port", "0",
        "--speed", "50", "--seed", "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        addresses: dict[str, str] = {}
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
            assert line, "simulator exited before ready"
            if line == "ready":
                break
            fields = dict(item.split("=", 1) for item in line.split())
            addresses[fields["pod"]] = fields["address"]
        assert list(addresses) == ["sim-0", "sim-1", "sim-2"]
        for name, address in addresses.items():
            url = f"http://{address}/v1/chat/completions"
            async with http.post(url, json=chat_body(max_tokens=5)) as resp:
                assert resp.status == 200
                assert resp.headers["x-inference-pod"] == name
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_busy_port_fails_with_exit_code_1() -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "extproc.sim", "--base-port", str(port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 1
        assert b"listen_failed" in err
    finally:
        blocker.close()
        await blocker.wait_closed()
