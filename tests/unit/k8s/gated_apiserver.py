"""A fake API server that can stall one client's requests (clients told apart by token)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from extproc.k8s.client import load_api_client
from tests.unit.k8s.fake_apiserver import FakeApiServer


class GatedApiServer(FakeApiServer):
    def __init__(self) -> None:
        super().__init__()
        self.hang_tokens: set[str] = set()  # requests with these tokens get no answer
        # token -> (reached, release): that client's next item GET waits for `release`
        self.gates: dict[str, tuple[asyncio.Event, asyncio.Event]] = {}
        self.conflict_next_put = 0  # the next N item PUTs answer 409 without applying
        self._release = asyncio.Event()

    async def stop(self) -> None:
        self._release.set()
        for _, release in self.gates.values():
            release.set()
        await super().stop()

    def unhang(self) -> None:
        self.hang_tokens.clear()
        self._release.set()

    async def _item(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token in self.hang_tokens:
            await self._release.wait()
            return web.Response(status=503)
        gate = self.gates.get(token)
        if gate is not None and request.method == "GET":
            del self.gates[token]
            reached, release = gate
            reached.set()
            await release.wait()
        if request.method == "PUT" and self.conflict_next_put:
            self.conflict_next_put -= 1
            return web.json_response(
                {"kind": "Status", "code": 409, "reason": "Conflict", "message": "modified"},
                status=409,
            )
        return await super()._item(request)

    def client(self, tmp_path: Path, token: str) -> Any:
        """An API client of its own, authenticated by `token`."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                      "namespace": "default"}}],
        }  # fmt: skip
        path = tmp_path / f"kubeconfig-{token}"
        path.write_text(json.dumps(config))
        return load_api_client(path)
