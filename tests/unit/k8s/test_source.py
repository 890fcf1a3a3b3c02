"""KubernetesSource against a fake API server: after every change the store is exactly right."""

from __future__ import annotations

import asyncio
import copy
import threading

from extproc.datastore import Datastore
from extproc.k8s.source import KubernetesSource
from tests.unit.k8s.builders import (
    POOL,
    eventually,
    make_model,
    make_pod,
    make_pool,
)
from tests.unit.k8s.conftest import StartSource
from tests.unit.k8s.fake_apiserver import FakeApiServer


def addresses(ds: Datastore) -> list[str]:
    return [e.address for e in ds.endpoints()]


def names(ds: Datastore) -> list[str]:
    return [e.name for e in ds.endpoints()]


def model_owners(ds: Datastore) -> dict[str, str]:
    return {name: obj.name for name, obj in ds.models().objects.items()}


async def wait_addresses(ds: Datastore, expected: list[str]) -> None:
    await eventually(lambda: addresses(ds) == sorted(expected), what=f"endpoints {expected}")


async def wait_models(ds: Datastore, expected: dict[str, str]) -> None:
    await eventually(lambda: model_owners(ds) == expected, what=f"models {expected}")


async def synced(source: KubernetesSource) -> None:
    await asyncio.wait_for(source.synced.wait(), 5)


async def test_initial_list_gives_ready_matching_pods_and_pool_models(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.put("inferencepools", make_pool("other-pool", selector={"app": "x"}))
    apiserver.put("pods", make_pod("ready", "10.0.0.1"))
    apiserver.put("pods", make_pod("unready", "10.0.0.2", ready=False))
    apiserver.put("pods", make_pod("no-ip", None))
    apiserver.put("pods", make_pod("terminating", "10.0.0.3", deleting=True))
    apiserver.put("pods", make_pod("other-app", "10.0.0.4", labels={"app": "x"}))
    apiserver.put("pods", make_pod("extra-labels", "10.0.0.5", labels={"app": "vllm", "v": "2"}))
    apiserver.put("inferencemodels", make_model("m1", "chat", criticality="Critical"))
    apiserver.put("inferencemodels", make_model("m2", "sql", pool="other-pool"))

    source, ds = await start_source()
    await synced(source)
    assert source.ready
    assert addresses(ds) == ["10.0.0.1:8000", "10.0.0.5:8000"]
    assert names(ds) == ["ready", "extra-labels"]
    assert model_owners(ds) == {"chat": "m1"}
    resolved = ds.resolve_model("chat")
    assert resolved is not None and resolved.criticality == "Critical"
    pool = ds.pool()
    assert pool is not None and pool.name == POOL and pool.target_port == 8000
    # The pool is watched by name: the other pool's list was filtered server-side.
    assert apiserver.requests[("inferencepools", "list")] == 1


async def test_synced_without_pool_is_not_ready(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("pods", make_pod("p1"))
    source, ds = await start_source()
    await synced(source)
    assert not source.ready
    assert ds.endpoints() == ()
    apiserver.put("inferencepools", make_pool())
    await eventually(lambda: source.ready, what="ready")
    await wait_addresses(ds, ["10.0.0.1:8000"])


async def test_pod_lifecycle(apiserver: FakeApiServer, start_source: StartSource) -> None:
    apiserver.put("inferencepools", make_pool())
    source, ds = await start_source()
    await synced(source)
    assert ds.endpoints() == ()

    apiserver.put("pods", make_pod("p1", "10.0.0.1", ready=False))  # appears, not Ready
    apiserver.put("pods", make_pod("p2", "10.0.0.2"))  # appears Ready
    await wait_addresses(ds, ["10.0.0.2:8000"])

    apiserver.put("pods", make_pod("p1", "10.0.0.1"))  # turns Ready
    await wait_addresses(ds, ["10.0.0.1:8000", "10.0.0.2:8000"])

    apiserver.put("pods", make_pod("p2", "10.0.0.2", ready=False))  # loses readiness
    await wait_addresses(ds, ["10.0.0.1:8000"])

    apiserver.put("pods", make_pod("p1", "10.0.0.1", labels={"app": "other"}))  # label change
    await wait_addresses(ds, [])

    apiserver.put("pods", make_pod("p1", "10.0.0.1"))  # label back
    apiserver.put("pods", make_pod("p2", "10.0.0.2"))
    await wait_addresses(ds, ["10.0.0.1:8000", "10.0.0.2:8000"])

    apiserver.put("pods", make_pod("p1", "10.0.0.1", deleting=True))  # terminating
    await wait_addresses(ds, ["10.0.0.2:8000"])

    apiserver.delete("pods", "p1")
    apiserver.delete("pods", "p2")  # deleted while Ready
    await wait_addresses(ds, [])


async def test_pool_selector_and_port_change_resync_all_pods(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.put("pods", make_pod("a1", "10.0.0.1"))
    apiserver.put("pods", make_pod("b1", "10.0.1.1", labels={"app": "vllm-b"}))
    apiserver.put("inferencemodels", make_model("m1", "chat"))
    source, ds = await start_source()
    await synced(source)
    await wait_addresses(ds, ["10.0.0.1:8000"])

    apiserver.put("inferencepools", make_pool(selector={"app": "vllm-b"}))
    await wait_addresses(ds, ["10.0.1.1:8000"])

    apiserver.put("inferencepools", make_pool(selector={"app": "vllm-b"}, port=9000))
    await wait_addresses(ds, ["10.0.1.1:9000"])
    assert apiserver.requests[("pods", "list")] == 1  # resynced from the pod cache

    apiserver.delete("inferencepools", POOL)  # deletion clears the store
    await eventually(lambda: ds.pool() is None and not ds.endpoints() and not len(ds.models()))
    assert not source.ready

    apiserver.put("inferencepools", make_pool())  # re-created: everything comes back
    await wait_addresses(ds, ["10.0.0.1:8000"])
    await wait_models(ds, {"chat": "m1"})
    assert source.ready


async def test_models_added_duplicated_deleted(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("inferencepools", make_pool())
    source, ds = await start_source()
    await synced(source)

    apiserver.put("inferencemodels", make_model("new", "chat", created="2025-01-02T00:00:00Z"))
    await wait_models(ds, {"chat": "new"})

    apiserver.put("inferencemodels", make_model("old", "chat", created="2025-01-01T00:00:00Z"))
    await wait_models(ds, {"chat": "old"})  # the oldest wins

    apiserver.put("inferencemodels", make_model("sql", "sql", targets=["sql-a", "sql-b"]))
    apiserver.put("inferencemodels", make_model("foreign", "tweet", pool="other-pool"))
    await wait_models(ds, {"chat": "old", "sql": "sql"})

    apiserver.delete("inferencemodels", "old")
    await wait_models(ds, {"chat": "new", "sql": "sql"})

    moved = make_model("sql", "sql", pool="other-pool")  # poolRef moved away
    apiserver.put("inferencemodels", moved)
    await wait_models(ds, {"chat": "new"})

    apiserver.put("inferencemodels", make_model("bad", "x" * 300))  # invalid: ignored
    apiserver.put("inferencemodels", make_model("ok", "ok"))
    await wait_models(ds, {"chat": "new", "ok": "ok"})


async def test_equal_creation_times_break_ties_by_name(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("inferencepools", make_pool())
    for name in ("m-b", "m-a", "m-c"):
        apiserver.put("inferencemodels", make_model(name, "chat", created="2025-01-01T00:00:00Z"))
    source, ds = await start_source()
    await synced(source)
    assert model_owners(ds) == {"chat": "m-a"}


async def test_bookmarks_then_reconnect_resumes_without_relist(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("inferencepools", make_pool())
    source, ds = await start_source()
    await synced(source)
    await eventually(lambda: apiserver.watch_count("pods") == 1, what="pod watch")
    apiserver.bookmark("pods")
    apiserver.put("pods", make_pod("p1", "10.0.0.1"))
    await wait_addresses(ds, ["10.0.0.1:8000"])

    apiserver.drop_watches("pods")  # connection dropped mid-stream
    apiserver.put("pods", make_pod("p2", "10.0.0.2"))  # while reconnecting: replayed
    await wait_addresses(ds, ["10.0.0.1:8000", "10.0.0.2:8000"])
    await eventually(lambda: apiserver.watch_count("pods") == 1, what="pod watch again")
    assert apiserver.requests[("pods", "watch")] >= 2
    assert apiserver.requests[("pods", "list")] == 1


async def test_a_dropped_watch_resumes_after_the_last_event_it_delivered(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("inferencepools", make_pool())
    source, ds = await start_source()
    await synced(source)
    await eventually(lambda: apiserver.watch_count("pods") == 1, what="pod watch")
    apiserver.put("pods", make_pod("p1", "10.0.0.1"))  # delivered on the watch
    await wait_addresses(ds, ["10.0.0.1:8000"])
    # History up to what the client has seen is compacted: resuming from the version the
    # watch *started* at would get 410 and a full relist, although nothing was missed.
    apiserver.compact("pods")
    apiserver.drop_watches("pods")
    apiserver.put("pods", make_pod("p2", "10.0.0.2"))
    await wait_addresses(ds, ["10.0.0.1:8000", "10.0.0.2:8000"])
    assert apiserver.requests[("pods", "list")] == 1


async def test_gone_relists_and_sees_missed_changes(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.put("pods", make_pod("p1", "10.0.0.1"))
    apiserver.put("inferencemodels", make_model("m1", "chat"))
    source, ds = await start_source()
    await synced(source)
    await eventually(lambda: apiserver.watch_count("pods") == 1)
    await eventually(lambda: apiserver.watch_count("inferencemodels") == 1)

    # Changes the watches never deliver, then the version they hold expires (ERROR 410).
    apiserver.delete("pods", "p1", silent=True)
    apiserver.put("pods", make_pod("p2", "10.0.0.2"), silent=True)
    apiserver.delete("inferencemodels", "m1", silent=True)
    apiserver.put("inferencemodels", make_model("m2", "sql"), silent=True)
    apiserver.expire_watches("pods")
    apiserver.expire_watches("inferencemodels")
    await wait_addresses(ds, ["10.0.0.2:8000"])
    await wait_models(ds, {"sql": "m2"})
    assert apiserver.requests[("pods", "list")] == 2


async def test_reconnect_from_a_compacted_version_relists(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("inferencepools", make_pool())
    source, ds = await start_source()
    await synced(source)
    await eventually(lambda: apiserver.watch_count("pods") == 1)
    apiserver.put("pods", make_pod("p1", "10.0.0.1"), silent=True)
    apiserver.compact("pods")
    apiserver.drop_watches("pods")  # the re-watch from the old version gets 410
    await wait_addresses(ds, ["10.0.0.1:8000"])
    assert apiserver.requests[("pods", "list")] == 2


async def test_server_errors_back_off_and_recover(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.fail_next["pods"] = [500, 503, 500]  # the first list fails three times
    source, ds = await start_source()
    apiserver.put("pods", make_pod("p1", "10.0.0.1"))
    await synced(source)
    await wait_addresses(ds, ["10.0.0.1:8000"])
    apiserver.fail_next["pods"] = [500, 500]  # and the next re-watches
    apiserver.drop_watches("pods")
    apiserver.put("pods", make_pod("p2", "10.0.0.2"))
    await wait_addresses(ds, ["10.0.0.1:8000", "10.0.0.2:8000"])


async def test_stale_events_do_not_regress_state(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("inferencepools", make_pool())
    old_p1 = apiserver.put("pods", make_pod("p1", "10.0.0.1", ready=False))
    apiserver.put("pods", make_pod("p1", "10.0.0.1"))
    old_m1 = apiserver.put("inferencemodels", make_model("m1", "chat", targets=["a"]))
    apiserver.put("inferencemodels", make_model("m1", "chat", targets=["b"]))
    source, ds = await start_source()
    await synced(source)
    await eventually(lambda: apiserver.watch_count("pods") == 1)
    await eventually(lambda: apiserver.watch_count("inferencemodels") == 1)
    await wait_addresses(ds, ["10.0.0.1:8000"])

    # A late MODIFIED and DELETED carrying older versions than the applied ones.
    apiserver.inject("pods", "MODIFIED", old_p1)
    apiserver.inject("pods", "DELETED", old_p1)
    apiserver.inject("inferencemodels", "MODIFIED", old_m1)
    apiserver.inject("inferencemodels", "DELETED", old_m1)
    # Sentinels on the same streams: once they are applied, the stale events were too.
    apiserver.put("pods", make_pod("sentinel", "10.0.0.9"))
    apiserver.put("inferencemodels", make_model("sentinel", "sentinel"))
    await wait_addresses(ds, ["10.0.0.1:8000", "10.0.0.9:8000"])
    await wait_models(ds, {"chat": "m1", "sentinel": "sentinel"})
    resolved = ds.resolve_model("chat")
    assert resolved is not None and resolved.target_model == "b"

    # A deleted pod is not resurrected by a replayed ADDED of its older version.
    apiserver.delete("pods", "p1")
    await wait_addresses(ds, ["10.0.0.9:8000"])
    stale = copy.deepcopy(old_p1)
    stale["status"]["conditions"][1]["status"] = "True"
    apiserver.inject("pods", "ADDED", stale)
    apiserver.delete("pods", "sentinel")
    await wait_addresses(ds, [])


async def test_stop_is_prompt_with_open_watches(
    apiserver: FakeApiServer, start_source: StartSource
) -> None:
    apiserver.put("inferencepools", make_pool())
    source, _ = await start_source()
    await synced(source)
    await eventually(lambda: apiserver.watch_count("pods") == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await source.stop()
    assert loop.time() - started < 1.0
    assert not [t for t in threading.enumerate() if t.name.startswith("watch-")]
