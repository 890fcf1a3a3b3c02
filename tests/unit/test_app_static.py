"""The picker with a static config file: what an edit changes (endpoints, pool name, the prefix
index, scrape connections), when an edit is noticed, and the reload flags."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from extproc import app as app_module
from extproc.app import LEAST_INFLIGHT, PickerApp, ServeConfig
from extproc.cli import build_parser
from extproc.config.reload import StaticConfigReloader
from extproc.config.static import load_static_config
from extproc.scheduling.plugins.prefix_cache_scorer import PrefixCacheScorer
from extproc.scheduling.scheduler import Scheduler
from extproc.scheduling.types import LLMRequest
from extproc.scraper.manager import ScrapeConfig

POOL = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {{name: {pool}}}
spec:
  targetPortNumber: {port}
  selector: {{app: vllm}}
"""
MODEL = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {{name: {name}}}
spec:
  modelName: {model}
  poolRef: {{name: {pool}}}
"""
ENDPOINTS = """\
apiVersion: extproc.local/v1alpha1
kind: StaticEndpoints
metadata: {{name: {pool}}}
spec:
  poolRef: {{name: {pool}}}
  endpoints: [{eps}]
"""


def config_text(
    pool: str = "pool-a",
    port: int = 8000,
    models: tuple[tuple[str, str], ...] = (("m1", "chat"),),
    eps: tuple[str, ...] = ("127.0.0.1:8000",),
) -> str:
    docs = [POOL.format(pool=pool, port=port)]
    docs += [MODEL.format(name=n, model=m, pool=pool) for n, m in models]
    docs.append(ENDPOINTS.format(pool=pool, eps=", ".join(f'{{address: "{e}"}}' for e in eps)))
    return "---\n".join(docs)


def rewrite(path: Path, text: str) -> None:
    """Rewrite and make sure the stat key moves (mtime bump), as the project's own tests do."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def until(predicate: Callable[[], bool], within: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def _serving_app(path: Path, scrape: ScrapeConfig) -> PickerApp:
    """A picker on free loopback ports following `path` every 50 ms, not yet loaded."""
    return PickerApp(
        ServeConfig(
            static_config=path, host="127.0.0.1", grpc_port=0, grpc_health_port=0,
            metrics_port=0, config_poll_interval=0.05, drain_seconds=0, scrape=scrape,
        )
    )  # fmt: skip


def _ready_pods(app: PickerApp) -> dict[str, float]:
    out = {}
    for family in app.metrics.registry.collect():
        if family.name == "inference_pool_ready_pods":
            for s in family.samples:
                out[s.labels["name"]] = s.value
    return out


def test_same_size_edit_with_unchanged_mtime_is_applied(tmp_path: Path) -> None:
    """In-place rewrite of the same size whose mtime ends up equal to the old one
    (`cp -p`/`rsync -t`/`touch -r`, or two writes within the filesystem's timestamp
    granularity): (mtime, size, inode) are all unchanged, the content is not."""
    path = tmp_path / "picker.yaml"
    path.write_text(config_text(eps=("127.0.0.1:8000",)))
    before = path.stat()
    applied = []
    reloader = StaticConfigReloader(path, applied.append, interval=0.01)

    path.write_text(config_text(eps=("127.0.0.1:8001",)))  # same length, same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_ino == before.st_ino

    assert reloader.poll(), "content changed but the edit was not noticed"
    assert [e.address for e in applied[-1].endpoints] == ["127.0.0.1:8001"]


def test_edit_landing_right_after_the_initial_read_is_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`PickerApp.load` reads the file, *then* builds the reloader, whose FileChanges takes
    its baseline stat: an edit made between the two becomes the baseline and is never
    applied (until some later edit)."""
    path = tmp_path / "picker.yaml"
    path.write_text(config_text(eps=("127.0.0.1:8000",)))

    def load_then_edit(p: Path):
        config = load_static_config(p)
        # Someone saves the file just after the picker read it.
        path.write_text(config_text(eps=("127.0.0.1:8000", "127.0.0.1:8001")))
        return config

    monkeypatch.setattr(app_module, "load_static_config", load_then_edit)
    app = PickerApp(ServeConfig(static_config=path, scheduler=LEAST_INFLIGHT, host="127.0.0.1"))
    app.load()
    monkeypatch.undo()
    assert [e.address for e in app.datastore.endpoints()] == ["127.0.0.1:8000"]
    assert app.reloader is not None
    app.reloader.poll()
    assert [e.address for e in app.datastore.endpoints()] == ["127.0.0.1:8000", "127.0.0.1:8001"], (
        "the edit on disk is never applied"
    )


A, B = "127.0.0.1:8000", "127.0.0.2:8000"


def _request(subset: frozenset[str] | None = None) -> LLMRequest:
    return LLMRequest(
        request_id="r", model="chat", target_model="chat", criticality="Standard",
        body={"model": "chat", "prompt": "x" * 1024}, subset=subset,
    )  # fmt: skip


def test_departed_endpoint_is_forgotten_even_if_it_returns_before_a_pick(tmp_path: Path) -> None:
    path = tmp_path / "picker.yaml"
    path.write_text(config_text(eps=(A,)))
    app = PickerApp(ServeConfig(static_config=path, host="127.0.0.1", seed=1))
    app.load()
    assert isinstance(app.picker, Scheduler)
    scorers = [hook for hook, _ in app.picker._post_pick if isinstance(hook, PrefixCacheScorer)]
    assert scorers, "the default profile has a prefix-cache-scorer"
    index = scorers[0].index

    app.picker.pick(_request())  # A learns the prompt's blocks
    assert index.size(A) > 0

    assert app.reloader is not None
    rewrite(path, config_text(eps=(B,)))  # A leaves the pool...
    assert app.reloader.poll()
    rewrite(path, config_text(eps=(A, B)))  # ...and comes back (its KV cache is not the old one)
    assert app.reloader.poll()

    result = app.picker.pick(_request(frozenset({"127.0.0.2"})))  # Envoy's subset hint: B only
    assert result.endpoints[0].address == B
    # Expected: A's old blocks were dropped when it left the pool.
    assert index.size(A) == 0, "A's blocks from before it left the pool are still indexed"


def test_pool_rename_moves_ready_pods_series(tmp_path: Path) -> None:
    path = tmp_path / "picker.yaml"
    path.write_text(config_text(pool="pool-a", eps=("127.0.0.1:8000", "127.0.0.1:8001")))
    app = PickerApp(ServeConfig(static_config=path, scheduler=LEAST_INFLIGHT, host="127.0.0.1"))
    app.load()
    assert _ready_pods(app) == {"pool-a": 2.0}

    rewrite(path, config_text(pool="pool-b", eps=("127.0.0.1:8000",)))
    assert app.reloader is not None and app.reloader.poll()
    assert app.datastore.pool().name == "pool-b"
    # Expected: the renamed pool's series, with its one endpoint; nothing left for pool-a.
    assert _ready_pods(app) == {"pool-b": 1.0}


async def test_pool_rename_with_scraping_leaves_no_old_series(tmp_path: Path) -> None:
    """With the default (scraping) scheduler: after the rename, the next endpoint edit writes
    inference_pool_ready_pods{name="pool-a"} again (the datastore listener captured the name
    at start-up), next to the gauge loop's pool-b series."""
    path = tmp_path / "picker.yaml"
    path.write_text(config_text(pool="pool-a", eps=("127.0.0.1:1", "127.0.0.1:2")))
    app = _serving_app(path, ScrapeConfig(interval=0.05, gauge_interval=0.05))
    app.load()
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        rewrite(path, config_text(pool="pool-b", eps=("127.0.0.1:1", "127.0.0.1:2")))
        assert await until(lambda: "pool-b" in _ready_pods(app))
        rewrite(path, config_text(pool="pool-b", eps=("127.0.0.1:1",)))  # an endpoint leaves
        assert await until(lambda: _ready_pods(app).get("pool-b") == 1.0)
        assert await until(lambda: _ready_pods(app) == {"pool-b": 1.0}, within=2.0), _ready_pods(
            app
        )
    finally:
        stop.set()
        await task


PAGE = (
    b'vllm:num_requests_waiting{model_name="m"} 0.0\n'
    b'vllm:num_requests_running{model_name="m"} 0.0\n'
    b'vllm:kv_cache_usage_perc{model_name="m"} 0.1\n'
)


class MetricsServer:
    """Keep-alive HTTP/1.1 server that tracks its open connections."""

    def __init__(self) -> None:
        self.open = 0
        self.hits = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                self.hits += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(PAGE) + PAGE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


async def test_removed_endpoint_scrape_connection_is_closed(tmp_path: Path) -> None:
    ms = MetricsServer()
    server = await asyncio.start_server(ms.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    other = await asyncio.start_server(MetricsServer().handle, "127.0.0.1", 0)
    other_port = other.sockets[0].getsockname()[1]
    path = tmp_path / "picker.yaml"
    path.write_text(config_text(eps=(f"127.0.0.1:{port}", f"127.0.0.1:{other_port}")))
    app = _serving_app(path, ScrapeConfig(interval=0.02))
    app.load()
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        assert await until(lambda: ms.hits >= 3 and ms.open == 1)
        # The endpoint leaves the pool.
        rewrite(path, config_text(eps=(f"127.0.0.1:{other_port}",)))
        assert app.scrapes is not None
        assert await until(lambda: f"127.0.0.1:{port}" not in app.scrapes.scraping())
        hits = ms.hits
        await asyncio.sleep(0.2)
        assert ms.hits <= hits + 1  # the loop did stop
        # Expected: nothing keeps a connection to the departed endpoint open.
        assert await until(lambda: ms.open == 0, within=2.0), f"{ms.open} connection(s) left open"
    finally:
        stop.set()
        await task
        server.close()
        other.close()


@pytest.mark.parametrize(
    "argv",
    [
        ["--drain-seconds", "-5"],
        ["--drain-seconds", "nan"],
        ["--config-poll-interval", "-1"],
        ["--config-poll-interval", "nan"],
    ],
)
def test_nonsense_durations_are_rejected(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--config", "f.yaml", *argv])
